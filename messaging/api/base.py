"""What every API view shares: key authentication, errors as application/problem+json
(RFC 9457) with a stable `code`, every request logged against its key, and Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api.authentication import ApiClient, ApiKeyAuthentication, HasScope
from notifications.errors import ErrorCode, NotificationError
from notifications.services import api_request_record, idempotent_answer_claim, idempotent_answer_store

PROBLEM = "application/problem+json"

DRF_CODES = {
    exceptions.NotAuthenticated: ErrorCode.UNAUTHORIZED,
    exceptions.AuthenticationFailed: ErrorCode.UNAUTHORIZED,
    exceptions.PermissionDenied: ErrorCode.FORBIDDEN,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.ParseError: ErrorCode.INVALID,
    exceptions.ValidationError: ErrorCode.INVALID,
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
}


def problem(code: str, message: str, http_status: int, *, retry_after: int | None = None, **extra: Any) -> Response:
    body = {"type": f"https://parley.dev/errors/{code}", "title": message, "status": http_status, "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(body, status=http_status, content_type=PROBLEM)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


class ApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    required_scope = "read"

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, NotificationError):
            return problem(exc.code, exc.message, exc.http_status, retry_after=exc.retry_after, **exc.extra)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            message = (
                str(exc.detail)
                if isinstance(exc, exceptions.AuthenticationFailed)
                else _("Send an API key: Authorization: Bearer <key>.")
            )
            response = problem(ErrorCode.UNAUTHORIZED, message, status.HTTP_401_UNAUTHORIZED)
            response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        if isinstance(exc, RequestDataTooBig):
            # Django refuses to read a body past DATA_UPLOAD_MAX_MEMORY_SIZE; unanswered here it
            # became Django's HTML "Bad Request (400)" page, no code for a client to act on.
            return problem(
                ErrorCode.TOO_LARGE,
                _("The request body is larger than the %(limit)s the API reads. Upload files to /api/v1/media.")
                % {"limit": filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)},
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
            return problem(
                ErrorCode.INVALID, _("The request has too many fields or files."), status.HTTP_400_BAD_REQUEST
            )
        if isinstance(exc, exceptions.APIException):
            code = next((c for t, c in DRF_CODES.items() if isinstance(exc, t)), ErrorCode.INVALID)
            errors = exc.detail if isinstance(exc, exceptions.ValidationError) else None
            message = _("The request is not valid.") if errors is not None else str(exc.detail)
            return problem(code, message, exc.status_code, errors=errors)
        raise exc

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        client = getattr(request, "_user", None)
        if isinstance(client, ApiClient):
            error_code = response.data.get("code", "") if response.status_code >= 400 and response.data else ""
            api_request_record(
                key=client.key,
                method=request.method or "",
                path=request.path,
                status_code=response.status_code,
                error_code=str(error_code),
                ip_address=request.META.get("REMOTE_ADDR"),
            )
        return response


def _request_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str) if request.data else ""
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


class IdempotentPost(ApiView):
    """POST answers are stored under the caller's Idempotency-Key for 24 hours: a retry with the
    same key and body gets the same answer (and nothing happens twice); the same key with another
    body is refused. The work and its stored answer commit together."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        idempotency_key = request.headers.get("Idempotency-Key", "")
        if not idempotency_key:
            return self.create(request, *args, **kwargs)
        if len(idempotency_key) > 255:
            raise NotificationError(ErrorCode.INVALID, _("Idempotency-Key can be at most 255 characters."))
        client: Any = request.user
        request_hash = _request_hash(request)
        with transaction.atomic():
            stored = idempotent_answer_claim(api_key=client.key, key=idempotency_key)
            if stored is not None:
                if stored.request_hash != request_hash:
                    raise NotificationError(
                        ErrorCode.IDEMPOTENCY_MISMATCH,
                        _("This Idempotency-Key was used with a different request."),
                    )
                content_type = PROBLEM if stored.status_code >= 400 else None
                response = Response(stored.body, status=stored.status_code, content_type=content_type)
                response["Idempotent-Replayed"] = "true"
                return response
            try:
                with transaction.atomic():
                    response = self.create(request, *args, **kwargs)
            except Exception as exc:  # the refusal is the answer to replay
                response = self.handle_exception(exc)
            # Server errors and "slow down" are worth retrying with the same key, so not kept.
            if response.status_code < 500 and response.status_code != 429:
                idempotent_answer_store(
                    api_key=client.key,
                    key=idempotency_key,
                    request_hash=request_hash,
                    status_code=response.status_code,
                    body=json.loads(json.dumps(response.data, default=str)),
                )
        return response

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotImplementedError
