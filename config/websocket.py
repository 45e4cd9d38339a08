"""What the pages tell their websocket clients, declared once.

Close codes: the consumers and the tenant middleware close with them, and the pages hand them to
the JS clients (`client_close_codes`) so a refusal that retrying cannot fix (not signed in, not
allowed, no such business) stops the reconnect loop. Paths: the routes are named in
messaging/routing.py and reversed here (`socket_url`), so no client writes one down."""

from __future__ import annotations

from enum import IntEnum

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
