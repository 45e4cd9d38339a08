"""Frames are encoded with orjson (messaging.events.dumps) to the very text Django's JSON
encoder gave: clients, stored events and resumed streams see no difference (issue 9)."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.translation import gettext_lazy

from messaging import events
from messaging.models import Message


def _reference(payload: dict[str, Any]) -> str:
    return DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False).encode(payload)


def test_frames_are_the_text_djangos_encoder_gave() -> None:
    now = dt.datetime(2026, 12, 3, 10, 41, 5, 123456, tzinfo=dt.UTC)
    payload = {
        "id": 9_007_199_254_740_993,  # past a double's precision: still exact
        "type": "message.created",
        "created_at": now,  # milliseconds and "Z", as Django writes them
        "berlin": now.astimezone(dt.timezone(dt.timedelta(hours=1))),
        "naive": dt.datetime(2026, 12, 3, 10, 41, 5),
        "today": dt.date(2026, 12, 3),
        "at": dt.time(9, 15, 30, 250000),
        "window": dt.timedelta(hours=24),
        "price": Decimal("0.0850"),
        "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "status": Message.Status.READ,  # a TextChoices member
        "label": gettext_lazy("Read"),
        "body": 'Grüße aus Köln 🥨 — "quoted", back\\slash, tab\tand\nnewline',
        "counts": {17: 2, 4: 0},  # integer keys become strings
        "retry_after": 0.5,
        "nothing": None,
        "flags": [True, False],
        "nested": [{"a": (1, 2)}, []],
    }
    assert events.dumps(payload) == _reference(payload)


def test_one_instant_in_two_zones_keeps_each_zones_text() -> None:
    """Datetimes are formatted once per value (messaging.events._default): equal instants in other
    zones, or either side of a clock change, still get their own text."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    now = dt.datetime(2026, 12, 3, 10, 41, 5, 123456, tzinfo=dt.UTC)
    # 02:30 on the night the clocks go back happens twice: fold 0 is +02:00, fold 1 is +01:00.
    twice = dt.datetime(2026, 10, 25, 2, 30, tzinfo=berlin)
    values = [now, now.astimezone(berlin), now, twice, twice.replace(fold=1), now.astimezone(berlin)]
    for value in values * 2:
        payload = {"at": value}
        assert events.dumps(payload) == _reference(payload)
    assert events.dumps({"at": twice}) != events.dumps({"at": twice.replace(fold=1)})


def test_a_real_frame_of_now_is_unchanged() -> None:
    payload = {"type": "typing", "at": timezone.now(), "conversation_id": 1, "name": "Élodie"}
    assert events.dumps(payload) == _reference(payload)
