"""Websocket close codes, declared once: the consumers and the tenant middleware close with
them, and the pages hand them to the JS clients (`client_close_codes`) so a refusal that
retrying cannot fix (not signed in, not allowed, no such business) stops the reconnect loop."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    UNAUTHENTICATED = 4401  # not signed in, or the session ended (logout, sign-out, new password)
    FORBIDDEN = 4403  # no seat (or it was removed), foreign origin, business suspended
    NOT_FOUND = 4404  # no such business on this host


def client_close_codes() -> dict[str, int]:
    """For a page's json_script config: the codes after which a client must not reconnect."""
    return {code.name.lower(): int(code) for code in CloseCode}
