"""Bulk loading of a busy inbox: customers, contacts, conversations and messages written with
COPY, for the demo (collab.demo) and the query benchmark (bench/inbox_queries.py).

The send core writes one message at a time (rules, billing, events); a few hundred believable
past conversations for the demo, or a million messages for a benchmark, are history instead:
they are copied in directly, with their timestamps, and service cycles are rebuilt from them in
one statement instead of by the per-message trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection

from insights.cycles import REBUILD_SQL
from messaging.events import allocate_event_ids

MESSAGE_COLUMNS = (
    "conversation_id",
    "direction",
    "author_kind",
    "author_user_id",
    "author_key",
    "kind",
    "body",
    "template_name",
    "status",
    "failure_reason",
    "client_msg_id",
    "event_id",
    "created_at",
    "delivered_at",
    "read_at",
)


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows into a table of the schema the connection is in; returns how many."""
    count = 0
    with connection.cursor() as cursor:
        raw: Any = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def reserve_event_ids(count: int) -> int:
    """Ids for copied messages from the business's stream counter (Message.event_id is unique);
    no Event rows are written: history, not news, so nothing is replayed to open sockets."""
    return allocate_event_ids(count) if count else 0


class CycleTriggerOff:
    """Inside the caller's transaction: the cycle triggers skip rows while history is copied
    (a transaction-local setting they read: no lock, no ALTER TABLE), then every service cycle
    of the schema is rebuilt from the messages in one statement."""

    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('parley.bulk_load', 'on', true)")

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return  # the transaction is failing: the setting goes with it
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('parley.bulk_load', 'off', true)")
            cursor.execute(REBUILD_SQL)
