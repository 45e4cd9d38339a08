"""The billing page in Chromium: chart, banner, period navigation and the CSV download."""

from __future__ import annotations

from typing import Any

import pytest

from billing import demo
from tenancy.demo import DemoWorld
from tests.conftest import PASSWORD, LiveServer, World


@pytest.mark.browser
def test_owner_reads_usage_and_downloads_the_ledger(
    billing_live: World, live_server_process: LiveServer, page: Any
) -> None:
    world = billing_live
    demo.seed(DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b))
    page.goto(live_server_process.public_url("/accounts/login/"))
    page.get_by_label("Email").fill(world.owner_a.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.goto(live_server_process.business_url(world.business_a, "/billing/"))
    assert page.get_by_role("heading", name="Billing", exact=True).is_visible()
    assert page.get_by_text("Ledger-only mode.").is_visible()
    chart = page.get_by_role("img", name="Conversations per day")
    assert chart.is_visible()
    # Demo usage covers the last 30 days: this month or the previous one has bars.
    if page.locator("svg rect").count() == 0:
        page.get_by_role("link", name="← Previous month").click()
    assert page.locator("svg rect").count() > 0
    assert page.get_by_role("row", name="Utility").is_visible()

    link = page.get_by_role("link", name="Download the ledger (CSV)")
    link.focus()
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    download = download_info.value
    assert download.suggested_filename.startswith("parley-usage-alpha-")
    with open(download.path(), encoding="utf-8") as ledger:
        assert ledger.readline().startswith("record_id,opened_at_utc")
