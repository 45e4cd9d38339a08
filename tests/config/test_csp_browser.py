"""Pages load in Chromium under the enforced Content-Security-Policy without a violation
(issue 10, defect 4): Chromium reports each blocked inline style or script in the console."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from accounts.models import User
from tests.conftest import LiveServer, World


def session_for(user: User | None) -> str | None:
    if user is None:
        return None
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    assert store.session_key
    return store.session_key


def violations_while_loading(browser: Any, urls: list[str], session: str | None) -> dict[str, list[str]]:
    context = browser.new_context()
    if session:
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": session,
                    "domain": f".{settings.PARLEY_DOMAIN}",
                    "path": "/",
                }
            ]
        )
    page = context.new_page()
    page.set_default_timeout(15000)
    found: dict[str, list[str]] = {}
    current = {"url": ""}
    page.on(
        "console",
        lambda message: (
            found.setdefault(current["url"], []).append(message.text)
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
            else None
        ),
    )
    try:
        for url in urls:
            current["url"] = url
            response = page.goto(url, wait_until="load")
            assert response is not None and response.status == 200, url
            assert response.headers.get("content-security-policy"), f"no CSP on {url}"
            # Module scripts and htmx run after load; give them a moment to touch the DOM.
            page.wait_for_timeout(300)
    finally:
        context.close()
    return found


@pytest.mark.browser
def test_pages_load_with_no_csp_violations(live_db: World, live_server_process: LiveServer, browser: Any) -> None:
    server = live_server_process
    a = live_db.business_a
    visits = [
        (None, [server.public_url("/"), server.public_url("/pricing/"), server.public_url("/businesses/")]),
        (
            None,
            [server.public_url("/accounts/login/"), server.public_url("/accounts/signup/"), server.public_url("/me/")],
        ),
        (
            live_db.owner_a,
            [
                server.public_url("/home/"),
                server.business_url(a, "/"),
                server.business_url(a, "/inbox/"),
                server.business_url(a, "/contacts/"),
                server.business_url(a, "/team/"),
                server.business_url(a, "/verification/"),
                server.business_url(a, "/billing/"),
                server.public_url("/accounts/2fa/"),
            ],
        ),
        (live_db.staff, [server.public_url("/admin/"), server.public_url("/admin/tenancy/business/")]),
        # The API's docs (Swagger UI, vendored): its styles are set inline by its own script.
        (None, [server.business_url(a, "/api/v1/docs/")]),
    ]
    violations: dict[str, list[str]] = {}
    for user, urls in visits:
        violations.update(violations_while_loading(browser, urls, session_for(user)))
    assert violations == {}, "\n".join(f"{url}: {texts}" for url, texts in violations.items())
