"""The billing page in Chromium: chart, banner, period navigation and the CSV download.

The page is served by a separate Daphne process whose clock the test cannot freeze, so the test
names its months explicitly and relies on the demo seed covering every day from the first of last
month through today (see tests/billing/test_demo.py for that seed at the month's edges)."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from billing import demo
from tenancy.demo import DemoWorld
from tests.conftest import LiveServer, World
from tests.messaging.conftest import session_key


def _sign_in(page: Any, world: World) -> None:
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": session_key(user=world.owner_a),
                "domain": f".{settings.PARLEY_DOMAIN}",
                "path": "/",
            }
        ]
    )


def _bars(page: Any) -> list[float]:
    """The x of every bar, as the browser parsed it (a localized "3,0" would not parse)."""
    return [float(x) for x in page.locator("svg rect").evaluate_all("rs => rs.map(r => r.getAttribute('x'))")]


@pytest.mark.browser
# "This month" is the server's (real clock) and the seed's (this process): travelled into another
# month (--today 2027-02-28) the page opened on December while the test looked for February. The
# seed at a month's edges is proved under travel in tests/billing/test_demo.py.
@pytest.mark.real_clock
def test_owner_reads_usage_and_downloads_the_ledger(
    billing_live: World, live_server_process: LiveServer, page: Any
) -> None:
    world = billing_live
    demo.seed(DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b))
    _sign_in(page, world)
    today = timezone.now().astimezone(UTC).date()
    this_month, last_month = f"{today:%Y-%m}", f"{today.replace(day=1) - timedelta(days=1):%Y-%m}"

    # /billing/ opens on this month, which the seed fills up to today (on the 1st: today only).
    page.goto(live_server_process.business_url(world.business_a, "/billing/"))
    assert page.get_by_role("heading", name="Billing", exact=True).is_visible()
    assert page.get_by_text("Ledger-only mode.").is_visible()
    assert page.get_by_role("heading", name=f"Usage in {today:%B %Y}").is_visible()
    chart = page.get_by_role("img", name="Conversations per day")
    assert chart.is_visible()
    assert _bars(page)
    assert page.get_by_role("table", name="By category").get_by_role("row", name="Utility").is_visible()

    # Last month, by name: a full month of bars.
    page.goto(live_server_process.business_url(world.business_a, f"/billing/?period={last_month}"))
    assert len(_bars(page)) >= 28

    link = page.get_by_role("link", name="Download the ledger (CSV)")
    link.focus()
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    download = download_info.value
    assert download.suggested_filename == f"parley-usage-alpha-{last_month}.csv"
    with open(download.path(), encoding="utf-8") as ledger:
        assert ledger.readline().startswith("record_id,opened_at_utc")
    assert this_month != last_month


@pytest.mark.browser
def test_german_chart_has_bars(billing_live: World, live_server_process: LiveServer, browser: Any) -> None:
    world = billing_live
    demo.seed(DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b))
    context = browser.new_context(locale="de-DE", extra_http_headers={"Accept-Language": "de"})
    page = context.new_page()
    try:
        _sign_in(page, world)
        today = timezone.now().astimezone(UTC).date()
        last_month = f"{today.replace(day=1) - timedelta(days=1):%Y-%m}"
        page.goto(live_server_process.business_url(world.business_a, f"/billing/?period={last_month}"))
        assert page.get_by_role("heading", name="Abrechnung", exact=True).is_visible()
        xs = _bars(page)
        assert len(xs) >= 28 and xs == sorted(xs)
        # Every bar is drawn: the browser gives it a real size.
        widths = page.locator("svg rect").evaluate_all("rs => rs.map(r => r.getBBox().width)")
        assert min(widths) > 0
        ticks = page.locator("svg text").evaluate_all("ts => ts.map(t => t.getAttribute('x'))")
        assert all(float(x) >= 0 for x in ticks)
    finally:
        context.close()
