"""Locking a group's conversations for a writer: the send core (messaging.sending) and the ack
writer (messaging.receipts) lock the rows they change the same way, in one statement.

Rows are locked in id order (one order for every writer: two groups never wait for each other's
rows crosswise) and come back as models with their contact, customer and assignee cached as
`select_related` would, without a queryset to compile or select_related machinery per row: at a
few dozen groups a second per process the ORM's compilation was a sizeable share of a group's
time (issue 9).

`behind` sends statements after the lock's and before its rows are read: in a pipeline
(config.sql.pipelined) they share its round trip, and the server runs them once the locks are
held, as if they were sent after the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model, signals
from django.db.models.base import ModelState

from accounts.models import Customer, User
from config.sql import prepared_cursor
from customers.models import Block
from messaging.models import Contact, Conversation, Message, awaiting_receipt_sql


@functools.cache
def model_columns(model: Any, alias: str) -> tuple[list[str], str]:
    """A model's concrete fields (attnames, in the order `from_db` takes them) and their SQL.
    Made once per model and alias: the list is shared, never to be changed."""
    fields = model._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(f'{alias}."{f.column}"' for f in fields)


@functools.cache
def _lock_sql(senders: bool) -> tuple[str, list[list[str]], list[tuple[int, int]]]:
    """The lock query (built once per shape): the conversations with their contact, customer and
    assignee. `senders`: also each conversation's latest unread inbound message and whether its
    customer blocked the business (what the send core decides on; the ack writer
    needs none of it, and each is a subquery per row)."""
    models = (Conversation, Contact, Customer, User)
    parts = [model_columns(model, alias) for model, alias in zip(models, ("c", "ct", "cu", "u"), strict=True)]
    quote = connection.ops.quote_name
    extra = ""
    if senders:
        message = quote(Message._meta.db_table)
        inbound = f"FROM {message} m WHERE m.conversation_id = c.id AND m.direction = %s"
        # The latest inbound message not read yet: the newest inbound entry of the index of
        # messages awaiting a receipt, read backwards. A read inbound message has left it (every
        # write of `read` also sets read_at and delivered_at: sending._mark_read, receipts), so
        # the entry is the one wanted without a filter on status — and must stay without one:
        # with `status NOT IN (read, failed)` beside it the planner, once ANALYZE had seen how
        # many messages are read, expected one row to pass and fetched and sorted every unread
        # message of the conversation instead (89 heap rows a conversation after a minute at
        # 1,000 msgs/s; the lock's time 5x, the inbox's p99 2x with autovacuum on, issue 9).
        extra = (
            f", (SELECT m.id {inbound} AND {awaiting_receipt_sql('m')} ORDER BY m.id DESC LIMIT 1), "
            f"EXISTS(SELECT 1 FROM {quote(Block._meta.db_table)} b "
            "WHERE b.business_id = %s AND b.customer_id = ct.customer_id)"
        )
    conversation, contact = quote(Conversation._meta.db_table), quote(Contact._meta.db_table)
    sql = (
        f"SELECT {', '.join(columns for _names, columns in parts)}{extra} "
        # One list of ids, the customers' conversations found through their unique indexes
        # first: `c.id = ANY(ids) OR ct.customer_id = ANY(customers)` spans two tables, which
        # no index serves, so PostgreSQL joined every conversation to its contact and filtered
        # (56 ms a group at 100,000 conversations, whatever the plan; now 0.15 ms). Each
        # customer's contact, then its conversation, by a scalar subquery per customer id of the
        # array (never a join, nor a filter of the contacts by the array: hashing every
        # conversation was a near tie at a thousand, as for the contacts below, and the filter
        # read every contact of the business in each group, with no customer asked for too).
        "FROM (SELECT DISTINCT ids.id FROM unnest(%s::bigint[] || ARRAY("
        f"SELECT (SELECT k.id FROM {conversation} k WHERE k.contact_id = "
        f"(SELECT kt.id FROM {contact} kt WHERE kt.customer_id = x.id)) FROM unnest(%s::bigint[]) AS x(id)"
        ")) AS ids(id) WHERE ids.id IS NOT NULL ORDER BY ids.id) AS x "
        # Then every row by its primary key, one lookup per id whatever the plan (a LATERAL
        # subquery with OFFSET 0 is never flattened into a join). As joins, the planner weighed
        # an index lookup per row against hashing the whole table for the ten rows it assumes an
        # array holds: a prepared statement's generic plan made on a couple of thousand contacts
        # kept reading every contact in each group as the business grew (4,100 rows a group at
        # 4,100 contacts, until autovacuum's next ANALYZE replanned it); made on tables without
        # statistics (a new business's, before its first ANALYZE) it read every conversation,
        # contact, customer of the platform and user in each group (issue 9: 500 + 500 + 500 +
        # 51 rows a group in the inbox load). The conversations are locked as they are read, in
        # the ids' order (sorted above): two groups never wait for each other crosswise.
        f"CROSS JOIN LATERAL (SELECT * FROM {conversation} WHERE id = x.id OFFSET 0) c "
        f"CROSS JOIN LATERAL (SELECT * FROM {contact} WHERE id = c.contact_id OFFSET 0) ct "
        f"CROSS JOIN LATERAL (SELECT * FROM {quote(Customer._meta.db_table)} WHERE id = ct.customer_id OFFSET 0) cu "
        f"LEFT JOIN LATERAL (SELECT * FROM {quote(User._meta.db_table)} WHERE id = c.assignee_id OFFSET 0) u ON true "
        "ORDER BY c.id FOR UPDATE OF c"
    )
    names = [model_names for model_names, _columns in parts]
    # Where each model's columns lie in a row; the senders' two values follow the last.
    bounds: list[tuple[int, int]] = []
    start = 0
    for model_names in names:
        bounds.append((start, start + len(model_names)))
        start += len(model_names)
    return sql, names, bounds


def _from_db[M: Model](model: type[M], alias: str, names: list[str], values: Sequence[Any]) -> M:
    """`model.from_db` for a row of every concrete field, without `Model.__init__`'s generic
    path (a setattr per field through its descriptor, the init signals): ~10% of a send group's
    CPU went to building these four models per row. The same instance as `from_db` makes (a
    fresh object's attributes in its __dict__, loaded from `alias`); with init signal receivers
    for the model, `from_db` itself."""
    if _init_heard(model):
        return model.from_db(alias, names, values)
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    state = instance._state = ModelState()
    state.adding, state.db = False, alias
    return instance


def model_new[M: Model](model: type[M], values: dict[str, Any]) -> M:
    """An unsaved instance with these field values (by attname) and None in every other
    concrete field: what `model(*fields)` makes, without `Model.__init__`'s generic path (a
    setattr per field, the init signals), ~9% of a send group's writer CPU for its messages in
    the profile (issue 9). With init signal receivers for the model, `__init__` itself."""
    if _init_heard(model):
        return model(*[values.get(name) for name in _blank(model)])
    instance = model.__new__(model)
    data = instance.__dict__
    data.update(_blank(model))
    data.update(values)
    instance._state = ModelState()
    return instance


@functools.cache
def _blank(model: type[Model]) -> dict[str, None]:
    return dict.fromkeys(f.attname for f in model._meta.concrete_fields)


def _init_heard(model: type[Model]) -> bool:
    """Whether a receiver of the init signals would hear this model's instances being made.
    Usually no receiver exists at all: an empty list is cheaper to ask than the signal's
    per-sender lookup (a weak dictionary) four times per locked row."""
    pre, post = signals.pre_init, signals.post_init
    return bool(pre.receivers and pre.has_listeners(model)) or bool(post.receivers and post.has_listeners(model))


@dataclass
class Locked:
    conversation: Conversation
    # For senders only (None / False otherwise). The latest inbound message not read yet (reads
    # go "up to" a message, so every unread one is at or before it); None: all are read.
    last_unread_inbound_id: int | None = None
    customer_blocked: bool = False


def _lock_params(business_id: int | None, ids: Sequence[int], customer_ids: Sequence[int]) -> list[Any]:
    """`_lock_sql(business_id is not None)`'s parameters."""
    senders = [Message.Direction.INBOUND, business_id] if business_id is not None else []
    return [*senders, list(ids), list(customer_ids)]


def conversations_lock(
    *,
    business_id: int | None = None,
    ids: Sequence[int] = (),
    customer_ids: Sequence[int] = (),
    behind: Callable[[], None] | None = None,
) -> list[Locked]:
    """Lock and read the conversations with these ids or of these customers. With `business_id`
    (the send core) each row also says what a sender decides on (`_lock_sql`); without, the
    conversation alone. `behind`: see the module docstring."""
    senders = business_id is not None
    sql, names, bounds = _lock_sql(senders)
    params = _lock_params(business_id, ids, customer_ids)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        if behind is not None:
            behind()
        rows = cursor.fetchall()
    alias = connection.alias
    (c0, c1), (t0, t1), (u0, u1), (a0, a1) = bounds
    start = a1
    locked = []
    contact_field, customer_field = Conversation._meta.get_field("contact"), Contact._meta.get_field("customer")
    assignee_field = Conversation._meta.get_field("assignee")
    assignee_id = a0 + names[3].index("id")  # NULL: no assignee (the LEFT JOIN found no user)
    for row in rows:
        conversation = _from_db(Conversation, alias, names[0], row[c0:c1])
        contact = _from_db(Contact, alias, names[1], row[t0:t1])
        # The related objects cached as select_related would (the descriptors' setters check
        # and route each assignment: a sizeable share of a group's time for nothing here).
        customer_field.set_cached_value(contact, _from_db(Customer, alias, names[2], row[u0:u1]))
        contact_field.set_cached_value(conversation, contact)
        contact_field.remote_field.set_cached_value(contact, conversation)
        assignee = _from_db(User, alias, names[3], row[a0:a1]) if row[assignee_id] is not None else None
        assignee_field.set_cached_value(conversation, assignee)
        if senders:
            locked.append(Locked(conversation, row[start], row[start + 1]))
        else:
            locked.append(Locked(conversation))
    return locked
