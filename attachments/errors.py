"""Attachments' refusals: a stable code per reason, a message for people."""

from __future__ import annotations

from enum import StrEnum


class AttachmentErrorCode(StrEnum):
    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    INVALID = "invalid"
    NOT_FOUND = "not_found"  # missing and not-yours look alike
    EXPIRED = "expired"
    RATE_LIMITED = "rate_limited"


class AttachmentError(Exception):
    def __init__(self, code: AttachmentErrorCode, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, for RATE_LIMITED

    @property
    def http_status(self) -> int:
        return {
            AttachmentErrorCode.TOO_LARGE: 413,
            AttachmentErrorCode.UNSUPPORTED_TYPE: 415,
            AttachmentErrorCode.NOT_FOUND: 404,
            AttachmentErrorCode.EXPIRED: 410,
            AttachmentErrorCode.RATE_LIMITED: 429,
        }.get(self.code, 400)
