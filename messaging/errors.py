"""Messaging's refusals: one error type with a stable code per reason (clients branch on the
code; the message is for people, in the current language)."""

from __future__ import annotations

from enum import StrEnum

from django.utils.translation import gettext as _


class MessagingErrorCode(StrEnum):
    """Every code a messaging client can receive (websocket error frames, and the API later)."""

    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"
    NOT_FOUND = "not_found"  # missing and not-yours look alike
    EMPTY = "empty"
    TOO_LONG = "too_long"
    RATE_LIMITED = "rate_limited"
    WINDOW_CLOSED = "window_closed"
    BLOCKED = "blocked"
    SUSPENDED = "suspended"
    PAYMENT_REQUIRED = "payment_required"
    # privacy (issue 14): the customer opted out of this category (marketing muted, STOP, /me/).
    OPTED_OUT = "opted_out"
    # The send path is saturated: nothing was written; retry after `retry_after` seconds.
    OVERLOADED = "overloaded"
    # Collision guard (issue 12): another agent holds the conversation; resend with takeover to
    # confirm, or (only the assignee may reply) not at all.
    HELD_BY_OTHER = "held_by_other"
    ASSIGNEE_ONLY = "assignee_only"
    SERVER_ERROR = "server_error"
    # The pages' JSON reads only (a websocket closes with 4401/4403 instead, config/websocket.py);
    # forbidden also refuses an edit or delete of someone else's message (issue 13).
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    # rich messages (issue 13): past the 15-minute edit/delete window.
    TOO_LATE = "too_late"


class MessagingError(Exception):
    """A refused action. `code` is stable for clients; `message` is for people; `retry_after`
    (seconds) says when a refused-for-load action may be tried again."""

    def __init__(self, code: MessagingErrorCode | str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = MessagingErrorCode(code)
        self.message = message
        self.retry_after = retry_after


def not_found() -> MessagingError:
    # "Missing" and "not yours" look the same.
    return MessagingError(MessagingErrorCode.NOT_FOUND, _("This conversation does not exist."))
