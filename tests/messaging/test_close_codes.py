"""Issue 8 seam: the websocket close codes are declared once, in Python, and reach the JS through
the pages' config; no client hard-codes them, and /me/ uses realtime.js's reconnect loop."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.test import Client

from config.websocket import CloseCode, client_close_codes
from tests.conftest import World, business_client

STATIC = Path(__file__).resolve().parents[2] / "static" / "parley"


def test_no_client_hard_codes_a_close_code() -> None:
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for code in CloseCode:
            assert str(int(code)) not in text, f"{script.name} hard-codes {int(code)}"


def test_me_page_uses_the_shared_reconnect_loop() -> None:
    text = (STATIC / "me.js").read_text()
    assert 'from "./realtime.js"' in text and "new ResumingSocket(" in text
    assert "new WebSocket(" not in text


def _config(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_pages_hand_the_close_codes_to_the_js(world: World) -> None:
    html = business_client(world.business_a, world.agent_a).get("/inbox/").content.decode()
    assert _config(html, "inbox-config")["close_codes"] == client_close_codes()
    assert set(client_close_codes().values()) == {4401, 4403, 4404}


def test_me_fragment_hands_the_close_codes_to_the_js(world: World) -> None:
    from customers.session import SESSION_KEY
    from tests.messaging.conftest import make_customer

    customer = make_customer()
    client = Client(HTTP_HOST="parley.localhost")
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()
    html = client.get("/me/conversations/").content.decode()
    assert _config(html, "me-config")["close_codes"] == client_close_codes()
