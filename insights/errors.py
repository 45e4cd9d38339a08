"""Insights' refusals: a stable code per reason, a message for people."""

from __future__ import annotations

from enum import StrEnum


class InsightsErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    ALREADY_RATED = "already_rated"


class InsightsError(Exception):
    def __init__(self, code: InsightsErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = InsightsErrorCode(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return {
            InsightsErrorCode.NOT_FOUND: 404,
            InsightsErrorCode.FORBIDDEN: 403,
            InsightsErrorCode.ALREADY_RATED: 409,
        }.get(self.code, 400)
