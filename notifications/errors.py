"""The notifications domain's refusals: a stable code for machines, a message for people, and
the HTTP status the API answers with (as application/problem+json)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    DUPLICATE = "duplicate"
    TEMPLATE_NOT_APPROVED = "template_not_approved"
    TEMPLATE_PAUSED = "template_paused"
    MISSING_PARAMETER = "missing_parameter"
    UNKNOWN_PARAMETER = "unknown_parameter"
    INVALID_PHONE = "invalid_phone"
    WINDOW_CLOSED = "window_closed"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    RATE_LIMITED = "rate_limited"
    TIER_LIMIT = "tier_limit"
    BATCH_TOO_LARGE = "batch_too_large"
    TOO_LARGE = "too_large"
    SUSPENDED = "suspended"
    PAYMENT_REQUIRED = "payment_required"
    EVENTS_EXPIRED = "events_expired"
    NOT_A_CUSTOMER = "not_a_customer"
    CUSTOMER_OPTED_OUT = "customer_opted_out"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.DUPLICATE: 409,
    ErrorCode.TEMPLATE_NOT_APPROVED: 422,
    ErrorCode.TEMPLATE_PAUSED: 422,
    ErrorCode.MISSING_PARAMETER: 400,
    ErrorCode.UNKNOWN_PARAMETER: 400,
    ErrorCode.INVALID_PHONE: 400,
    ErrorCode.WINDOW_CLOSED: 422,
    ErrorCode.IDEMPOTENCY_MISMATCH: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TIER_LIMIT: 429,
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.SUSPENDED: 403,
    ErrorCode.PAYMENT_REQUIRED: 402,
    ErrorCode.EVENTS_EXPIRED: 410,
    ErrorCode.NOT_A_CUSTOMER: 404,
    ErrorCode.CUSTOMER_OPTED_OUT: 409,
}


class NotificationError(Exception):
    def __init__(self, code: ErrorCode, message: str, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]
