"""Public pages that speak for the whole product, so they may read from every app (config sits
above the apps and composes them; tenancy, below them, must not)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing.models import FREE_SERVICE_CONVERSATIONS_PER_MONTH


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "public/landing.html", {"free_tier": FREE_SERVICE_CONVERSATIONS_PER_MONTH})
