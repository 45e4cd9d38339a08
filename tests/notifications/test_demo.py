from __future__ import annotations

from django_tenants.utils import tenant_context

from messaging.demo import seed as messaging_seed
from notifications.demo import seed
from notifications.models import ApiKey, ApiRequest, Notification, Template
from tenancy.demo import DemoWorld
from tests.conftest import World, business_client


def test_demo_airline_has_an_approved_template_a_working_key_and_traffic(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_owner=world.owner_a, bakery_owner=world.owner_b)
    messaging_seed(demo)  # the demo customers
    seed(demo)
    seed(demo)  # idempotent
    with tenant_context(world.business_a):
        assert Template.objects.get(name="flight_change").status == Template.Status.APPROVED
        assert Template.objects.get(name="spring_sale").status == Template.Status.PENDING
        assert ApiKey.objects.count() == 1
        sent = list(Notification.objects.values_list("status", flat=True))
        assert sent == ["sent", "sent"]
        assert ApiRequest.objects.count() == 4
    key_line = next(line for line in demo.lines if line.startswith("API (airline): key "))
    secret = key_line.split()[3]
    answer = business_client(world.business_a).get("/api/v1/templates", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert answer.status_code == 200
    assert {t["name"] for t in answer.json()["templates"]} == {"flight_change", "spring_sale"}
