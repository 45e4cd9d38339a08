"""The privacy centre in a real browser against a real server and a real job worker."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Customer
from customers.models import MarketingMute
from tests.conftest import LiveServer, World, free_port, start_server, stop_server, unique
from tests.customers.conftest import make_customer, talk
from tests.jobs import run_queued_jobs
from tests.messaging.conftest import session_key
from tests.messaging.test_browser import signed_in_page


@pytest.fixture
def privacy_server(live_db: World, export_root: Path) -> Iterator[LiveServer]:
    """A server of its own, writing and reading exports in this test's folder."""
    server = start_server(free_port(), extra_env={"PARLEY_EXPORT_ROOT": str(export_root)}, name="privacy")
    yield server
    stop_server(server)


@pytest.mark.browser
def test_customer_mutes_marketing_downloads_export_and_deletes_account(
    live_db: World, privacy_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    customer = make_customer(unique("Clara "))
    texts = talk(live_db.business_a, customer, unique("Flug-"), reply_by=live_db.agent_a)
    texts += talk(live_db.business_b, customer, unique("Brot-"))
    old_session = session_key(customer=customer)
    context, page = signed_in_page(browser, old_session)
    try:
        page.goto(privacy_server.public_url("/me/privacy/"))
        items = page.locator(".privacy-list > li")
        assert items.count() == 2
        row_a = page.locator(f".privacy-list > li[data-business='{live_db.business_a.pk}']")
        assert row_a.locator(".message-count").inner_text() == "2"

        row_a.get_by_role("button", name=f"Mute marketing from {live_db.business_a.display_name}").click()
        page.get_by_text(f"{live_db.business_a.display_name} may no longer send you marketing messages.").wait_for()
        assert row_a.locator(".marketing-state").inner_text().startswith("muted")
        assert MarketingMute.objects.filter(customer=customer, business=live_db.business_a).exists()
        assert not MarketingMute.objects.filter(customer=customer, business=live_db.business_b).exists()

        page.get_by_role("button", name="Prepare my export").click()
        page.locator(".privacy-request progress").wait_for()
        run_queued_jobs(queues=["privacy"])
        link = page.get_by_role("link", name="Download ZIP")
        link.wait_for()  # htmx polling swaps the finished request in
        with page.expect_download() as download_info:
            link.click()
        saved = tmp_path / "export.zip"
        download_info.value.save_as(saved)
        data = json.loads(zipfile.ZipFile(saved).read("parley-data.json"))
        assert {m["body"] for part in data["businesses"] for m in part["messages"]} == set(texts)

        page.get_by_label("Yes, delete my account and all my conversations").check()
        page.get_by_role("button", name="Delete my account").click()
        page.get_by_role("heading", name="Sign in with your phone").wait_for()
        run_queued_jobs(queues=["privacy"])
        assert not Customer.objects.filter(pk=customer.pk).exists()

        # The old session can no longer act: it gets the sign-in page.
        stale_context, stale = signed_in_page(browser, old_session)
        try:
            stale.goto(privacy_server.public_url("/me/privacy/"))
            stale.get_by_role("heading", name="Sign in with your phone").wait_for()
            assert stale.url.endswith("/me/")
        finally:
            stale_context.close()
    finally:
        context.close()
