from __future__ import annotations

from audit.models import AuditEvent
from customers.demo import privacy_customer
from customers.demo import seed as privacy_seed
from customers.models import ConsentRecord, MarketingMute
from customers.selectors import customer_privacy_rows
from messaging.demo import seed as messaging_seed
from tenancy.demo import DemoWorld
from tests.conftest import World


def test_demo_customer_has_a_privacy_page_worth_seeing_and_seed_is_idempotent(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(
        airline_agent_1=world.agent_a,
        airline_owner=world.owner_a,
        bakery_agent=world.agent_b,
        bakery_owner=world.owner_b,
    )
    messaging_seed(demo)
    privacy_seed(demo)
    customer = privacy_customer(demo)
    assert customer is not None
    assert any(customer.phone_number in line and "/me/privacy/" in line for line in demo.lines)
    rows = {row.business.pk: row for row in customer_privacy_rows(customer=customer)}
    assert set(rows) == {world.business_a.pk, world.business_b.pk}
    assert all(row.messages > 0 for row in rows.values())
    assert rows[world.business_b.pk].muted and rows[world.business_b.pk].marketing.source == "stop"  # type: ignore[union-attr]
    assert rows[world.business_a.pk].marketing.granted  # type: ignore[union-attr]
    # In touch with each business before any choice made there.
    for business_id, row in rows.items():
        choices = ConsentRecord.objects.filter(customer=customer, business_id=business_id)
        assert row.since is not None and all(row.since < record.created_at for record in choices), business_id
    assert MarketingMute.objects.filter(customer=customer, business=world.business_b).exists()
    count = ConsentRecord.objects.filter(customer=customer).count()
    assert count == 4
    privacy_seed(demo)
    assert ConsentRecord.objects.filter(customer=customer).count() == count
    assert AuditEvent.objects.filter(action="staff.viewed_conversations", business=world.business_a).count() == 1
