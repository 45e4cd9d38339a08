"""config.sql.rows_source: many rows bound as a few parameters read back exactly as given."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from psycopg.types.json import Jsonb

from config.sql import rows_source

COLUMNS = [
    ("id", "bigint"),
    ("body", "text"),
    ("at", "timestamptz"),
    ("price", "numeric"),
    ("key", "uuid"),
    ("doc", "jsonb"),
    ("flag", "boolean"),
    ("n", "integer"),
]


def read_back(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], str]:
    source, params = rows_source(COLUMNS, rows)
    names = ", ".join(f"v.{name}" for name, _type in COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {source}", params)
        # Django reads jsonb back as its text (its JSONField parses it): parse it here.
        return [
            (*row[:5], json.loads(row[5]) if row[5] is not None else None, *row[6:]) for row in cursor.fetchall()
        ], source


@pytest.mark.django_db
def test_values_of_every_type_come_back_exactly_and_in_order() -> None:
    at = datetime(2026, 12, 2, 4, 0, 0, 123456, tzinfo=UTC)
    rows = [
        (
            10 - n,  # descending: the order is the rows', not the ids'
            ["plain", "quote ' and \" and \\ and {braces}, commas", "Grüße 👋\nzweite Zeile", "NULL", ""][n],
            at + timedelta(microseconds=n),
            Decimal("0.0550") * n,
            uuid.UUID(int=n),
            Jsonb({"buttons": [{"id": "a", "title": "Ja ✓"}], "n": n}) if n % 2 else None,
            n % 2 == 0,
            None if n == 3 else n,
        )
        for n in range(5)
    ]
    back, source = read_back(rows)
    assert "ROWS FROM" in source
    expected = [
        (
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5].obj if row[5] is not None else None,
            row[6],
            row[7],
        )
        for row in rows
    ]
    assert back == expected


@pytest.mark.django_db
def test_columns_with_one_value_for_every_row_are_bound_once() -> None:
    at = datetime(2026, 12, 2, 4, 0, 0, 1, tzinfo=UTC)
    rows = [(n, "same", at, Decimal("1"), uuid.UUID(int=7), None, True, 1) for n in range(3)]
    back, source = read_back(rows)
    assert back == [(n, "same", at, Decimal("1"), uuid.UUID(int=7), None, True, 1) for n in range(3)]
    # Only the ids vary: one JSON array; everything else is a scalar parameter.
    assert source.count("json_array_elements_text") == 1
    _source, params = rows_source(COLUMNS, rows)
    assert len(params) == len(COLUMNS)


@pytest.mark.django_db
def test_one_row_is_scalars_only_and_equal_values_of_other_types_stay_apart() -> None:
    back, source = read_back([(1, "x", None, None, None, None, None, None)])
    assert back == [(1, "x", None, None, None, None, None, None)]
    assert "json_array_elements_text" not in source
    # 1, True and Decimal(1) are equal in Python but not one value: not merged into one scalar.
    source, params = rows_source([("value", "text")], [(1,), (True,), (Decimal(1),)])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT v.value FROM {source}", params)
        assert [row[0] for row in cursor.fetchall()] == ["1", "true", "1"]


def test_no_rows_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        rows_source(COLUMNS, [])
    with pytest.raises(ValueError):
        rows_source(COLUMNS, [(1, 2)])


@pytest.mark.django_db
def test_dates_whole_seconds_and_other_zones_come_back_exactly() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rows = [
        (
            date(2026, 12, 5),
            datetime(2026, 12, 5, 6, 0, 0, tzinfo=UTC),
            datetime(2026, 7, 1, 9, 30, 0, 5, tzinfo=berlin),
        ),
        (
            date(2027, 1, 1),
            datetime(2026, 12, 5, 6, 0, 0, 999999, tzinfo=UTC),
            datetime(2026, 1, 1, 0, 0, tzinfo=berlin),
        ),
    ]
    source, params = rows_source([("day", "date"), ("at", "timestamptz"), ("local", "timestamptz")], rows)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT v.day, v.at, v.local FROM {source}", params)
        assert cursor.fetchall() == rows  # timestamptz compares as instants, whatever the zone
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        rows_source([("x", "text")], [(object(),), (object(),)])


@pytest.mark.django_db
def test_a_prepared_cursor_reads_timestamps_as_django_does_in_any_session_zone() -> None:
    """A prepared cursor loads timestamptz with psycopg's own loader in a UTC session (what
    Django's loader makes there, without a Python call per value) and with Django's otherwise
    (which assumes a UTC session): whatever the session, what a Django cursor reads."""
    from config.sql import prepared_cursor

    at = datetime(2026, 12, 6, 15, 30, 1, 234567, tzinfo=ZoneInfo("Europe/Berlin"))

    def read(cursor: Any) -> datetime:
        cursor.execute("SELECT %s::timestamptz", [at])
        value = cursor.fetchone()[0]
        assert isinstance(value, datetime)
        return value

    def loader_module(cursor: Any) -> str:
        return str(cursor.cursor.adapters.get_loader(1184, 0).__module__)  # timestamptz, text

    with connection.cursor() as plain:
        wanted = read(plain)
    assert wanted == at and wanted.tzinfo is UTC
    with prepared_cursor() as cursor:
        got = read(cursor)
        assert got == wanted and got.tzinfo is UTC and "django" not in loader_module(cursor)
    with connection.cursor() as plain:
        plain.execute("SET TIME ZONE 'America/New_York'")
    try:
        with connection.cursor() as plain:
            wanted = read(plain)
        with prepared_cursor() as cursor:
            got = read(cursor)
            assert "django" in loader_module(cursor)
        assert got == wanted and got.tzinfo is UTC
    finally:
        with connection.cursor() as plain:
            plain.execute("SET TIME ZONE 'UTC'")


@pytest.mark.django_db
def test_prepared_cursors_bind_every_integer_as_bigint_through_one_map_per_connection() -> None:
    """Prepared cursors bind integers as bigint whatever their size (one prepared statement for
    small and large ids); what they bind and read differently is set up once per connection and
    shared by its cursors, not copied into each, and a new connection gets its own."""
    from config.sql import prepared_cursor

    def typed(value: int) -> tuple[str, Any]:
        with prepared_cursor() as cursor:
            cursor.execute("SELECT pg_typeof(%s)::text, %s", [value, value])
            row = cursor.fetchone()
            return row[0], row[1]

    assert typed(7) == ("bigint", 7) and typed(2**40) == ("bigint", 2**40)
    with prepared_cursor() as first, prepared_cursor() as second:
        parent_loaders = first.cursor.adapters._loaders[0]
        assert parent_loaders is second.cursor.adapters._loaders[0]  # one map, not two copies
        assert first.cursor.connection is connection.connection
    driver = connection.connection
    assert getattr(driver, "_parley_prepared_adapters", None)
