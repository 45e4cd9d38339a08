"""Ids from clients. Anything that is not a plain integer names nothing (JSON allows 1e400,
which int() refuses with OverflowError)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from messaging.errors import MessagingError, MessagingErrorCode, not_found


def conversation_pk(value: Any) -> int:
    """A conversation id from a client; anything that is not one cannot name a conversation."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise not_found() from None


def client_int(value: Any) -> int:
    """A number from a client (a message id, a user id): anything else is `invalid`."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise MessagingError(MessagingErrorCode.INVALID, _("Expected a number.")) from None
