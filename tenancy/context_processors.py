from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def parley(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    membership = getattr(request, "membership", None)
    sections = []
    if membership:
        from tenancy.sections import SECTIONS

        sections = [s for s in SECTIONS if membership.can_manage or not s.manage_only]
    return {
        "dashboard_sections": sections,
        "business": tenant if tenant is not None and not tenant.is_public else None,
        "membership": membership if membership else None,
        "public_url": settings.PARLEY_PUBLIC_URL,
        "parley_domain": settings.PARLEY_DOMAIN,
    }
