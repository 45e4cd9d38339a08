"""Inbox search: PostgreSQL full-text search over message text (English and German stemming),
the contact's name and phone number, with filters; in the schema the caller entered, so only
this business's conversations can match.

The plan (bench/inbox_queries.py, EXPLAIN ANALYZE in docs/performance.md): the matching
conversation ids come from the GIN index on `messaging_message.search_vector` (collab.0002) as a hashed set, then
conversations are walked newest first by `last_message_at` until a page is full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from collab.models import ConversationLabel
from messaging.models import Conversation, Message
from messaging.payloads import conversation_payload

PAGE_SIZE = 30
MAX_QUERY = 200

# Both stemmers, OR-ed: "flights" → flight, "Flüge" → flug; an English word in a German
# sentence is found either way. Must match collab.search_sql exactly (the generated column).
MESSAGE_QUERY = "(websearch_to_tsquery('english'::regconfig, %s) || websearch_to_tsquery('german'::regconfig, %s))"


@dataclass(frozen=True)
class SearchFilters:
    query: str = ""
    status: str = ""
    label_id: int | None = None
    assignee: str = ""  # "", "me", "none" or a user id
    date_from: date | None = None
    date_to: date | None = None  # inclusive


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _name_query(query: str) -> str:
    # Prefix match on every word ("soph hart" finds Sophie Hartmann); only word characters reach to_tsquery.
    words = re.findall(r"\w+", query)[:8]
    return " & ".join(f"{w}:*" for w in words)


def _phone_digits(query: str) -> str:
    # Only a number-like query matches phone numbers (as the inbox's own filter does).
    if not re.fullmatch(r"[\d\s+()\-./]+", query):
        return ""
    digits = re.sub(r"\D", "", query)
    return digits if len(digits) >= 3 else ""


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


PROBE = 2000


def _probe(query: str, message_range: str, message_params: list[Any]) -> set[int] | None:
    """The conversations whose messages match, if fewer than PROBE messages do; else None."""
    sql = (
        f"SELECT m.conversation_id FROM {Message._meta.db_table} m "
        f"WHERE m.search_vector @@ {MESSAGE_QUERY}{message_range} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [query, query, *message_params, PROBE])
        rows = cursor.fetchall()
    return {row[0] for row in rows} if len(rows) < PROBE else None


MAX_CONTACT_IDS = 5000


def _contact_match(query: str) -> tuple[str, list[Any]]:
    """SQL matching a conversation's contact by name (a prefix of each word, GIN on the name) or,
    for a number-like query, phone; the customer's own name counts while the business has not
    named the contact (a partial index holds the unnamed ones, collab.0003).

    The ids are read first and handed over as an array: an OR of subqueries makes PostgreSQL
    test every conversation in turn, an array of ids lets it use the contact_id index. Past
    MAX_CONTACT_IDS (a one-letter name prefix) the subquery stays in the SQL."""
    selects: list[str] = []
    params: list[Any] = []
    name_query = _name_query(query)
    if name_query:
        selects.append(
            "SELECT ct.id FROM messaging_contact ct "
            "WHERE to_tsvector('simple'::regconfig, ct.name) @@ to_tsquery('simple'::regconfig, %s)"
        )
        params.append(name_query)
    # From this business's unnamed contacts to their customers, one by one (a scalar subquery is
    # never turned into a join that scans every customer of the platform first).
    selects.append(
        "SELECT ct.id FROM messaging_contact ct WHERE ct.name = '' AND "
        "(SELECT cu.display_name FROM accounts_customer cu WHERE cu.id = ct.customer_id) ILIKE %s"
    )
    params.append(_like(query))
    digits = _phone_digits(query)
    if digits:
        selects.append(
            "SELECT ct.id FROM messaging_contact ct JOIN accounts_customer cu ON cu.id = ct.customer_id "
            "WHERE cu.phone_number LIKE %s"
        )
        params.append(_like(digits))
    union = " UNION ".join(selects)
    with connection.cursor() as cursor:
        cursor.execute(f"{union} LIMIT %s", [*params, MAX_CONTACT_IDS + 1])
        ids = [row[0] for row in cursor.fetchall()]
    if len(ids) <= MAX_CONTACT_IDS:
        return "c.contact_id = ANY(%s)", [ids]
    return f"c.contact_id IN ({union})", params


def search_conversations(*, user_id: int, filters: SearchFilters, page: int = 1) -> dict[str, Any]:
    """A page of conversations matching the filters, newest activity first; each with the newest
    matching message (`match`) when the query matched message text."""
    query = filters.query.replace("\x00", "").strip()[:MAX_QUERY]
    where = ["c.last_message_at IS NOT NULL"]
    params: list[Any] = []
    if filters.status in Conversation.Status.values:
        where.append("c.status = %s")
        params.append(filters.status)
    if filters.assignee == "me":
        where.append("c.assignee_id = %s")
        params.append(user_id)
    elif filters.assignee == "none":
        where.append("c.assignee_id IS NULL")
    elif filters.assignee.isdigit():
        where.append("c.assignee_id = %s")
        params.append(int(filters.assignee))
    if filters.label_id is not None:
        where.append(f"c.id IN (SELECT conversation_id FROM {ConversationLabel._meta.db_table} WHERE label_id = %s)")
        params.append(filters.label_id)
    start = _day_start(filters.date_from) if filters.date_from else None
    end = _day_start(filters.date_to + timedelta(days=1)) if filters.date_to else None
    message_range = ""
    message_params: list[Any] = []
    if start is not None:
        message_range += " AND m.created_at >= %s"
        message_params.append(start)
    if end is not None:
        message_range += " AND m.created_at < %s"
        message_params.append(end)
    if query:
        # Two plans, chosen by how often the words occur (PostgreSQL's estimate for a lexeme it has
        # no statistics for is far off: it walked 100,000 conversations for a word nobody wrote).
        # Probe the GIN index for up to PROBE matching messages: fewer means the probe already
        # holds every matching conversation (rare words: filter by those ids); as many means the
        # words are common, and walking conversations newest first finds a page within a few
        # hundred (each tested against its own messages; OFFSET 0 keeps that test per conversation
        # instead of hashing every match).
        matched = _probe(query, message_range, message_params)
        contact_sql, contact_params = _contact_match(query)
        if matched is not None:
            where.append(f"(c.id = ANY(%s) OR {contact_sql})")
            params += [sorted(matched), *contact_params]
        else:
            where.append(
                "(EXISTS (SELECT 1 FROM messaging_message m WHERE m.conversation_id = c.id "
                f"AND m.search_vector @@ {MESSAGE_QUERY}{message_range} OFFSET 0) OR {contact_sql})"
            )
            params += [query, query, *message_params, *contact_params]
    else:
        if start is not None:
            where.append("c.last_message_at >= %s")
            params.append(start)
        if end is not None:
            where.append("c.last_message_at < %s")
            params.append(end)
    page = max(1, min(page, 1000))
    sql = (
        f"SELECT c.id FROM {Conversation._meta.db_table} c WHERE {' AND '.join(where)} "
        "ORDER BY c.last_message_at DESC, c.id DESC LIMIT %s OFFSET %s"
    )
    params += [PAGE_SIZE + 1, (page - 1) * PAGE_SIZE]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [row[0] for row in cursor.fetchall()]
    has_more = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    by_id = {c.pk: c for c in Conversation.objects.select_related("contact__customer", "assignee").filter(pk__in=ids)}
    matches = _matches(ids, query, message_range, message_params) if query and ids else {}
    rows = []
    for cid in ids:
        row = conversation_payload(by_id[cid])
        row["match"] = matches.get(cid)
        rows.append(row)
    return {"conversations": rows, "has_more": has_more, "page": page}


def _matches(ids: list[int], query: str, message_range: str, message_params: list[Any]) -> dict[int, dict[str, Any]]:
    """The newest matching message of each listed conversation (agents see notes too)."""
    sql = (
        "SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.id, m.body, m.kind, m.created_at "
        f"FROM {Message._meta.db_table} m WHERE m.conversation_id = ANY(%s) AND m.search_vector @@ {MESSAGE_QUERY}"
        f"{message_range} ORDER BY m.conversation_id, m.id DESC"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids, query, query, *message_params])
        return {
            cid: {"message_id": mid, "body": body[:200], "kind": kind, "created_at": created.isoformat()}
            for cid, mid, body, kind, created in cursor.fetchall()
        }
