from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.template.loader import render_to_string
from django.utils.functional import SimpleLazyObject
from django_tenants.middleware.main import TenantMainMiddleware

from tenancy.selectors import membership_for


class BusinessHostMiddleware(TenantMainMiddleware):
    """Resolve the business from the Host header and switch to its schema.

    An unknown subdomain gets a friendly 404 page instead of the public site: showing the
    platform's pages under a business's address would let anyone squat on a name.
    """

    def no_tenant_found(self, request: HttpRequest, hostname: str) -> HttpResponse:
        html = render_to_string("errors/no_business.html", {"hostname": hostname}, request=None)
        return HttpResponseNotFound(html)


class BusinessMembershipMiddleware:
    """Attach `request.membership`: the user's seat in the business whose host this is."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant: Any = getattr(request, "tenant", None)
        user: Any = getattr(request, "user", None)
        request.membership = SimpleLazyObject(  # type: ignore[attr-defined]
            lambda: membership_for(user=user, business=tenant) if tenant is not None and user is not None else None
        )
        return self.get_response(request)
