"""`Authorization: Bearer <key>`: the key is looked up in the request's business schema only, so
business A's key on business B's host is unknown there (401), whatever it is elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from notifications.models import ApiKey
from notifications.services import api_key_authenticate


@dataclass
class ApiClient:
    """The caller of an API request: a business's system holding one key (not a person)."""

    key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    pk: Any = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.key.scopes


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed(_("Send the key as: Authorization: Bearer <key>."))
        key = api_key_authenticate(secret=parts[1])
        if key is None:
            raise exceptions.AuthenticationFailed(_("This API key is not valid for this business, or was revoked."))
        return ApiClient(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class HasScope(BasePermission):
    """The key must carry the view's `required_scope`."""

    message = "forbidden"

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        scope = getattr(view, "required_scope", "")
        if not isinstance(client, ApiClient):
            return False
        if scope and not client.has_scope(scope):
            self.message = _("This API key lacks the “%(scope)s” scope.") % {"scope": scope}
            return False
        return True
