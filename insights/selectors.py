"""Insights reads, in the business's schema the caller entered. Every figure comes from service
cycles (insights.models.Cycle), indexed by when they started, got their first response and were
resolved, so a report reads a few thousand rows however many messages a business has.

Days are the business's local days (the active time zone, Europe/Berlin by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import connection, transaction
from django.db.models import Avg, Count, Q
from django.template.defaultfilters import floatformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Customer, Membership
from billing.selectors import period_parse, usage_summary
from collab.models import ConversationLabel, Label
from insights.models import CsatResponse, Cycle, InsightSettings
from messaging.models import Conversation
from tenancy.models import Business

CSAT_DAYS = 7  # a survey stays answerable this long after the conversation was resolved
MAX_REPORT_DAYS = 92


def settings_get() -> InsightSettings:
    return InsightSettings.objects.filter(pk=1).first() or InsightSettings(pk=1)


def duration_text(seconds: float | None) -> str:
    """A duration for people: "–", "45 s", "12 min", "3 h 20 min", "2 d 4 h"."""
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(n)d s") % {"n": seconds}
    minutes = seconds // 60
    if minutes < 60:
        return _("%(n)d min") % {"n": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes} if minutes else _("%(h)d h") % {"h": hours}
    days, hours = divmod(hours, 24)
    return _("%(d)d d %(h)d h") % {"d": days, "h": hours}


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# --- the Overview's live figures ------------------------------------------------------------


def median_first_response_seconds(*, since: datetime, until: datetime | None = None) -> float | None:
    """Median first response of the cycles answered in [since, until)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM first_response_at - started_at)) "
            f"FROM {Cycle._meta.db_table} WHERE first_response_at >= %s AND first_response_at < %s",
            [since, until or timezone.now() + timedelta(days=1)],
        )
        row = cursor.fetchone()
    return float(row[0]) if row and row[0] is not None else None


@dataclass(frozen=True)
class LiveFigures:
    open: int
    waiting: int  # not resolved, with customer messages nobody has read
    median_first_response_today: float | None  # seconds
    month_cost: Any  # Decimal, EUR before tax; None when not asked for


def live_figures(*, business: Business, with_cost: bool = True) -> LiveFigures:
    midnight = _local_midnight(timezone.localdate())
    counts = Conversation.objects.aggregate(
        open=Count("pk", filter=Q(status=Conversation.Status.OPEN)),
        waiting=Count("pk", filter=Q(unread_count__gt=0) & ~Q(status=Conversation.Status.RESOLVED)),
    )
    month_cost = usage_summary(business=business, start=period_parse(None)).cost if with_cost else None
    return LiveFigures(
        open=counts["open"],
        waiting=counts["waiting"],
        median_first_response_today=median_first_response_seconds(since=midnight),
        month_cost=month_cost,
    )


def live_pairs(*, business: Business, with_cost: bool) -> list[tuple[str, str]]:
    """The Overview's live strip: (label, value) of open, waiting, median first response today
    and, `with_cost` (for whoever may open Billing), this month's cost."""
    figures = live_figures(business=business, with_cost=with_cost)
    pairs = [
        (_("Open conversations"), intcomma(figures.open)),
        (_("Waiting for a reply"), intcomma(figures.waiting)),
        (_("Median first response today"), duration_text(figures.median_first_response_today)),
    ]
    if with_cost:
        pairs.append((_("This month's cost so far"), "€" + floatformat(figures.month_cost, 2)))
    return pairs


def reports_card_lines(*, business: Business) -> list[str]:
    """The Reports card: the last seven days at a glance."""
    today = timezone.localdate()
    week = report(business=business, start=today - timedelta(days=6), end=today)
    lines = [
        _("Last 7 days: %(new)s new, %(resolved)s resolved")
        % {"new": intcomma(week.new), "resolved": intcomma(week.resolved)},
        _("Median first response: %(t)s") % {"t": duration_text(week.median_first_response)},
    ]
    if week.csat_count:
        lines.append(_("Rating: %(avg)s / 5") % {"avg": floatformat(week.csat_average, 1)})
    breached = sla_breached_count()
    if breached:
        lines.append(
            ngettext("%(n)s conversation past its SLA", "%(n)s conversations past their SLA", breached)
            % {"n": intcomma(breached)}
        )
    return lines


# --- the Reports page -----------------------------------------------------------------------


@dataclass
class DayRow:
    day: date
    new: int = 0
    resolved: int = 0
    backlog: int = 0  # cycles open at the end of the day
    median_first_response: float | None = None


@dataclass
class GroupRow:
    key: int
    name: str
    colour: str = ""
    conversations: int = 0
    first_responses: int = 0
    median_first_response: float | None = None
    resolved: int = 0
    median_resolution: float | None = None
    csat: float | None = None
    csat_count: int = 0


@dataclass
class Report:
    start: date
    end: date  # inclusive
    days: list[DayRow]
    new: int
    resolved: int
    backlog: int
    median_first_response: float | None
    p90_first_response: float | None
    median_resolution: float | None
    unanswered: int
    csat_average: float | None
    csat_count: int
    csat_scores: dict[int, int]
    agents: list[GroupRow] = field(default_factory=list)
    labels: list[GroupRow] = field(default_factory=list)


# Seconds between two timestamps as float8: date_part, not EXTRACT (numeric since PostgreSQL 14,
# several times slower per row and to sort).
FIRST_RESPONSE_SECONDS = "date_part('epoch', first_response_at - started_at)"
RESOLUTION_SECONDS = "date_part('epoch', resolved_at - started_at)"
# Sorting 100,000 durations for a percentile must not spill to disk (the default is 4 MB).
REPORT_WORK_MEM = "32MB"


def report(*, business: Business, start: date, end: date) -> Report:
    """Cycles of the local days start..end (inclusive): per day, overall, per agent, per label.

    Index-only range scans (covering indexes, insights.0003), each cycle read once per figure
    family: per day (one range per local day: started, median first response, resolved), started
    in total (p50 and p90 from one sort, never answered), resolved per agent and in total
    (GROUPING SETS), first answered per agent, started per label. The backlog before the range
    is one count of the cycles still open at its start."""
    if end < start:
        start, end = end, start
    start = max(start, end - timedelta(days=MAX_REPORT_DAYS - 1))
    since, until = _local_midnight(start), _local_midnight(end + timedelta(days=1))
    table = Cycle._meta.db_table
    days = {start + timedelta(days=i): DayRow(start + timedelta(days=i)) for i in range((end - start).days + 1)}
    members = {
        m.user_id: m.user.get_short_name()
        for m in Membership.objects.select_related("user").filter(business_id=business.pk)
    }
    agents = {uid: GroupRow(uid, name) for uid, name in members.items()}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        # Per local day: started (count, median first response) and resolved. Each day is an index
        # range between two local midnights (computed here, so daylight-saving days have 23 or 25
        # hours): no time-zone arithmetic per row, no sort to group by day.
        bounds = [_local_midnight(day) for day in days] + [until]
        cursor.execute(
            "SELECT b.n, s.count, s.median, r.count "
            "FROM unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS b(low, high, n) "
            f"CROSS JOIN LATERAL (SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY {FIRST_RESPONSE_SECONDS}) "
            f"AS median FROM {table} WHERE started_at >= b.low AND started_at < b.high) s "
            f"CROSS JOIN LATERAL (SELECT count(*) FROM {table} WHERE resolved_at >= b.low AND resolved_at < b.high) r",
            [bounds[:-1], bounds[1:]],
        )
        ordered = list(days.values())
        for n, started, median, resolved in cursor.fetchall():
            row = ordered[n - 1]
            row.new, row.median_first_response, row.resolved = started, _f(median), resolved
        # Started in the range, in total: p50 and p90 first response (one sort), never answered.
        cursor.execute(
            f"SELECT count(*) - count(seconds), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY seconds) "
            f"FROM (SELECT {FIRST_RESPONSE_SECONDS} AS seconds FROM {table} "
            "WHERE started_at >= %s AND started_at < %s) started",
            [since, until],
        )
        unanswered, percentiles = cursor.fetchone()  # type: ignore[misc]
        median_fr, p90_fr = percentiles or (None, None)
        # Resolved in the range: per resolver (count, median) and the total median, one pass.
        cursor.execute(
            f"SELECT GROUPING(resolver_id), resolver_id, count(*), percentile_cont(0.5) WITHIN GROUP "
            f"(ORDER BY {RESOLUTION_SECONDS}) FROM {table} WHERE resolved_at >= %s AND resolved_at < %s "
            "GROUP BY GROUPING SETS ((resolver_id), ())",
            [since, until],
        )
        median_resolution = None
        for total, resolver_id, count, median in cursor.fetchall():
            if total:
                median_resolution = median
            elif resolver_id in agents:
                agents[resolver_id].resolved, agents[resolver_id].median_resolution = count, _f(median)
        # First answered in the range, per agent.
        cursor.execute(
            f"SELECT first_responder_id, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY {FIRST_RESPONSE_SECONDS}) "
            f"FROM {table} WHERE first_response_at >= %s AND first_response_at < %s "
            "AND first_responder_id IS NOT NULL GROUP BY 1",
            [since, until],
        )
        for uid, count, median in cursor.fetchall():
            if uid in agents:
                agents[uid].first_responses, agents[uid].median_first_response = count, _f(median)
        # Open at the range's start: started before it and not resolved before it (reads the open
        # cycles and those resolved since, not the whole history).
        cursor.execute(
            f"SELECT count(*) FROM {table} WHERE started_at < %s AND (resolved_at IS NULL OR resolved_at >= %s)",
            [since, since],
        )
        backlog = cursor.fetchone()[0]  # type: ignore[index]
        labels = _per_label(cursor, since, until)
        _csat_per_agent(cursor, agents, since, until)
    for row in days.values():
        backlog += row.new - row.resolved
        row.backlog = backlog
    csat = CsatResponse.objects.filter(created_at__gte=since, created_at__lt=until)
    csat_totals = csat.aggregate(avg=Avg("score"), n=Count("pk"))
    scores = {score: 0 for score in range(1, 6)}
    for score_row in csat.values("score").annotate(n=Count("pk")):
        scores[score_row["score"]] = score_row["n"]
    rows = list(days.values())
    return Report(
        start=start,
        end=end,
        days=rows,
        new=sum(r.new for r in rows),
        resolved=sum(r.resolved for r in rows),
        backlog=rows[-1].backlog if rows else 0,
        median_first_response=_f(median_fr),
        p90_first_response=_f(p90_fr),
        median_resolution=_f(median_resolution),
        unanswered=unanswered,
        csat_average=_f(csat_totals["avg"]),
        csat_count=csat_totals["n"],
        csat_scores=scores,
        agents=sorted(agents.values(), key=lambda r: (-(r.resolved + r.first_responses), r.name.lower())),
        labels=labels,
    )


def _f(value: Any) -> float | None:
    return float(value) if value is not None else None


def _csat_per_agent(cursor: Any, agents: dict[int, GroupRow], since: datetime, until: datetime) -> None:
    cursor.execute(
        f"SELECT cy.resolver_id, avg(r.score), count(*) FROM {CsatResponse._meta.db_table} r "
        f"JOIN {Cycle._meta.db_table} cy ON cy.id = r.cycle_id WHERE r.created_at >= %s AND r.created_at < %s "
        "AND cy.resolver_id IS NOT NULL GROUP BY 1",
        [since, until],
    )
    for uid, avg, count in cursor.fetchall():
        if uid in agents:
            agents[uid].csat, agents[uid].csat_count = _f(avg), count


def _per_label(cursor: Any, since: datetime, until: datetime) -> list[GroupRow]:
    labels = {label.pk: label for label in Label.objects.all()}
    rows = {pk: GroupRow(pk, label.name, label.colour) for pk, label in labels.items()}
    cursor.execute(
        "SELECT cl.label_id, count(*), count(cy.first_response_at), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {FIRST_RESPONSE_SECONDS}), count(cy.resolved_at), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {RESOLUTION_SECONDS}) "
        f"FROM {Cycle._meta.db_table} cy JOIN {ConversationLabel._meta.db_table} cl "
        "ON cl.conversation_id = cy.conversation_id "
        "WHERE cy.started_at >= %s AND cy.started_at < %s GROUP BY 1",
        [since, until],
    )
    for label_id, count, answered, median_fr, resolved, median_res in cursor.fetchall():
        if label_id in rows:
            row = rows[label_id]
            row.conversations, row.first_responses, row.median_first_response = count, answered, _f(median_fr)
            row.resolved, row.median_resolution = resolved, _f(median_res)
    return sorted(rows.values(), key=lambda r: (-r.conversations, r.name.lower()))


# --- SLA ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaState:
    conversation_id: int
    kind: str  # "first_response" or "resolution"
    due_at: datetime
    breached: bool


def sla_states(*, conversation_ids: list[int] | None = None, now: datetime | None = None) -> dict[int, SlaState]:
    """The most urgent SLA target of each open cycle (of the listed conversations, or every
    breached one): first response while unanswered, else resolution."""
    settings = settings_get()
    if not settings.first_response_minutes and not settings.resolution_hours:
        return {}
    now = now or timezone.now()
    qs = Cycle.objects.filter(resolved_at__isnull=True).exclude(conversation__status=Conversation.Status.RESOLVED)
    if conversation_ids is not None:
        qs = qs.filter(conversation_id__in=conversation_ids)
    states: dict[int, SlaState] = {}
    for cycle in qs.only("conversation_id", "started_at", "first_response_at"):
        candidates = []
        if settings.first_response_minutes and cycle.first_response_at is None:
            due = cycle.started_at + timedelta(minutes=settings.first_response_minutes)
            candidates.append(SlaState(cycle.conversation_id, "first_response", due, due <= now))
        if settings.resolution_hours:
            due = cycle.started_at + timedelta(hours=settings.resolution_hours)
            candidates.append(SlaState(cycle.conversation_id, "resolution", due, due <= now))
        if candidates:
            state = min(candidates, key=lambda s: s.due_at)
            if conversation_ids is not None or state.breached:
                states[cycle.conversation_id] = state
    return states


def sla_breached_count(*, now: datetime | None = None) -> int:
    """Open conversations past a target: the inbox's warning (one indexed query per target)."""
    settings = settings_get()
    now = now or timezone.now()
    open_cycles = Cycle.objects.filter(resolved_at__isnull=True).exclude(
        conversation__status=Conversation.Status.RESOLVED
    )
    condition = Q(pk__in=[])
    if settings.first_response_minutes:
        condition |= Q(
            first_response_at__isnull=True, started_at__lte=now - timedelta(minutes=settings.first_response_minutes)
        )
    if settings.resolution_hours:
        condition |= Q(started_at__lte=now - timedelta(hours=settings.resolution_hours))
    return open_cycles.filter(condition).count()


# --- CSAT -------------------------------------------------------------------------------------


def csat_pending_cycle(*, customer: Customer, now: datetime | None = None) -> Cycle | None:
    """The cycle the customer may rate on the chat page: their conversation is resolved, its
    last cycle was resolved in the last CSAT_DAYS days and not rated yet, and the business asks."""
    if not settings_get().csat_enabled:
        return None
    conversation = Conversation.objects.filter(contact__customer=customer).only("pk", "status").first()
    if conversation is None or conversation.status != Conversation.Status.RESOLVED:
        return None
    cycle = Cycle.objects.filter(conversation=conversation).order_by("-started_at").first()
    now = now or timezone.now()
    if cycle is None or cycle.resolved_at is None or cycle.resolved_at < now - timedelta(days=CSAT_DAYS):
        return None
    if CsatResponse.objects.filter(cycle=cycle).exists():
        return None
    return cycle


def csat_for_conversation(*, conversation_id: int) -> list[CsatResponse]:
    return list(CsatResponse.objects.filter(conversation_id=conversation_id).order_by("-created_at")[:5])
