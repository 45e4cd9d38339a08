"""Dashboard notices come from whichever apps registered a provider with the tenant core."""

from __future__ import annotations

import pytest

from tenancy import notices
from tenancy.models import Business
from tenancy.notices import DashboardNotice
from tests.conftest import World, business_client
from verification.notices import badge_notices


def test_verification_registers_its_badge_notices() -> None:
    assert badge_notices in notices._providers


def test_any_registered_provider_reaches_the_dashboard(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def provider(business: Business) -> list[DashboardNotice]:
        return [
            DashboardNotice(
                title=f"News for {business.slug} <b>", body="Read it.", level="warning", url="/team/", link_text="Team"
            )
        ]

    monkeypatch.setattr(notices, "_providers", [*notices._providers])
    notices.register(provider)
    notices.register(provider)  # a second ready() must not show it twice

    owner_html = business_client(world.business_a, world.owner_a).get("/").content.decode()
    assert owner_html.count("News for alpha &lt;b&gt;") == 1
    assert '<div class="alert warning" role="status">' in owner_html
    assert '<a href="/team/">Team</a>' in owner_html
    agent_html = business_client(world.business_a, world.agent_a).get("/").content.decode()
    assert "News for alpha" not in agent_html


def test_badge_notices_link_to_verification_in_the_managers_language(world: World) -> None:
    from verification.models import BusinessNotice

    BusinessNotice.objects.create(business=world.business_a, level="warning", title="Badge revoked", body="")
    html = business_client(world.business_a, world.owner_a).get("/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert '<a href="/verification/">Verifizierung öffnen</a>' in html
