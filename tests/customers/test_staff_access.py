"""Staff reading a business's conversations in the admin is logged and shown to its owner."""

from __future__ import annotations

from audit.models import AuditEvent
from messaging.models import Conversation
from tests.conftest import World, business_client, in_business, public_client
from tests.customers.conftest import make_customer, talk


def test_staff_views_of_conversations_are_logged_and_shown_to_the_owner(world: World) -> None:
    customer = make_customer("Staff Test")
    talk(world.business_a, customer, "Meine Buchung")
    with in_business(world.business_a):
        conversation = Conversation.objects.get(contact__customer=customer)
    staff = public_client(world.staff)

    owner_page = business_client(world.business_a, world.owner_a).get("/privacy/").content.decode()
    assert "Parley staff have not looked at your conversations." in owner_page

    # Staff see each business's retention policy in the admin.
    changelist = staff.get("/admin/customers/businessconversations/").content.decode()
    assert world.business_a.display_name in changelist and "730 days" in changelist
    assert staff.get("/admin/tenancy/business/").status_code == 200
    assert AuditEvent.objects.filter(action="staff.viewed_conversations", business=world.business_a).count() == 0

    listing = staff.get(f"/admin/customers/businessconversations/{world.business_a.pk}/conversations/")
    assert listing.status_code == 200 and "Staff Test" in listing.content.decode()
    thread = staff.get(f"/admin/customers/businessconversations/{world.business_a.pk}/conversations/{conversation.pk}/")
    assert thread.status_code == 200 and "Meine Buchung" in thread.content.decode()
    # The change view of the proxy leads to the same logged list.
    change = staff.get(f"/admin/customers/businessconversations/{world.business_a.pk}/change/")
    assert change.status_code == 302

    events = AuditEvent.objects.filter(action="staff.viewed_conversations", business=world.business_a)
    assert events.count() == 2 and {e.actor_id for e in events} == {world.staff.pk}
    assert all("Meine Buchung" not in str(e.data) and customer.phone_number not in str(e.data) for e in events)

    owner_page = business_client(world.business_a, world.owner_a).get("/privacy/").content.decode()
    assert world.staff.email in owner_page and f"conversation #{conversation.pk}" in owner_page
    # The other business's owner sees none of it; agents do not get the page.
    other = business_client(world.business_b, world.owner_b).get("/privacy/").content.decode()
    assert world.staff.email not in other
    assert business_client(world.business_a, world.agent_a).get("/privacy/").status_code == 403
    # Not staff: no access at all; an unknown business is a 404 and nothing is logged.
    assert (
        public_client(world.owner_a)
        .get(f"/admin/customers/businessconversations/{world.business_a.pk}/conversations/")
        .status_code
        == 302
    )
    assert staff.get("/admin/customers/businessconversations/99999999/conversations/").status_code == 404
    assert events.count() == 2
