from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse


def on_business_host(request: HttpRequest | None) -> bool:
    """Whether the request came in on a business's host (its URLconf has no public routes)."""
    tenant: Any = getattr(request, "tenant", None)
    return tenant is not None and not tenant.is_public


class ParleyAccountAdapter(DefaultAccountAdapter):
    """allauth serves both URLconfs (public host and every business host), so every default
    redirect must name a route that exists on the host the user is on."""

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        # On a business's host the user came for that business: its dashboard (or, for a
        # stranger, its chat page). On the public host: their business or the list of them.
        if on_business_host(request):
            return reverse("dashboard")
        return reverse("home")

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        # A new owner's next step is always creating their business, which lives on the public host.
        if on_business_host(request):
            return f"{settings.PARLEY_PUBLIC_URL}/start/"
        return reverse("business_create")
