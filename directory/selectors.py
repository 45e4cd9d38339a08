"""Public reads: the customer's list of threads, and the business directory."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from accounts.models import Customer
from directory.models import CustomerThread
from tenancy.models import PUBLIC_SCHEMA, Business

DIRECTORY_PAGE = 50


def threads_for_customer(*, customer: Customer, limit: int = 100) -> list[CustomerThread]:
    """Only this customer's rows; businesses that were removed or are the platform itself are skipped."""
    return list(
        CustomerThread.objects.select_related("business")
        .filter(customer=customer)
        .exclude(business__schema_name=PUBLIC_SCHEMA)
        .order_by("-last_activity_at", "-id")[:limit]
    )


def directory_businesses(*, query: str = "") -> QuerySet[Business]:
    """Badge holders first. Like WhatsApp, only verified businesses can be found by name: a
    search matches badge holders only, so nobody can pose as a brand through the search box."""
    qs = Business.objects.exclude(schema_name=PUBLIC_SCHEMA).filter(status=Business.Status.ACTIVE)
    badge = Business.BadgeStatus.APPROVED
    if query:
        qs = qs.filter(badge_status=badge).filter(display_name__icontains=query)
    return qs.annotate(
        badge_first=Case(When(badge_status=badge, then=Value(0)), default=Value(1), output_field=IntegerField())
    ).order_by("badge_first", "display_name", "id")
