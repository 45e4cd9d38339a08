"""What the pages tell their websocket clients, declared once.

Close codes: the consumers and the tenant middleware close with them, and the pages hand them to
the JS clients (`client_close_codes`) so a refusal that retrying cannot fix (not signed in, not
allowed, no such business) stops the reconnect loop. Paths: the routes are named in
messaging/routing.py and reversed here (`socket_url`), so no client writes one down."""

from __future__ import annotations

import inspect
import random as _random
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from django.urls import reverse

# config/routing.py; imported by name when a path is reversed (it imports the consumers, which
# import this module).
WEBSOCKET_URLCONF = "config.routing"


class CloseCode(IntEnum):
    UNAUTHENTICATED = 4401  # not signed in, or the session ended (logout, sign-out, new password)
    FORBIDDEN = 4403  # no seat (or it was removed), foreign origin, business suspended
    NOT_FOUND = 4404  # no such business on this host


def client_close_codes() -> dict[str, int]:
    """For a page's json_script config: the codes after which a client must not reconnect."""
    return {code.name.lower(): int(code) for code in CloseCode}


def socket_url(name: str) -> str:
    """The path of a named websocket route (messaging/routing.py), for a page's config."""
    return reverse(name, urlconf=WEBSOCKET_URLCONF)


# How a client reconnects after a socket closes (not with a code above): exponential backoff with
# full jitter, as static/parley/realtime.js's reconnectDelay. The Python clients (the reliability
# checks, bench/clients.py) use this so they behave like the pages.
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_CAP_SECONDS = 10.0


def reconnect_delay(attempt: int, random: Callable[[], float] = _random.random) -> float:
    """Seconds to wait before reconnect number `attempt` (0 for the first since a socket opened):
    uniformly random up to min(cap, base * 2**attempt), so clients that lost their sockets together
    (a server restart) spread their reconnects instead of returning all at once."""
    return random() * min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2 ** min(attempt, 30))


# How a client retries a send refused for load or rate (`overloaded`, `rate_limited`), with the
# same client_msg_id: as static/parley/realtime.js's sendRetryDelay.
DEFAULT_RETRY_AFTER_SECONDS = 3.0  # a refusal that names no retry_after
SEND_RETRY_CAP_SECONDS = 30.0


def send_retry_delay(retry_after: float | None, refusals: int, random: Callable[[], float] = _random.random) -> float:
    """Seconds before a refused send goes again; `refusals` counts this message's refusals (1 for
    the first). The first retry waits the server's retry_after; each further refusal of the same
    message doubles it, up to the cap (never below retry_after), with up to a quarter of jitter.
    Without the doubling, messages waiting under sustained overload were retried every fraction
    of a second each, and their retries outnumbered the new sends (issue 9: at 3× overload,
    91,932 refusals in 16 s against 34,650 messages sent)."""
    base = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_RETRY_AFTER_SECONDS
    wait = max(base, min(SEND_RETRY_CAP_SECONDS, base * 2 ** min(max(refusals, 1) - 1, 30)))
    return wait * (1 + random() * 0.25)


# What a socket's scope keeps once its consumer handled websocket.connect (`slim_scope`): the
# consumers read the other headers (cookie, accept-language, user agent, sec-websocket-*) and the
# parsed cookies only while connecting; kept, they were ~1.5 KiB per idle socket (issue 9).
HEADERS_KEPT_AFTER_CONNECT = frozenset({b"host", b"origin"})


def slim_scope(scope: dict[str, Any]) -> None:
    """Drop what only the handshake reads (called by messaging.socket_task once connect was
    handled): the headers but Host and Origin, and the parsed cookies. The session store, the
    business, the route and everything else stay."""
    headers = scope.get("headers")
    if headers:
        scope["headers"] = [(name, value) for name, value in headers if name in HEADERS_KEPT_AFTER_CONNECT]
    scope.pop("cookies", None)


def frameless[F: Callable[..., Any]](function: F) -> F:
    """Mark a plain function that returns its inner application's coroutine as an ASGI 3 callable
    (uvicorn and asgiref decide ASGI 2 or 3 by `iscoroutinefunction`). A wrapper that *awaits*
    its inner application keeps a coroutine frame for the life of every websocket; one that
    returns it keeps none (issue 9: ten wrappers were ~11 coroutines per idle socket)."""
    return inspect.markcoroutinefunction(function)
