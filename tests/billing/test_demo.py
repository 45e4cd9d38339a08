from __future__ import annotations

from billing import demo
from billing.models import Rate, RateCard, UsageRecord
from tenancy.demo import DemoWorld
from tests.conftest import World, business_client, public_client


def test_demo_seed_is_idempotent_and_shows_on_the_pages(world: World) -> None:
    RateCard.objects.all().delete()
    demo_world = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.seed(demo_world)
    counts = (RateCard.objects.count(), Rate.objects.count(), UsageRecord.objects.count())
    demo.seed(demo_world)
    assert (RateCard.objects.count(), Rate.objects.count(), UsageRecord.objects.count()) == counts
    assert {"DE", "AT", "CH", "US"} <= set(Rate.objects.values_list("country", flat=True))
    assert (
        UsageRecord.objects.filter(business=world.business_a).count()
        > UsageRecord.objects.filter(business=world.business_b).count()
        > 0
    )
    assert "CH" in public_client().get("/pricing/").content.decode()
    assert business_client(world.business_a, world.owner_a).get("/billing/").status_code == 200
    assert any("/billing/" in line for line in demo_world.lines)
