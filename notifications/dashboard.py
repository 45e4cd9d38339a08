"""The Overview cards of the Templates and API sections."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from notifications.models import ApiKey, ApiRequest, Template


def templates_figures(*, business: Any, user: Any) -> list[str]:
    counts = Template.objects.aggregate(
        approved=Count("pk", filter=Q(status=Template.Status.APPROVED)),
        pending=Count("pk", filter=Q(status=Template.Status.PENDING)),
    )
    if not counts["approved"] and not counts["pending"]:
        return []
    return [
        ngettext("%(n)d approved template", "%(n)d approved templates", counts["approved"]) % {"n": counts["approved"]},
        ngettext("%(n)d in review", "%(n)d in review", counts["pending"]) % {"n": counts["pending"]},
    ]


def api_figures(*, business: Any, user: Any) -> list[str]:
    keys = ApiKey.objects.filter(revoked_at__isnull=True).count()
    if not keys:
        return []
    since = timezone.now() - timedelta(hours=24)
    calls = ApiRequest.objects.filter(created_at__gte=since).count()
    return [
        ngettext("%(n)d active key", "%(n)d active keys", keys) % {"n": keys},
        _("%(n)d requests in the last 24 hours") % {"n": calls},
    ]
