from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from template_reviews.models import DEFAULT_MESSAGES_PER_SECOND, SendingLimits, TemplateReview
from tenancy.models import Business

NOTICE_DAYS = 14


def template_decisions_to_show(*, business: Business) -> list[TemplateReview]:
    """Recent staff decisions the business has not dismissed, newest first."""
    since = timezone.now() - timedelta(days=NOTICE_DAYS)
    return list(
        TemplateReview.objects.filter(
            business=business,
            status__in=[TemplateReview.Status.APPROVED, TemplateReview.Status.REJECTED],
            reviewed_at__gte=since,
            notice_dismissed=False,
        ).order_by("-reviewed_at")[:5]
    )


def sending_limits(*, business: Business) -> tuple[int, int | None]:
    """(messages per second, tier override or None) for a business."""
    row = SendingLimits.objects.filter(business=business).values_list("messages_per_second", "tier_override").first()
    if row is None:
        return DEFAULT_MESSAGES_PER_SECOND, None
    return int(row[0]), row[1]
