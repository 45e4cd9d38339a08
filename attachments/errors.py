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


class AttachmentError(Exception):
    def __init__(self, code: AttachmentErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return {
            AttachmentErrorCode.TOO_LARGE: 413,
            AttachmentErrorCode.UNSUPPORTED_TYPE: 415,
            AttachmentErrorCode.NOT_FOUND: 404,
            AttachmentErrorCode.EXPIRED: 410,
        }.get(self.code, 400)
