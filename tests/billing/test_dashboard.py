"""The billing page, the CSV export, Checkout and the portal, and the public pricing page."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import time_machine
from django.utils import timezone

from billing import services
from billing.models import Invoice, Rate, UsageRecord
from billing.services import conversation_charge_for_message
from tests.billing.conftest import active_card
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import World, business_client, public_client


def seed_usage(world: World) -> list[UsageRecord]:
    records = []
    with time_machine.travel(datetime(2026, 6, 3, 9, 0, tzinfo=UTC), tick=False) as clock:
        for day, category in [
            (0, "service"),
            (0, "utility"),
            (1, "marketing"),
            (4, "authentication"),
            (4, "marketing"),
        ]:
            clock.move_to(datetime(2026, 6, 3 + day, 9, 0, tzinfo=UTC))
            records.append(
                conversation_charge_for_message(
                    business=world.business_a,
                    conversation_id=len(records) + 1,
                    customer_id=uuid.uuid4().int % 10**12,
                    customer_phone="+4915112345678",
                    category=category,
                    sent_at=timezone.now(),
                )
            )
    return records


def test_billing_page_shows_usage_cost_chart_and_ledger_only_banner(world: World) -> None:
    records = seed_usage(world)
    response = business_client(world.business_a, world.owner_a).get("/billing/?period=2026-06")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="ledger-only"' in html
    assert 'data-testid="conversations">5<' in html
    cost = sum((r.amount for r in records), Decimal("0"))
    assert f"€{cost:.2f}" in html
    assert html.count("<rect ") == 5  # one bar segment per category per day
    assert "Subscribe with Stripe" in html and "disabled" in html
    assert "Download the ledger (CSV)" in html
    # Another business's page does not show these conversations.
    other = business_client(world.business_b, world.owner_b).get("/billing/?period=2026-06")
    assert 'data-testid="conversations">0<' in other.content.decode()


def test_latest_charges_are_shown_in_utc_as_their_heading_says(world: World) -> None:
    seed_usage(world)  # every charge at 09:00 UTC: 11:00 in Berlin, the server's time zone in June
    html = business_client(world.business_a, world.owner_a).get("/billing/?period=2026-06").content.decode()
    table = html[html.index('data-testid="recent-charges"') :]
    table = table[: table.index("</table>")]
    assert "When (UTC)" in table
    assert table.count("9 a.m.") == 5 and "11 a.m." not in table


def test_billing_page_is_for_owners_and_admins(world: World) -> None:
    assert business_client(world.business_a, world.agent_a).get("/billing/").status_code == 403
    assert business_client(world.business_a, world.owner_b).get("/billing/").status_code == 403
    assert business_client(world.business_a).get("/billing/").status_code == 302
    assert business_client(world.business_a, world.agent_a).get("/billing/usage.csv").status_code == 403


def test_bad_period_is_a_clear_400(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    for value in ["2026-13", "june", "1999-01", "2026-6-1"]:
        response = client.get(f"/billing/?period={value}")
        assert response.status_code == 400
        assert "YYYY-MM" in response.content.decode()
    assert client.get("/billing/usage.csv?period=nope").status_code == 400


def test_csv_export_lists_the_ledger(world: World) -> None:
    records = seed_usage(world)
    services.conversation_charge_void(record_id=records[1].pk, reason="delivery failed")
    response = business_client(world.business_a, world.owner_a).get("/billing/usage.csv?period=2026-06")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "parley-usage-alpha-2026-06.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["record_id"] for r in rows] == [
        str(r.pk) for r in sorted(records, key=lambda r: (r.opened_at, str(r.pk)))
    ]
    by_id = {r["record_id"]: r for r in rows}
    service, voided, marketing = (by_id[str(records[i].pk)] for i in range(3))
    assert service["category"] == "service" and service["free"] == "yes" and service["amount_eur"] == "0"
    assert voided["voided"] == "yes" and voided["stripe_report"] == "not_billed"
    assert marketing["country"] == "DE" and Decimal(marketing["amount_eur"]) == records[2].unit_price


def test_grace_period_and_invoices_show_on_the_page(world: World) -> None:
    account = services.billing_account_for(business=world.business_a)
    account.grace_period_ends_at = timezone.now() - timedelta(hours=1)
    account.subscription_status = "past_due"
    account.save()
    Invoice.objects.create(id="in_page_1", account=account, number="PARLEY-7", status="open", amount_due=4321)
    html = business_client(world.business_a, world.owner_a).get("/billing/").content.decode()
    assert "You cannot start new conversations" in html
    assert "PARLEY-7" in html and "43.21" in html


def test_checkout_and_portal_go_to_stripe(world: World, fake_stripe: FakeStripe) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post("/billing/checkout/")
    assert response.status_code == 303
    assert response["Location"].startswith("https://checkout.example/cs_")
    [session] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    account = services.billing_account_for(business=world.business_a)
    assert session.params["customer"] == account.stripe_customer_id
    assert session.params["mode"] == "subscription"
    assert session.params["client_reference_id"] == str(world.business_a.pk)
    assert {item["price"] for item in session.params["line_items"]} == set(fake_stripe.prices)
    assert session.params["success_url"].startswith(f"http://{world.business_a.host}")

    response = client.post("/billing/portal/")
    assert response.status_code == 303 and response["Location"].startswith("https://portal.example/")
    [portal] = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
    assert portal.params["customer"] == account.stripe_customer_id
    assert len(fake_stripe.customers) == 1  # one Stripe customer, however often they click


def test_checkout_without_stripe_explains_instead_of_failing(world: World, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    response = business_client(world.business_a, world.owner_a).post("/billing/checkout/", follow=True)
    assert response.status_code == 200
    assert "Payments are not set up" in response.content.decode()
    assert business_client(world.business_a, world.owner_a).get("/billing/checkout/").status_code == 405


def test_pricing_page_reads_the_rate_card(world: World) -> None:
    card = active_card(
        "Spring 2026",
        default_service="0.0310",
        default_utility="0.0420",
        default_marketing="0.0730",
        default_authentication="0.0360",
    )
    Rate.objects.create(rate_card=card, category="marketing", country="CH", price=Decimal("0.1111"))
    html = public_client().get("/pricing/").content.decode()
    assert "Spring 2026" in html
    assert "€0.0310" in html and "€0.0730" in html
    assert "CH" in html and "€0.1111" in html
    assert "1000" in html or "1,000" in html


def test_checkout_is_refused_when_already_subscribed(world: World, fake_stripe: FakeStripe) -> None:
    account = services.billing_account_for(business=world.business_a)
    account.subscription_status = "active"
    account.save()
    response = business_client(world.business_a, world.owner_a).post("/billing/checkout/", follow=True)
    assert "already has a subscription" in response.content.decode()
    assert not fake_stripe.calls("POST", "/v1/checkout/sessions")


def test_csv_streams_page_by_page_under_asgi(billing_live: World, live_server_process: Any) -> None:
    """Through Daphne, as in production: every row arrives, in order, paged rather than loaded whole."""
    import httpx

    world = billing_live
    start = datetime(2026, 2, 1, tzinfo=UTC)
    UsageRecord.objects.bulk_create(
        UsageRecord(
            business=world.business_a,
            conversation_id=i,
            customer_id=10**14 + i,
            category="utility",
            country="DE",
            opened_at=start + timedelta(seconds=30 * i),
            window_ends_at=start + timedelta(seconds=30 * i, hours=24),
            unit_price=Decimal("0.0550"),
            report_state="not_billed",
        )
        for i in range(2500)
    )
    session = business_client(world.business_a, world.owner_a).cookies["sessionid"].value
    response = httpx.get(
        f"http://127.0.0.1:{live_server_process.port}/billing/usage.csv?period=2026-02",
        headers={"Host": world.business_a.host},
        cookies={"sessionid": session},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:500]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2500
    assert [int(r["conversation_id"]) for r in rows] == list(range(2500))
    assert "must consume" not in live_server_process.log_path.read_text()


def test_billing_page_queries_do_not_grow_with_usage_or_invoices(world: World) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = business_client(world.business_a, world.owner_a)
    account = services.billing_account_for(business=world.business_a)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/billing/?period=2026-06").status_code == 200
        return len([q for q in ctx.captured_queries if not q["sql"].startswith("SET search_path")])

    Invoice.objects.create(id="in_q_0", account=account, status="paid", amount_due=100)
    records = seed_usage(world)
    services.conversation_charge_void(record_id=records[0].pk, reason="delivery failed")
    few = queries()
    for n in range(1, 6):
        Invoice.objects.create(id=f"in_q_{n}", account=account, status="open", amount_due=100 * n)
    UsageRecord.objects.filter(pk=records[1].pk).update(report_state="failed")
    with time_machine.travel(datetime(2026, 6, 20, 9, 0, tzinfo=UTC), tick=False):
        for n in range(10):
            conversation_charge_for_message(
                business=world.business_a,
                conversation_id=100 + n,
                customer_id=uuid.uuid4().int % 10**12,
                customer_phone="+4915112345678",
                category=("service", "utility", "marketing", "authentication")[n % 4],
                sent_at=timezone.now() + timedelta(hours=n),
            )
    assert queries() == few
    html = client.get("/billing/?period=2026-06").content.decode()
    assert "10 conversations are waiting to be reported to Stripe." in html  # 3 seeded + 7 new chargeable
    assert "1 report needs attention from Parley staff." in html


def test_statuses_and_chart_titles_are_words_not_stripe_codes(world: World) -> None:
    seed_usage(world)
    account = services.billing_account_for(business=world.business_a)
    account.subscription_status = "past_due"
    account.save()
    Invoice.objects.create(id="in_words", account=account, number="PARLEY-9", status="uncollectible", amount_due=100)
    html = business_client(world.business_a, world.owner_a).get("/billing/?period=2026-06").content.decode()
    assert '<span class="pill">Past due</span>' in html and "past_due" not in html
    assert ">Uncollectible</span>" in html
    assert "<title>3 Jun: 1 Service conversation</title>" in html


def test_month_navigation_stops_at_the_current_month_and_checkout_cancel_is_explained(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    now = timezone.now()
    this_month = client.get("/billing/").content.decode()
    assert "Previous month" in this_month and "Next month" not in this_month
    last_year = client.get(f"/billing/?period={now.year - 1}-{now.month:02d}").content.decode()
    assert "Next month" in last_year
    cancelled = client.get("/billing/?checkout=cancelled").content.decode()
    assert "Checkout was cancelled. Nothing was charged" in cancelled


def test_daily_table_columns_follow_the_legend(world: World) -> None:
    seed_usage(world)
    html = business_client(world.business_a, world.owner_a).get("/billing/?period=2026-06").content.decode()
    # 3 June: one service and one utility conversation; columns are service, utility, marketing, authentication.
    assert (
        '<th scope="row">Wed 03 Jun</th><td class="num">1</td><td class="num">1</td>'
        '<td class="num">0</td><td class="num">0</td>'
    ) in html
