"""Every page a person sees fits a 390 px phone: nothing is wider than the screen, in English
and in German (German words are longer), legend swatches stay swatch-sized, and the inbox shows
one pane at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import tenant_context

from messaging.services import message_send_agent, message_send_customer
from notifications.models import Template
from tests.conftest import LiveServer, World
from tests.messaging.conftest import make_customer, session_key

PHONE = {"width": 390, "height": 844}

PUBLIC_ANONYMOUS = [
    "/",
    "/pricing/",
    "/businesses/",
    "/businesses/?q=alpha",
    "/me/",
    "/accounts/login/",
    "/accounts/signup/",
]
PUBLIC_SIGNED_IN = ["/home/", "/start/"]
BUSINESS_OWNER = [
    "/",
    "/inbox/",
    "/contacts/",
    "/templates/",
    "/developers/",
    "/verification/",
    "/billing/",
    "/reports/",
    "/team/",
    "/accounts/2fa/",
]


def _context(browser: Any, *, language: str, session: str | None = None) -> Any:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    domain = f".{settings.PARLEY_DOMAIN}"
    cookies = [{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "domain": domain, "path": "/"}]
    if session:
        cookies.append({"name": settings.SESSION_COOKIE_NAME, "value": session, "domain": domain, "path": "/"})
    context.add_cookies(cookies)
    return context


def _overflow(page: Any, url: str) -> str | None:
    response = page.goto(url)
    assert response is not None and response.status < 400, f"{url}: HTTP {response and response.status}"
    page.wait_for_load_state("networkidle")
    # A chart legend's colour swatch is an inline SVG: a page style that sizes every chart SVG
    # to the full width once blew the billing legend's swatches up to squares of 300 px.
    swollen = page.evaluate(
        "() => [...document.querySelectorAll('.swatch')].filter(e => e.getBoundingClientRect().width > 24).length"
    )
    if swollen:
        return f"{url}: {swollen} legend swatches are wider than 24px"
    width = page.evaluate("document.documentElement.scrollWidth")
    if width <= PHONE["width"]:
        return None
    culprits = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className)"""
    )
    return f"{url} is {width}px wide ({', '.join(culprits)})"


@pytest.fixture
def conversation(live_db: World) -> Iterator[int]:
    customer = make_customer("Phone Fit")
    with tenant_context(live_db.business_a):
        conversation_id = message_send_customer(
            business=live_db.business_a,
            customer=customer,
            body="A long message without spaces: https://aurora-air.example/booking/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        ).message.conversation_id
        # The reply opens a billed service conversation, so the billing page draws its chart.
        message_send_agent(
            business=live_db.business_a, user=live_db.agent_a, conversation_id=conversation_id, body="On it."
        )
        # Templates with long names, one rejected with its reason: the templates table is wider
        # than a phone and must scroll in its own box (its cells' screen-reader texts once
        # widened the page past it).
        for n, status in enumerate(Template.Status.values):
            Template.objects.get_or_create(
                name=f"flight_schedule_change_rebooking_confirmation_{n}",
                language="de",
                defaults={
                    "category": Template.Category.UTILITY,
                    "body": "Ihr Flug {{1}} startet jetzt um {{2}}.",
                    "status": status,
                    "rejection_reason": "Bitte nennen Sie die Buchungsnummer im Text." if status == "rejected" else "",
                },
            )
    yield conversation_id


@pytest.mark.browser
@pytest.mark.parametrize("language", ["en", "de"])
def test_no_page_is_wider_than_a_phone(
    live_db: World, live_server_process: LiveServer, browser: Any, conversation: int, language: str
) -> None:
    server = live_server_process
    customer = make_customer("Phone Reader")
    with tenant_context(live_db.business_a):
        message_send_customer(business=live_db.business_a, customer=customer, body="Hallo")
    visits: list[tuple[str | None, list[str]]] = [
        (None, [server.public_url(path) for path in PUBLIC_ANONYMOUS]),
        (session_key(user=live_db.owner_a), [server.public_url(path) for path in PUBLIC_SIGNED_IN + ["/businesses/"]]),
        (
            session_key(user=live_db.owner_a),
            [server.business_url(live_db.business_a, path) for path in BUSINESS_OWNER]
            + [server.business_url(live_db.business_a, f"/inbox/#c{conversation}")],
        ),
        (
            session_key(customer=customer),
            [
                server.public_url("/me/"),
                server.public_url("/businesses/"),
                server.business_url(live_db.business_a, "/chat/"),
            ],
        ),
        (session_key(user=live_db.staff), [server.public_url("/dev/outbox/")]),
    ]
    problems = []
    for session, urls in visits:
        context = _context(browser, language=language, session=session)
        page = context.new_page()
        page.set_default_timeout(15000)
        try:
            problems += [problem for url in urls if (problem := _overflow(page, url))]
        finally:
            context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.browser
def test_inbox_on_a_phone_shows_one_pane_at_a_time(
    live_db: World, live_server_process: LiveServer, browser: Any, conversation: int
) -> None:
    context = _context(browser, language="en", session=session_key(user=live_db.agent_a))
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        assert page.locator("#conv-list").is_visible()
        assert not page.locator("#thread").is_visible() and not page.locator("#details").is_visible()

        page.locator(f'[data-conversation="{conversation}"]').click()
        page.locator(".bubble.theirs", has_text="A long message").wait_for()
        assert not page.locator("#conv-list").is_visible()
        assert page.get_by_role("textbox", name="Message").is_visible()

        page.get_by_role("button", name="Contact details").click()
        assert page.locator("#details").get_by_text("Phone Fit").is_visible()
        assert not page.locator("#thread").is_visible()
        page.get_by_role("button", name="Back to the conversation").click()
        assert page.locator("#thread").is_visible()

        page.get_by_role("button", name="Conversations").click()
        assert page.locator("#conv-list").is_visible() and not page.locator("#thread").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()
