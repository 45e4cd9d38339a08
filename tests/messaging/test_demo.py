from __future__ import annotations

from datetime import timedelta

from django_tenants.utils import tenant_context

from insights.models import Cycle
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


def test_demo_first_responses_take_the_minutes_the_messages_show(world: World) -> None:
    """The reports read service cycles, which the triggers stamp as the demo's messages go in
    within a second: they move with the messages, so the bakery's first response is minutes."""
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_agent_1=world.agent_a, airline_owner=world.owner_a, bakery_agent=world.agent_b)
    seed(demo)
    with tenant_context(world.business_b):
        for conversation in Conversation.objects.filter(contact__customer__in=demo.customers.values()):
            messages = list(conversation.messages.order_by("pk"))
            cycle = Cycle.objects.get(conversation=conversation)
            assert cycle.started_at == messages[0].created_at
            replies = [m.created_at for m in messages if m.direction == Message.Direction.OUTBOUND]
            assert cycle.first_response_at == (replies[0] if replies else None)
            if replies:
                assert replies[0] - cycle.started_at >= timedelta(minutes=2)
