from __future__ import annotations

from django_tenants.utils import tenant_context

from messaging.demo import seed
from messaging.models import Conversation, Message
from tenancy.demo import DemoWorld
from tests.conftest import World


def test_demo_seed_fills_both_inboxes_and_is_idempotent(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(
        airline_agent_1=world.agent_a,
        airline_owner=world.owner_a,
        bakery_agent=world.agent_b,
        bakery_owner=world.owner_b,
    )

    def counts() -> tuple[int, int]:
        result = []
        for business in (world.business_a, world.business_b):
            with tenant_context(business):
                result.append(
                    Message.objects.filter(conversation__contact__customer__in=demo.customers.values()).count()
                )
        return result[0], result[1]

    seed(demo)
    first = counts()
    assert first[0] >= 10 and first[1] >= 6
    with tenant_context(world.business_a):
        assert Message.objects.filter(kind="note").exists()
        assert Conversation.objects.filter(contact__customer__in=demo.customers.values()).count() == 3
    seed(demo)
    assert counts() == first


def test_demo_messages_of_a_thread_are_minutes_apart(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_agent_1=world.agent_a, airline_owner=world.owner_a, bakery_agent=world.agent_b)
    seed(demo)
    with tenant_context(world.business_a):
        for conversation in Conversation.objects.filter(contact__customer__in=demo.customers.values()):
            times = list(conversation.messages.order_by("pk").values_list("created_at", "kind"))
            assert [t for t, _kind in times] == sorted(t for t, _kind in times)
            minutes = [t.replace(second=0, microsecond=0) for t, kind in times if kind != "note"]
            if len(minutes) > 1:
                assert len(set(minutes)) == len(minutes), minutes
            assert conversation.last_message_at == times[-1][0]
