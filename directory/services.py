"""Directory writes: the customer's cross-business thread list (public schema).

Messaging calls `customer_threads_touch_later` (a send group) and
`customer_threads_set_unread_later` (an ack group) inside its transaction; each is one upsert
statement, so the thread rows are locked until it commits and two writers cannot lose each
other's unread count. Each is sent at once and read when its caller asks: in a pipelined
transaction (config.sql.pipelined) the writer's next statement goes in the same round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.sql import Statement, prepared_cursor, rows_source, with_statements
from directory.models import CustomerThread


@dataclass(frozen=True)
class ThreadTouch:
    """Activity in one customer's thread: `unread_delta` more unread business messages (≥ 0)."""

    customer_id: int
    at: datetime
    unread_delta: int = 0


@dataclass(frozen=True)
class ThreadState:
    customer_id: int
    business_id: int
    unread: int
    last_activity_at: datetime

    def frame_data(self) -> dict[str, Any]:
        """The `thread.updated` payload (never message text)."""
        return {"business_id": self.business_id, "unread": self.unread, "last_activity_at": self.last_activity_at}


def _merged_touches(touches: Iterable[ThreadTouch]) -> list[tuple[int, datetime, int]]:
    """One row per customer (several touches add up), sorted, so two concurrent writers lock
    the rows in the same order (no deadlock)."""
    merged: dict[int, tuple[datetime, int]] = {}
    for touch in touches:
        at, delta = merged.get(touch.customer_id, (touch.at, 0))
        merged[touch.customer_id] = (max(at, touch.at), delta + touch.unread_delta)
    return [(customer_id, at, delta) for customer_id, (at, delta) in sorted(merged.items())]


def customer_threads_touch_later(
    *, business_id: int, touches: Iterable[ThreadTouch], alongside: Sequence[Statement | None] = ()
) -> Callable[[], dict[int, ThreadState]]:
    """Record activity in many customers' threads with one business, in one statement (several
    touches of one customer add up); the returned function reads each customer's new state.
    `alongside`: other data-modifying statements (sql, params) run within the same statement,
    as `WITH s0 AS (…)` — rows other than these threads' (one snapshot: they do not see each
    other's changes); run on their own when no thread is touched."""
    return _upsert_later(business_id, _merged_touches(touches), set_unread=False, alongside=alongside)


def _upsert_later(
    business_id: int,
    rows: list[tuple[int, datetime, int]],
    *,
    set_unread: bool,
    alongside: Sequence[Statement | None] = (),
) -> Callable[[], dict[int, ThreadState]]:
    """The upsert, sent now; the returned function reads its answer (and closes its cursor)."""
    others = [statement for statement in alongside if statement is not None]
    if not rows:
        if others:
            with prepared_cursor() as cursor:
                cursor.execute(*with_statements(others[:-1], others[-1]))
        return dict
    table = CustomerThread._meta.db_table
    unread = "EXCLUDED.unread_count" if set_unread else "GREATEST(0, t.unread_count + EXCLUDED.unread_count)"
    # One parameter per column, not per value (config.sql): this runs in every send group.
    source, params = rows_source(
        [("customer_id", "bigint"), ("business_id", "bigint"), ("at", "timestamptz"), ("unread", "integer")],
        [(customer_id, business_id, at, max(0, count)) for customer_id, at, count in rows],
    )
    # `at` moves last activity forward only: reading passes the last message time, so
    # opening a chat does not reorder the list.
    upsert: Statement = (
        f"INSERT INTO {table} AS t (customer_id, business_id, last_activity_at, unread_count) "
        f"SELECT v.customer_id, v.business_id, v.at, v.unread FROM {source} "
        "ON CONFLICT (customer_id, business_id) DO UPDATE SET "
        f"unread_count = {unread}, "
        "last_activity_at = GREATEST(t.last_activity_at, EXCLUDED.last_activity_at) "
        "RETURNING customer_id, unread_count, last_activity_at",
        params,
    )
    cursor = prepared_cursor()
    cursor.execute(*with_statements(others, upsert))

    def read() -> dict[int, ThreadState]:
        try:
            return {row[0]: ThreadState(row[0], business_id, row[1], row[2]) for row in cursor.fetchall()}
        finally:
            cursor.close()

    return read


def customer_threads_set_unread_later(
    *, business_id: int, rows: Iterable[tuple[int, datetime, int]]
) -> Callable[[], dict[int, ThreadState]]:
    """Read receipts of many customers, one statement: (customer, last activity, unread count);
    the returned function reads each customer's new state."""
    merged = {customer_id: (customer_id, at, unread) for customer_id, at, unread in rows}
    return _upsert_later(business_id, [merged[c] for c in sorted(merged)], set_unread=True)
