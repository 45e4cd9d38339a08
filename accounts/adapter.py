from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.http.request import validate_host
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


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

    def is_safe_url(self, url: str | None) -> bool:
        """allauth's check, and a page on a business's host asked for before signing in (the
        login form lives on the public host, so `next` names the business's host in full).
        allauth compares the URL's host *with its port* against ALLOWED_HOSTS' subdomain pattern,
        which never matches one: wherever Parley runs on a port (`make demo` on :8000) an agent
        who opened /inbox/ signed in and landed on the dashboard instead. A business host must
        match ALLOWED_HOSTS without the port, and the port must be the public site's own."""
        if not url:
            return False
        if super().is_safe_url(url):
            return True
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # a port that is no number
            return False
        public = urlsplit(settings.PARLEY_PUBLIC_URL)
        return (
            parts.scheme == public.scheme
            and parts.hostname is not None
            and port == public.port
            and validate_host(parts.hostname, [host for host in settings.ALLOWED_HOSTS if host != "*"])
            # Django's own guards as well (backslashes, control characters, schemes).
            and url_has_allowed_host_and_scheme(url, allowed_hosts={parts.netloc})
        )
