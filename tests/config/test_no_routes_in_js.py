"""No JS file under static/ writes down one of the application's routes: the server reverses its
URLs (HTTP and websocket) and hands them to the page's JS in its config, so renaming a route can
never leave a client calling the old path."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from config.websocket import WEBSOCKET_URLCONF
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from tests.conftest import ROOT, World, business_client, public_client
from tests.messaging.conftest import make_customer

# A JS string literal ('…', "…" or `…`); comments are dropped first (a `//` after a space or at
# the start of a line: "https://…" keeps its slashes).
STRING = re.compile(r"""(["'`])((?:\\.|(?!\1).)*)\1""")
COMMENT = re.compile(r"(^|\s)//[^\n]*|/\*(?s:.*?)\*/", re.MULTILINE)


def first_segments(patterns: list, prefix: str = "") -> set[str]:
    """The first path segment of every route (the literal text before any converter)."""
    found: set[str] = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found |= first_segments(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            segment = route.lstrip("^/").split("/")[0]
            if segment and re.fullmatch(r"[\w.-]+", segment):
                found.add(segment)
    return found


def app_routes() -> set[str]:
    confs = [settings.ROOT_URLCONF, settings.PUBLIC_SCHEMA_URLCONF, WEBSOCKET_URLCONF]
    return set().union(*(first_segments(get_resolver(conf).url_patterns) for conf in confs))


def hard_coded_routes(source: str, segments: set[str]) -> list[str]:
    alternatives = "|".join(re.escape(s) for s in sorted(segments, key=len, reverse=True))
    route = re.compile(rf"(?<![\w.:/-])/(?:{alternatives})(?=[/?#\"'`]|$)")
    return [text for _quote, text in STRING.findall(COMMENT.sub(r"\1", source)) if route.search(text)]


def test_the_checker_knows_the_routes_and_finds_them_in_strings() -> None:
    segments = app_routes()
    assert {"inbox", "chat", "ws", "me", "api", "accounts", "billing", "admin"} <= segments
    caught = [
        'new ResumingSocket("/ws/inbox/", {});',
        "fetch(`/inbox/api/conversations/${id}/messages/`);",
        "const url = '/chat/messages/?before=' + id;",
        "location.href = `${base}/me/`;",
    ]
    for line in caught:
        assert hard_coded_routes(line, segments), line
    assert hard_coded_routes('// a comment\nconst a = "/api/v1/";\n', segments)
    passed = [
        "fetch(config.urls.messages);",
        "// Reconnects to /ws/inbox/ after a drop",
        "/* the /me/ page */ const x = 1;",
        'const ns = "http://www.w3.org/2000/svg";',
        "history.replaceState(null, '', `#c${id}`);",
        'el.setAttribute("aria-label", "Mine / All");',
    ]
    for line in passed:
        assert not hard_coded_routes(line, segments), line


def test_no_js_file_hard_codes_an_app_route() -> None:
    segments = app_routes()
    scripts = [p for p in (ROOT / "static").rglob("*.js") if "vendor" not in p.parts]
    assert scripts
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in scripts
        if (found := hard_coded_routes(Path(path).read_text(encoding="utf-8"), segments))
    }
    assert not offenders, f"routes written into JS (pass them in the page config instead): {offenders}"


def _config(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_pages_hand_their_urls_to_the_js(world: World) -> None:
    """What replaced the written-down paths: each page's config names the routes it uses."""
    inbox = _config(business_client(world.business_a, world.agent_a).get("/inbox/").content.decode(), "inbox-config")
    assert inbox["urls"] == {
        "conversations": "/inbox/api/conversations/",
        "counts": "/inbox/api/counts/",
        "messages": "/inbox/api/conversations/{id}/messages/",
        "socket": "/ws/inbox/",
        "upload": "/inbox/api/attachments/",
    }
    customer = make_customer()
    chat_client = business_client(world.business_a)
    me_client = public_client()
    for client in (chat_client, me_client):
        session = client.session
        session[CUSTOMER_SESSION_KEY] = customer.pk
        session.save()
    chat = _config(chat_client.get("/chat/").content.decode(), "chat-config")
    assert chat["urls"] == {
        "messages": "/chat/messages/",
        "queue": "/chat/queue/",
        "socket": "/ws/chat/",
        "upload": "/chat/attachments/",
    }
    me = _config(me_client.get("/me/conversations/").content.decode(), "me-config")
    assert me["urls"] == {"socket": "/ws/me/"}
    # Every socket path is one the websocket router serves.
    for path in (inbox["urls"]["socket"], chat["urls"]["socket"], me["urls"]["socket"]):
        resolve(path, urlconf=WEBSOCKET_URLCONF)
