"""The rows every message writes carry no index another index already covers (issue 9).

A conversation and its customer thread are updated by every message, and those updates change
an indexed column (last_message_at, last_activity_at), so PostgreSQL cannot make them HOT: each
one writes a new entry into every index of the table. A message is inserted into every index of
its table. An index whose columns lead another index's (a plain foreign-key index next to a
composite one starting with the same column) serves no query the other cannot, and costs that
write on the hot path. Read from the migrated schemas, not from the models, so the test sees
what the migrations really left.
"""

from __future__ import annotations

import pytest
from django.db import connection

from directory.models import CustomerThread
from messaging.models import Conversation, Message
from tests.conftest import World

pytestmark = pytest.mark.django_db

HOT_TABLES = [
    (Conversation, "tenant"),
    (Message, "tenant"),
    (CustomerThread, "public"),
]


def _indexes(schema: str, table: str) -> dict[str, tuple[list[str], bool, bool]]:
    """index name → (its key columns in order, partial, unique). INCLUDE columns are not key
    columns."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname,
                   (array_agg(a.attname ORDER BY k.ordinality))[1:x.indnkeyatts],
                   x.indpred IS NOT NULL, x.indisunique
            FROM pg_index x
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
            CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ordinality)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE n.nspname = %s AND t.relname = %s
            GROUP BY i.relname, x.indpred, x.indisunique, x.indnkeyatts
            """,
            [schema, table],
        )
        return {name: (list(columns), partial, unique) for name, columns, partial, unique in cursor.fetchall()}


def _redundant(indexes: dict[str, tuple[list[str], bool, bool]]) -> list[tuple[str, str]]:
    """(index, the index that covers it): a plain index (neither partial nor unique: those do
    more than serve lookups) whose key columns lead the key columns of another full index."""
    found = []
    for name, (columns, partial, unique) in indexes.items():
        if partial or unique:
            continue
        for other, (other_columns, other_partial, _other_unique) in indexes.items():
            if other_partial or other == name:
                continue
            if len(other_columns) > len(columns) and other_columns[: len(columns)] == columns:
                found.append((name, other))
                break
    return found


@pytest.mark.parametrize(("model", "where"), HOT_TABLES, ids=lambda value: getattr(value, "__name__", value))
def test_hot_rows_have_no_index_another_index_covers(world: World, model: type, where: str) -> None:
    schema = world.business_a.schema_name if where == "tenant" else "public"
    indexes = _indexes(schema, model._meta.db_table)  # type: ignore[attr-defined]
    assert indexes, f"no indexes read for {model.__name__} in {schema}"
    assert _redundant(indexes) == []


def test_the_check_finds_a_covered_index(world: World) -> None:
    """The detector itself: the plain foreign-key index these tables used to have is found."""
    indexes = {
        "conv_recent_id": (["last_message_at", "id"], False, False),
        "last_message_at_only": (["last_message_at"], False, False),
        "contact_unique": (["contact_id"], False, True),  # a constraint: never covered
        "contact_status": (["contact_id", "status"], False, False),
        "queue_partial": (["queued_at", "id"], True, False),  # covers only some rows
        "queued_only": (["queued_at"], False, False),
    }
    assert _redundant(indexes) == [("last_message_at_only", "conv_recent_id")]


def test_every_business_search_index_merges_its_pending_list_in_small_steps(world: World) -> None:
    """The messages' full-text index (GIN; the contacts' name index too) merges its pending list in whichever insert passes
    the list's limit, inside that send group's transaction: at PostgreSQL's 4 MB every writer of
    the business waited ~85 ms for it every ~20 s at 1,000 msgs/s (issue 9). Every business
    schema — migrated, and copied from the template as new businesses are — keeps it small."""
    from collab.search_sql import MESSAGE_SEARCH_PENDING_LIST_KB
    from tenancy.models import Business
    from tenancy.services import business_create

    business_create(owner=world.owner_a, name="Fresh Index", slug="fresh-index")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.nspname, i.relname, i.reloptions
            FROM pg_class i
            JOIN pg_namespace n ON n.oid = i.relnamespace
            JOIN pg_am am ON am.oid = i.relam AND am.amname = 'gin'
            WHERE i.relkind = 'i'
            """
        )
        options = {(schema, name): reloptions for schema, name, reloptions in cursor.fetchall()}
    schemas = set(Business.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    assert "b_fresh_index" in schemas
    for schema in schemas:
        indexes = {name for in_schema, name in options if in_schema == schema}
        assert indexes == {"message_search", "contact_name_search"}, (schema, indexes)
        for name in indexes:
            limit = f"gin_pending_list_limit={MESSAGE_SEARCH_PENDING_LIST_KB}"
            assert limit in (options[schema, name] or []), (schema, name, options[schema, name])
