from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def parley(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    membership = getattr(request, "membership", None)
    sections = []
    if membership:
        from tenancy.sections import SECTIONS

        sections = [s for s in SECTIONS if membership.can_manage or not s.manage_only]
    from customers.session import customer_from_session, customer_id_from_session

    session = getattr(request, "session", None)
    signed_in_customer = (
        # Looked up only when a page's header shows it, and only for a customer's session.
        SimpleLazyObject(lambda: customer_from_session(session))
        if customer_id_from_session(session) is not None
        else None
    )
    return {
        "signed_in_customer": signed_in_customer,
        "dashboard_sections": sections,
        "business": tenant if tenant is not None and not tenant.is_public else None,
        "membership": membership if membership else None,
        "public_url": settings.PARLEY_PUBLIC_URL,
        "parley_domain": settings.PARLEY_DOMAIN,
    }
