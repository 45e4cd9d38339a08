"""Business hours: plain functions of the settings and a moment (no database)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from assignment.models import DEFAULT_TIME_ZONE


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def _parse(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def intervals(settings: Any, around: datetime, days: int = 8) -> list[tuple[datetime, datetime]]:
    """The opening intervals (aware datetimes) from `days` days before to `days` after `around`."""
    tz = zone(settings.time_zone)
    local = around.astimezone(tz).date()
    found = []
    for offset in range(-days, days + 1):
        day = local + timedelta(days=offset)
        span = (settings.hours or {}).get(str(day.weekday()))
        if not span:
            continue
        start = datetime.combine(day, _parse(span[0]), tz)
        end = datetime.combine(day, _parse(span[1]), tz)
        if end > start:
            found.append((start, end))
    return found


def is_open(settings: Any, now: datetime) -> bool:
    if not settings.hours_enabled:
        return True
    return any(start <= now < end for start, end in intervals(settings, now, days=1))


def closed_since(settings: Any, now: datetime) -> datetime | None:
    """When the current closed period began (the last closing time); None while open."""
    if is_open(settings, now):
        return None
    ends = [end for _start, end in intervals(settings, now) if end <= now]
    return max(ends) if ends else now - timedelta(days=8)


def next_opening(settings: Any, now: datetime) -> datetime | None:
    starts = [start for start, _end in intervals(settings, now) if start > now]
    return min(starts) if starts else None
