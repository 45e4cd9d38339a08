"""Collaboration's refusals: a stable code per reason (clients branch on it), a message for people."""

from __future__ import annotations

from enum import StrEnum


class CollabErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"  # missing and not-yours look alike
    FORBIDDEN = "forbidden"  # a member without the right role
    DUPLICATE = "duplicate"
    # A macro could not do one of its actions (e.g. its reply outside the 24-hour window): nothing was done.
    REFUSED = "refused"


class CollabError(Exception):
    def __init__(self, code: CollabErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = CollabErrorCode(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return {
            CollabErrorCode.NOT_FOUND: 404,
            CollabErrorCode.FORBIDDEN: 403,
            CollabErrorCode.DUPLICATE: 409,
            CollabErrorCode.REFUSED: 409,
        }.get(self.code, 400)
