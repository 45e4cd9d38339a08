"""Public pages that speak for the whole product, so they may read from every app (config sits
above the apps and composes them; tenancy, below them, must not)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static

from billing.models import FREE_SERVICE_CONVERSATIONS_PER_MONTH


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every host for /favicon.ico, the admin's pages included: send them the icon."""
    return HttpResponsePermanentRedirect(static("parley/favicon.svg"))


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "public/landing.html", {"free_tier": FREE_SERVICE_CONVERSATIONS_PER_MONTH})
