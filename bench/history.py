"""Long conversations for measuring (bench/send_core.py --history) and for the tests that bound
what a send or an ack reads (tests/messaging/test_long_conversations.py): earlier messages
written straight into a business's schema, thousands in one statement. No side effects on
import (the bench scripts set production settings when run; this module is imported too)."""

from __future__ import annotations

from typing import Any


def conversations_lengthen(business: Any, conversation_ids: list[int], history: int) -> int:
    """Give each conversation `history` messages at least (dated a month ago, half inbound, all
    delivered and read), then statistics as autovacuum would keep them (ANALYZE); returns the
    rows added. Their ids are newer than the conversation's own messages
    (the latest inbound one is among them); their event ids are negative: no stream event is
    theirs."""
    from django.db import connection
    from django_tenants.utils import schema_context

    with schema_context(business.schema_name), connection.cursor() as cursor:
        cursor.execute(
            "SELECT conversation_id, count(*) FROM messaging_message WHERE conversation_id = ANY(%s) "
            "GROUP BY conversation_id",
            [conversation_ids],
        )
        have = dict(cursor.fetchall())
        cursor.execute("SELECT coalesce(min(event_id), 0) FROM messaging_message")
        (lowest,) = cursor.fetchone()
        added = 0
        for conversation_id in conversation_ids:
            missing = history - have.get(conversation_id, 0)
            if missing <= 0:
                continue
            cursor.execute(
                "INSERT INTO messaging_message (conversation_id, direction, author_kind, author_key, kind, body, "
                "template_name, status, failure_reason, client_msg_id, event_id, created_at, delivered_at, "
                "read_at, choice_id) "
                "SELECT %s, CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END, "
                "CASE WHEN g %% 2 = 0 THEN 'customer' ELSE 'agent' END, 'bench:history', 'text', "
                "'Frühere Nachricht', '', 'read', '', '', %s - g, now() - interval '30 days', "
                "now() - interval '30 days', now() - interval '30 days', '' FROM generate_series(1, %s) AS g",
                [conversation_id, min(lowest, 0) - 1 - added, missing],
            )
            added += missing
        cursor.execute("ANALYZE messaging_message")
    return added


def conversations_add(business: Any, count: int) -> list[int]:
    """`count` past customers of the business, each with a contact and a resolved conversation of
    no messages (a business that has served many), then statistics as autovacuum would keep
    them (ANALYZE); returns their customer ids. The conversations are made as the send core
    makes them (one statement, no per-row round trips), so `count` may be 100,000."""
    from django.db import connection
    from django_tenants.utils import schema_context

    with schema_context(business.schema_name), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM public.accounts_customer")
        (base,) = cursor.fetchone()
        # Berlin landlines, numbered past every customer id so far: unique in the public table.
        cursor.execute(
            "INSERT INTO public.accounts_customer (phone_number, phone_formatted, display_name, country_code, "
            "created_at) SELECT '+4930' || lpad((%s + g)::text, 10, '0'), '', 'Frühere Kundschaft ' || g, 'DE', "
            "now() - interval '90 days' FROM generate_series(1, %s) AS g RETURNING id",
            [base, count],
        )
        customer_ids = [pk for (pk,) in cursor.fetchall()]
        cursor.execute(
            "WITH contact AS (INSERT INTO messaging_contact (customer_id, name, notes, created_at, updated_at) "
            "SELECT id, '', '', now() - interval '90 days', now() - interval '90 days' FROM unnest(%s::bigint[]) "
            "AS id RETURNING id) "
            "INSERT INTO messaging_conversation (contact_id, status, last_message_preview, unread_count, "
            "last_public_event_id, last_event_id, created_at, updated_at) "
            "SELECT id, 'resolved', '', 0, 0, 0, now() - interval '90 days', now() - interval '90 days' FROM contact",
            [customer_ids],
        )
        cursor.execute("ANALYZE public.accounts_customer")
        cursor.execute("ANALYZE messaging_contact")
        cursor.execute("ANALYZE messaging_conversation")
    return customer_ids


def analyze_jobs_waiting(schema_name: str) -> list[int]:
    """The ids of this business's queued `messaging.tables_analyze` jobs, not yet run."""
    from django.db import connection

    from messaging.jobs import tables_analyze

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM procrastinate_jobs WHERE task_name = %s AND args->>'schema_name' = %s AND status = 'todo'",
            [tables_analyze.name, schema_name],
        )
        return [row[0] for row in cursor.fetchall()]


def run_queued_analyze(schema_name: str) -> int:
    """A worker's part: run this business's queued analyze job and mark it done; how many were
    waiting (its queueing lock allows one)."""
    from django.db import connection

    from messaging.jobs import tables_analyze

    ids = analyze_jobs_waiting(schema_name)
    if ids:
        tables_analyze(schema_name)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = ANY(%s)", [ids])
    return len(ids)
