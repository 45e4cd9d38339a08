"""Reads of the audit log."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEvent
from tenancy.models import Business


def audit_events_for_business(*, business: Business, action: str) -> QuerySet[AuditEvent]:
    """One kind of entry about a business (e.g. staff opening its conversations), newest first."""
    return AuditEvent.objects.filter(business=business, action=action).select_related("actor").order_by("-created_at")
