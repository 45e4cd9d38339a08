"""Ids from clients. Only a whole number a bigint column can hold names anything: JSON also
allows `true`, `1.9` and `1e400` (which int() would turn into 1, 1 and an OverflowError), and a
number past the column's range reaches PostgreSQL through the send core's raw SQL as an error
(a probe as an attacker, 2026-12-06: a `server_error` without the send's `client_msg_id`)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from messaging.errors import MessagingError, MessagingErrorCode, not_found

BIGINT_MAX = 2**63 - 1


def _whole_number(value: Any) -> int | None:
    """`value` as an int if it is one a client may send for an id (a JSON integer, or its digits
    as a string, as a form or a data attribute gives them) within bigint's range; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and len(value) <= 25:
        text = value.strip()
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdecimal()):
            return None
        number = int(text)
    else:
        return None
    return number if -BIGINT_MAX - 1 <= number <= BIGINT_MAX else None


def conversation_pk(value: Any) -> int:
    """A conversation id from a client; anything that is not one cannot name a conversation."""
    number = _whole_number(value)
    if number is None:
        raise not_found()
    return number


def client_int(value: Any) -> int:
    """A number from a client (a message id, a user id): anything else is `invalid`."""
    number = _whole_number(value)
    if number is None:
        raise MessagingError(MessagingErrorCode.INVALID, _("Expected a number.")) from None
    return number
