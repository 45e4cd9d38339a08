"""The Overview cards of the Templates and API sections."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from notifications.selectors import active_api_key_count, api_request_count, template_counts


def templates_figures(*, business: Any, user: Any) -> list[str]:
    counts = template_counts()
    if not counts["approved"] and not counts["pending"]:
        return []
    return [
        ngettext("%(n)d approved template", "%(n)d approved templates", counts["approved"]) % {"n": counts["approved"]},
        ngettext("%(n)d in review", "%(n)d in review", counts["pending"]) % {"n": counts["pending"]},
    ]


def api_figures(*, business: Any, user: Any) -> list[str]:
    keys = active_api_key_count()
    if not keys:
        return []
    since = timezone.now() - timedelta(hours=24)
    calls = api_request_count(since=since)
    return [
        ngettext("%(n)d active key", "%(n)d active keys", keys) % {"n": keys},
        _("%(n)d requests in the last 24 hours") % {"n": calls},
    ]
