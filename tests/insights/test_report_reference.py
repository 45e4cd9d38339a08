"""The Reports page's SQL (insights.selectors.report: GROUPING SETS over covering indexes, local
days computed by PostgreSQL) gives exactly the figures of the straightforward computation: walk
every cycle in Python, put it on its local day with zoneinfo, take percentiles the way
percentile_cont does. Random cycles over a month with both daylight-saving switches (New York's
on 8 March, Berlin's on 29 March), cycles at local midnight and a microsecond before it, cycles
open since before the range, several labels on one conversation, resolutions by nobody."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from collab import services as collab_services
from collab.models import Label
from insights import selectors
from insights.models import Cycle
from tests.collab.helpers import customer_writes
from tests.conftest import World, in_business

START, END = date(2026, 3, 5), date(2026, 3, 31)


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Reference:
    new: dict[date, int]
    resolved: dict[date, int]
    median_first_response: dict[date, float | None]
    backlog: dict[date, int]
    overall: dict[str, float | int | None]
    agents: dict[int, tuple[int, float | None, int, float | None]]
    labels: dict[int, tuple[int, int, float | None, int, float | None]]


def reference(cycles: list[Cycle], labels_of: dict[int, list[int]], zone: ZoneInfo) -> Reference:
    since = datetime.combine(START, time.min, tzinfo=zone)
    until = datetime.combine(END + timedelta(days=1), time.min, tzinfo=zone)

    def inside(moment: datetime | None) -> bool:
        return moment is not None and since <= moment < until

    def day(moment: datetime) -> date:
        return moment.astimezone(zone).date()

    def seconds(later: datetime | None, earlier: datetime) -> float | None:
        return (later - earlier).total_seconds() if later is not None else None

    started = [c for c in cycles if inside(c.started_at)]
    resolved = [c for c in cycles if inside(c.resolved_at)]
    answered = [c for c in cycles if inside(c.first_response_at) and c.first_responder_id is not None]
    new: dict[date, int] = defaultdict(int)
    first_responses: dict[date, list[float]] = defaultdict(list)
    for c in started:
        new[day(c.started_at)] += 1
        if c.first_response_at is not None:
            first_responses[day(c.started_at)].append(seconds(c.first_response_at, c.started_at))  # type: ignore[arg-type]
    resolved_per_day: dict[date, int] = defaultdict(int)
    for c in resolved:
        resolved_per_day[day(c.resolved_at)] += 1  # type: ignore[arg-type]
    backlog = sum(1 for c in cycles if c.started_at < since and (c.resolved_at is None or c.resolved_at >= since))
    backlogs = {}
    current = START
    while current <= END:
        backlog += new[current] - resolved_per_day[current]
        backlogs[current] = backlog
        current += timedelta(days=1)
    all_first = [seconds(c.first_response_at, c.started_at) for c in started if c.first_response_at is not None]
    agents: dict[int, tuple[int, float | None, int, float | None]] = {}
    for uid in {c.first_responder_id for c in answered} | {c.resolver_id for c in resolved} - {None}:
        mine_first = [seconds(c.first_response_at, c.started_at) for c in answered if c.first_responder_id == uid]
        mine_resolved = [seconds(c.resolved_at, c.started_at) for c in resolved if c.resolver_id == uid]
        agents[uid] = (  # type: ignore[index]
            len(mine_first),
            percentile_cont(mine_first, 0.5),  # type: ignore[arg-type]
            len(mine_resolved),
            percentile_cont(mine_resolved, 0.5),  # type: ignore[arg-type]
        )
    labels: dict[int, tuple[int, int, float | None, int, float | None]] = {}
    for label_id in {label for c in started for label in labels_of.get(c.conversation_id, [])}:
        tagged = [c for c in started if label_id in labels_of.get(c.conversation_id, [])]
        fr = [seconds(c.first_response_at, c.started_at) for c in tagged if c.first_response_at is not None]
        res = [seconds(c.resolved_at, c.started_at) for c in tagged if c.resolved_at is not None]
        labels[label_id] = (len(tagged), len(fr), percentile_cont(fr, 0.5), len(res), percentile_cont(res, 0.5))  # type: ignore[arg-type]
    return Reference(
        new=dict(new),
        resolved=dict(resolved_per_day),
        median_first_response={d: percentile_cont(v, 0.5) for d, v in first_responses.items()},
        backlog=backlogs,
        overall={
            "new": len(started),
            "resolved": len(resolved),
            "unanswered": sum(1 for c in started if c.first_response_at is None),
            "median_first_response": percentile_cont(all_first, 0.5),  # type: ignore[arg-type]
            "p90_first_response": percentile_cont(all_first, 0.9),  # type: ignore[arg-type]
            "median_resolution": percentile_cont([seconds(c.resolved_at, c.started_at) for c in resolved], 0.5),  # type: ignore[misc]
        },
        agents=agents,
        labels=labels,
    )


def random_cycles(world: World, conversation_ids: list[int], zone: ZoneInfo) -> list[Cycle]:
    """About 400 cycles from a week before the range to its end; at most one open per
    conversation (the table's constraint), the rest resolved."""
    rng = random.Random(12)
    people = [world.agent_a.pk, world.owner_a.pk]
    range_start = datetime.combine(START, time.min, tzinfo=zone)
    span = (datetime.combine(END + timedelta(days=1), time.min, tzinfo=zone) - range_start).total_seconds()
    cycles = []
    open_left = list(conversation_ids)
    for n in range(400):
        started = range_start + timedelta(seconds=rng.uniform(-7 * 86400, span))
        if n % 25 == 0:  # exactly at a local midnight, and a microsecond before the next one
            midnight = datetime.combine(started.astimezone(zone).date(), time.min, tzinfo=zone)
            started = midnight if n % 50 == 0 else midnight - timedelta(microseconds=1)
        first_response = started + timedelta(seconds=rng.uniform(5, 6 * 3600)) if rng.random() < 0.8 else None
        keep_open = open_left and rng.random() < 0.15
        if keep_open:
            conversation_id = open_left.pop()
            resolved = None
        else:
            conversation_id = rng.choice(conversation_ids)
            resolved = (first_response or started) + timedelta(seconds=rng.uniform(0, 3 * 86400))
        cycles.append(
            Cycle(
                conversation_id=conversation_id,
                started_at=started,
                first_response_at=first_response,
                first_responder_id=rng.choice(people) if first_response else None,
                resolved_at=resolved,
                resolver_id=(rng.choice([*people, None]) if resolved else None),
            )
        )
    return cycles


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_report_matches_the_straightforward_computation(world: World, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    with in_business(world.business_a), timezone.override(zone):
        conversation_ids = [customer_writes(world.business_a, f"Hello {n}").pk for n in range(30)]
        # Labels that live-server tests committed to this schema would be rows of the report too.
        Label.objects.all().delete()
        baggage, refund = (
            collab_services.label_create(business=world.business_a, user=world.owner_a, name=name, colour=colour)
            for name, colour in (("Baggage", "orange"), ("Refund", "red"))
        )
        labels_of: dict[int, list[int]] = {}
        for index, cid in enumerate(conversation_ids):
            chosen = [label.pk for label, every in ((baggage, 2), (refund, 3)) if index % every == 0]
            if chosen:
                collab_services.conversation_labels_set(
                    business=world.business_a, user=world.agent_a, conversation_id=cid, label_ids=chosen
                )
                labels_of[cid] = chosen
        Cycle.objects.all().delete()  # the writes above opened cycles of today; replace them
        Cycle.objects.bulk_create(random_cycles(world, conversation_ids, zone))
        cycles = list(Cycle.objects.all())
        got = selectors.report(business=world.business_a, start=START, end=END)
    want = reference(cycles, labels_of, zone)

    assert [row.day for row in got.days] == [START + timedelta(days=i) for i in range((END - START).days + 1)]
    for row in got.days:
        assert row.new == want.new.get(row.day, 0), row.day
        assert row.resolved == want.resolved.get(row.day, 0), row.day
        assert row.backlog == want.backlog[row.day], row.day
        assert row.median_first_response == pytest.approx(want.median_first_response.get(row.day), abs=1e-6)
    assert (got.new, got.resolved, got.unanswered, got.backlog) == (
        want.overall["new"],
        want.overall["resolved"],
        want.overall["unanswered"],
        want.backlog[END],
    )
    for name in ("median_first_response", "p90_first_response", "median_resolution"):
        assert getattr(got, name) == pytest.approx(want.overall[name], abs=1e-6), name
    got_agents = {
        row.key: (row.first_responses, row.median_first_response, row.resolved, row.median_resolution)
        for row in got.agents
        if row.first_responses or row.resolved
    }
    assert got_agents.keys() == want.agents.keys()
    for uid, figures in want.agents.items():
        assert got_agents[uid] == pytest.approx(figures, abs=1e-6), uid
    got_labels = {
        row.key: (
            row.conversations,
            row.first_responses,
            row.median_first_response,
            row.resolved,
            row.median_resolution,
        )
        for row in got.labels
    }
    assert got_labels.keys() == want.labels.keys()
    for label_id, label_figures in want.labels.items():
        assert got_labels[label_id] == pytest.approx(label_figures, abs=1e-6), label_id
    # The data is not degenerate: both switches and the boundaries were inside the range.
    assert want.overall["new"] > 250 and len(want.labels) == 2 and any(want.backlog.values())
