"""Assignment's refusals. They reach agents through the inbox socket, whose error frames carry
messaging's codes, so each code here is one of those (clients branch on the code)."""

from __future__ import annotations

from enum import StrEnum

from messaging.errors import MessagingError, MessagingErrorCode


class AssignmentErrorCode(StrEnum):
    INVALID = MessagingErrorCode.INVALID.value  # bad status, a snooze in the past, not a member
    NOT_FOUND = MessagingErrorCode.NOT_FOUND.value


def assignment_error(message: str, code: AssignmentErrorCode = AssignmentErrorCode.INVALID) -> MessagingError:
    return MessagingError(code.value, message)
