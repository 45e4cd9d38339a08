"""The message trigger writes a business's cycles into its own schema, whichever schema the
session is in: static statements when the messages' table is in the session's schema (every
write from the application), dynamic SQL aimed at the table's schema otherwise (migration 0006)."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from insights.models import Cycle
from tests.collab.helpers import customer_writes
from tests.conftest import World


def _cycles(schema: str, conversation_id: int) -> int:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {quote(schema)}.{quote(Cycle._meta.db_table)} WHERE conversation_id = %s",
            [conversation_id],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _all_cycles(schema: str) -> int:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {quote(schema)}.{quote(Cycle._meta.db_table)}")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_a_message_written_from_another_schema_opens_its_cycle_in_its_own_business(world: World) -> None:
    a, b = world.business_a, world.business_b
    with tenant_context(a):
        conversation = customer_writes(a, "Hallo")
        Cycle.objects.filter(conversation_id=conversation.pk).delete()
    assert _cycles(a.schema_name, conversation.pk) == 0
    b_before = _all_cycles(b.schema_name)
    quote = connection.ops.quote_name
    with tenant_context(b), connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        assert cursor.fetchone() == (b.schema_name,)
        # Business A's table named from B's session: the trigger's static statements would
        # resolve `insights_cycle` through B's search_path; the dynamic ones name A's schema.
        cursor.execute(
            f"INSERT INTO {quote(a.schema_name)}.messaging_message (conversation_id, direction, author_kind, "
            "author_user_id, author_key, kind, body, template_name, status, failure_reason, client_msg_id, "
            "event_id, created_at) "
            f"SELECT %s, 'in', 'customer', NULL, '', 'text', 'Noch da?', '', 'sent', '', '', "
            f"(SELECT coalesce(max(event_id), 0) + 1 FROM {quote(a.schema_name)}.messaging_message), now()",
            [conversation.pk],
        )
    assert _cycles(a.schema_name, conversation.pk) == 1
    assert _all_cycles(b.schema_name) == b_before


def test_a_message_written_in_its_own_schema_opens_its_cycle(world: World) -> None:
    a = world.business_a
    with tenant_context(a):
        conversation = customer_writes(a, "Guten Tag")
        assert Cycle.objects.filter(conversation_id=conversation.pk, resolved_at__isnull=True).count() == 1
