"""The public pricing page only reads: the active rate card exists from setup on."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import LAUNCH_PRICES, RateCard
from tests.conftest import World, public_client


def writes(ctx: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]


def test_setup_made_the_active_card_at_the_launch_prices(world: World) -> None:
    card = RateCard.objects.get(is_active=True)
    assert {category: card.default_for(category) for category in LAUNCH_PRICES} == LAUNCH_PRICES


def test_a_pricing_page_view_writes_nothing(world: World) -> None:
    with CaptureQueriesContext(connection) as ctx:
        response = public_client().get("/pricing/")
    assert response.status_code == 200
    assert writes(ctx) == []
    assert any("billing_ratecard" in q["sql"] for q in ctx.captured_queries)


def test_without_an_active_card_the_page_shows_the_launch_prices_and_writes_nothing(world: World) -> None:
    RateCard.objects.update(is_active=False)
    cards = RateCard.objects.count()
    with CaptureQueriesContext(connection) as ctx:
        response = public_client().get("/pricing/")
    assert response.status_code == 200
    assert writes(ctx) == []
    assert RateCard.objects.count() == cards
    html = response.content.decode()
    assert all(f"€{price}" in html for price in LAUNCH_PRICES.values()), html
