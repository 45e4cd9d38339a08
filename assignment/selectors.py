"""Assignment reads. They run in the business's schema entered by the caller."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Membership
from assignment import hours
from assignment.models import AgentStatus, AssignmentSettings
from messaging.models import Conversation
from tenancy.models import Business

# Conversations an agent holds against their capacity.
LOAD_STATUSES = (Conversation.Status.OPEN,)
# The estimate looks at how many conversations were assigned in this recent stretch.
ESTIMATE_WINDOW = timedelta(hours=1)

_cache: dict[str, tuple[float, AssignmentSettings]] = {}
_cache_lock = threading.Lock()


def assignment_settings() -> AssignmentSettings:
    """The business's settings (the defaults, unsaved, until an owner saves them)."""
    return AssignmentSettings.objects.filter(pk=1).first() or AssignmentSettings()


def assignment_settings_cached() -> AssignmentSettings:
    """The settings for hot paths (every send): read at most every few seconds per process and
    business. Writers in this process forget their copy at once; other processes within the TTL."""
    ttl = float(getattr(django_settings, "PARLEY_ASSIGNMENT_SETTINGS_TTL", 5.0))
    key: str = connection.schema_name  # type: ignore[attr-defined]
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = assignment_settings()
    with _cache_lock:
        _cache[key] = (now + ttl, value)
    return value


def assignment_settings_peek(schema_name: str) -> AssignmentSettings | None:
    """The cached settings if fresh, without touching the database (None: read them first)."""
    with _cache_lock:
        hit = _cache.get(schema_name)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def forget_cached_settings(schema_name: str) -> None:
    with _cache_lock:
        _cache.pop(schema_name, None)


def in_queue() -> Q:
    return Q(status=Conversation.Status.OPEN, assignee__isnull=True, queued_at__isnull=False)


def member_ids(*, business: Business) -> set[int]:
    return set(Membership.objects.filter(business_id=business.pk).values_list("user_id", flat=True))


def agent_status_of(*, user_id: int) -> str:
    status = AgentStatus.objects.filter(user_id=user_id).values_list("status", flat=True).first()
    return status or AgentStatus.Status.OFFLINE


def team_availability(*, business: Business) -> list[dict[str, Any]]:
    """Every member with their status and counts: open conversations assigned to them, and how
    many of those have customer messages nobody read yet (the per-agent unread count)."""
    memberships = list(
        Membership.objects.select_related("user").filter(business_id=business.pk).order_by("user__full_name", "pk")
    )
    statuses = dict(AgentStatus.objects.values_list("user_id", "status"))
    loads: dict[int, dict[str, Any]] = {
        row["assignee_id"]: dict(row)
        for row in Conversation.objects.filter(assignee__isnull=False, status__in=LOAD_STATUSES)
        .values("assignee_id")
        .annotate(open=Count("pk"), unread=Count("pk", filter=Q(unread_count__gt=0)))
    }
    return [
        {
            "id": m.user_id,
            "name": m.user.get_short_name(),
            "status": statuses.get(m.user_id, AgentStatus.Status.OFFLINE),
            "open": loads.get(m.user_id, {}).get("open", 0),
            "unread": loads.get(m.user_id, {}).get("unread", 0),
        }
        for m in memberships
    ]


def queue_length() -> int:
    return Conversation.objects.filter(in_queue()).count()


def queue_position(*, conversation: Conversation) -> int | None:
    """1 for the next conversation to be served; None when it is not waiting in the queue."""
    c = conversation
    if not (c.status == Conversation.Status.OPEN and c.assignee_id is None and c.queued_at is not None):
        return None
    ahead = (
        Conversation.objects.filter(in_queue())
        .filter(Q(queued_at__lt=c.queued_at) | Q(queued_at=c.queued_at, pk__lt=c.pk))
        .count()
    )
    return ahead + 1


def queue_estimate_minutes(*, position: int, now: datetime | None = None) -> int | None:
    """Minutes until `position` is served, from how fast conversations were assigned in the last
    hour (None: too little history to say)."""
    now = now or timezone.now()
    served = Conversation.objects.filter(assigned_at__gte=now - ESTIMATE_WINDOW).count()
    if not served:
        return None
    per_minute = served / (ESTIMATE_WINDOW.total_seconds() / 60)
    return max(1, math.ceil(position / per_minute))


def customer_queue_state(*, conversation: Conversation | None, now: datetime | None = None) -> dict[str, Any]:
    """What the customer's chat page says about waiting: their place in line and an estimate,
    and whether the business is closed now (with its next opening)."""
    now = now or timezone.now()
    settings = assignment_settings_cached()
    closed = not hours.is_open(settings, now)
    opening = hours.next_opening(settings, now) if closed else None
    position = queue_position(conversation=conversation) if conversation is not None else None
    estimate = queue_estimate_minutes(position=position, now=now) if position is not None and not closed else None
    return {
        "position": position,
        "estimate_minutes": estimate,
        "closed": closed,
        "opens_at": opening.isoformat() if opening else None,
        # The page writes the opening in the business's zone, as its hours are set (not the
        # customer's clock, which disagreed with the away message's "08:00 Berlin time").
        "time_zone": settings.time_zone,
        "assigned": bool(conversation is not None and conversation.assignee_id is not None),
        "resolved": bool(conversation is not None and conversation.status == Conversation.Status.RESOLVED),
    }


def due_snoozes(*, now: datetime) -> list[int]:
    return list(
        Conversation.objects.filter(
            status=Conversation.Status.SNOOZED, snoozed_until__isnull=False, snoozed_until__lte=now
        ).values_list("pk", flat=True)[:500]
    )


def overdue_assignments(*, now: datetime, minutes: int) -> list[int]:
    """Open conversations whose customer has waited `minutes` for their assignee: since the
    assignment, or since the customer's unanswered message, whichever is later."""
    cutoff = now - timedelta(minutes=minutes)
    return list(
        Conversation.objects.filter(
            status=Conversation.Status.OPEN,
            assignee__isnull=False,
            waiting_since__isnull=False,
            waiting_since__lte=cutoff,
        )
        .filter(Q(assigned_at__isnull=True) | Q(assigned_at__lte=cutoff))
        .values_list("pk", flat=True)[:500]
    )


def online_without_inbox(*, fresh_after: datetime) -> list[int]:
    """Agents online only because their inbox tab went away without saying so (a crashed server)."""
    from messaging.models import AgentPresence

    live = AgentPresence.objects.filter(seen_at__gte=fresh_after).values("user_id")
    return list(
        AgentStatus.objects.filter(status=AgentStatus.Status.ONLINE)
        .exclude(user_id__in=live)
        .values_list("user_id", flat=True)
    )


def queue_states(*, limit: int, also: list[int], now: datetime | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The chat-page state of the first `limit` conversations in line (positions 1..limit) and of
    the conversations in `also` (just assigned or resolved: they left the line). Three queries in
    all."""
    now = now or timezone.now()
    settings = assignment_settings_cached()
    closed = not hours.is_open(settings, now)
    opening = hours.next_opening(settings, now) if closed else None
    served = Conversation.objects.filter(assigned_at__gte=now - ESTIMATE_WINDOW).count()
    per_minute = served / (ESTIMATE_WINDOW.total_seconds() / 60)
    line = list(
        Conversation.objects.filter(in_queue()).order_by("queued_at", "pk").values_list("pk", flat=True)[:limit]
    )
    base = {"closed": closed, "opens_at": opening.isoformat() if opening else None, "time_zone": settings.time_zone}
    states = [
        (
            pk,
            {
                **base,
                "position": index + 1,
                "estimate_minutes": max(1, math.ceil((index + 1) / per_minute)) if per_minute and not closed else None,
                "assigned": False,
                "resolved": False,
            },
        )
        for index, pk in enumerate(line)
    ]
    left = set(also) - set(line)
    if left:
        rows = {
            pk: (assignee, status)
            for pk, assignee, status in Conversation.objects.filter(pk__in=left).values_list(
                "pk", "assignee_id", "status"
            )
        }
        states += [
            (
                pk,
                {
                    **base,
                    "position": None,
                    "estimate_minutes": None,
                    "assigned": rows[pk][0] is not None,
                    # The chat page asks for its satisfaction survey then (insights, csat.js).
                    "resolved": rows[pk][1] == Conversation.Status.RESOLVED,
                },
            )
            for pk in sorted(left)
            if pk in rows
        ]
    return states
