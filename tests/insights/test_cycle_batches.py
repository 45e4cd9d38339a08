"""The message trigger on batches: one INSERT of many messages gives the service cycles that
taking its messages one by one in id order gives, which is what the row-by-row body that
migration 0005 replaced did. Each batch runs twice in the same state, once with the current
body and once with that reference body, and both are held to hand-computed cycles."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

from django.db import connection, transaction

from accounts.models import User
from insights.cycles import MESSAGES_FUNCTION_SQL
from insights.models import Cycle
from messaging.models import Conversation, Message
from messaging.sending import check_agent_send, check_customer_send, do_send_messages
from messaging.services import conversation_set_status
from tenancy.services import business_create
from tests.collab.helpers import at, customer_writes
from tests.conftest import World, in_business
from tests.messaging.conftest import make_customer

ROW_BY_ROW_BODY = import_module("insights.migrations.0005_set_based_message_trigger").ROW_BY_ROW_MESSAGES_FUNCTION_SQL

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)


def _t(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


# (conversation id, started_at, first_response_at, first_responder_id, resolved_at, resolver_id)
CycleRow = tuple[int, datetime, datetime | None, int | None, datetime | None, int | None]


@dataclass(frozen=True)
class Row:
    """One message of a batch: (direction, author_kind) says whether it is a customer message,
    an agent's reply or neither."""

    conversation: int
    direction: str
    author_kind: str
    author: int | None
    created_at: datetime


def customer(conversation: int, minute: int) -> Row:
    return Row(conversation, "in", "customer", None, _t(minute))


def reply(conversation: int, author: User, minute: int) -> Row:
    return Row(conversation, "out", "agent", author.pk, _t(minute))


def _insert_batch(rows: list[Row]) -> None:
    """All rows in ONE multi-row INSERT (one statement-level trigger call), ids in list order."""
    values = ", ".join(["(%s::int, %s::bigint, %s::varchar, %s::varchar, %s::bigint, %s::timestamptz)"] * len(rows))
    params: list[object] = []
    for n, row in enumerate(rows):
        params += [n, row.conversation, row.direction, row.author_kind, row.author, row.created_at]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_message (conversation_id, direction, author_kind, author_user_id, author_key, "
            "kind, body, template_name, status, failure_reason, client_msg_id, event_id, created_at) "
            "SELECT v.conversation_id, v.direction, v.author_kind, v.author_user_id, '', "
            "CASE WHEN v.direction = 'internal' THEN 'note' ELSE 'text' END, 'batch', '', 'sent', '', '', "
            "(SELECT coalesce(max(event_id), 0) FROM messaging_message) + 1 + v.n, v.created_at "
            f"FROM (VALUES {values}) AS v(n, conversation_id, direction, author_kind, author_user_id, created_at) "
            "ORDER BY v.n",
            params,
        )


def _cycles(conversations: list[int]) -> dict[int, list[CycleRow]]:
    rows = Cycle.objects.filter(conversation_id__in=conversations).order_by("started_at", "id")
    found: dict[int, list[CycleRow]] = {pk: [] for pk in conversations}
    for c in rows:
        found[c.conversation_id].append(
            (
                c.conversation_id,
                c.started_at,
                c.first_response_at,
                c.first_responder_id,
                c.resolved_at,
                c.resolver_id,
            )
        )
    return found


@contextmanager
def _rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _after_batch_both_ways(
    write: Callable[[], None], conversations: list[int]
) -> tuple[dict[int, list[CycleRow]], dict[int, list[CycleRow]]]:
    """The conversations' cycles after `write`, with the installed body and with the row-by-row
    reference body (put in this business's schema for the while), each from the same state."""
    with _rolled_back():
        write()
        current = _cycles(conversations)
    with _rolled_back():
        with connection.cursor() as cursor:
            # search_path starts with this business's schema: the replacement lands there.
            cursor.execute(ROW_BY_ROW_BODY)
        write()
        reference = _cycles(conversations)
    return current, reference


def _conversations(world: World, count: int) -> list[int]:
    """Conversations without any cycle (their first message's cycle removed)."""
    pks = []
    for n in range(count):
        with at(T0 - timedelta(days=1)):
            pks.append(customer_writes(world.business_a, "earlier", name=f"Batch {n}").pk)
    Cycle.objects.filter(conversation_id__in=pks).delete()
    return pks


def _open_cycle(conversation: int, *, answered_by: User | None = None) -> None:
    Cycle.objects.create(
        conversation_id=conversation,
        started_at=_t(-60),
        first_response_at=_t(-55) if answered_by else None,
        first_responder_id=answered_by.pk if answered_by else None,
    )


def _resolved_cycle(conversation: int, resolver: User) -> None:
    Cycle.objects.create(
        conversation_id=conversation, started_at=_t(-120), resolved_at=_t(-90), resolver_id=resolver.pk
    )


def test_one_batch_mixing_every_case_gives_the_row_by_row_cycles(world: World) -> None:
    agent, owner = world.agent_a, world.owner_a
    with in_business(world.business_a):
        fresh, waiting, reopened, answered, unanswered, reply_only, still_open, late = _conversations(world, 8)
        _open_cycle(waiting)
        _resolved_cycle(reopened, owner)
        _open_cycle(answered, answered_by=owner)
        _open_cycle(still_open)
        batch = [
            customer(fresh, 1),  # opens fresh's cycle
            reply(waiting, agent, 2),  # answers waiting's open cycle, before any customer message
            reply(reopened, owner, 3),  # nothing open yet: answers nothing
            customer(fresh, 4),  # fresh's cycle is open: nothing
            customer(waiting, 5),  # waiting's cycle still open: nothing
            customer(reopened, 6),  # opens reopened's second cycle
            reply(reply_only, agent, 7),  # no cycle at all: nothing
            reply(fresh, owner, 8),  # first reply after fresh's opening message: answers it
            reply(reopened, agent, 9),  # first reply after the opening: answers it
            customer(answered, 10),  # open and answered: nothing
            customer(unanswered, 11),  # opens a cycle nobody answers in this batch
            Row(unanswered, "out", "system", None, _t(12)),  # the away message answers nobody
            Row(unanswered, "internal", "agent", agent.pk, _t(13)),  # a note neither
            reply(answered, agent, 14),  # already answered: nothing
            reply(waiting, owner, 15),  # answered at minute 2: nothing
            reply(fresh, agent, 16),  # answered at minute 8: nothing
            customer(still_open, 17),  # open, unanswered: nothing, and no reply follows
            Row(unanswered, "out", "api", None, _t(18)),  # an API send answers nobody
            reply(late, agent, 19),  # nothing open: answers nothing ...
            customer(late, 20),  # ... and this opens a cycle it does not answer
        ]
        conversations = [fresh, waiting, reopened, answered, unanswered, reply_only, still_open, late]
        current, reference = _after_batch_both_ways(lambda: _insert_batch(batch), conversations)

    expected = {
        fresh: [(fresh, _t(1), _t(8), owner.pk, None, None)],
        waiting: [(waiting, _t(-60), _t(2), agent.pk, None, None)],
        reopened: [
            (reopened, _t(-120), None, None, _t(-90), owner.pk),
            (reopened, _t(6), _t(9), agent.pk, None, None),
        ],
        answered: [(answered, _t(-60), _t(-55), owner.pk, None, None)],
        unanswered: [(unanswered, _t(11), None, None, None, None)],
        reply_only: [],
        still_open: [(still_open, _t(-60), None, None, None, None)],
        late: [(late, _t(20), None, None, None, None)],
    }
    assert reference == expected
    assert current == expected


def test_batches_touching_one_conversation_give_the_row_by_row_cycles(world: World) -> None:
    """One conversation to answer or to open a cycle for: the trigger's one-row statements."""
    agent = world.agent_a
    with in_business(world.business_a):
        fresh, waiting, both = _conversations(world, 3)
        _open_cycle(waiting)
        batches: list[tuple[int, list[Row], list[CycleRow]]] = [
            (fresh, [customer(fresh, 1)], [(fresh, _t(1), None, None, None, None)]),
            (waiting, [reply(waiting, agent, 2)], [(waiting, _t(-60), _t(2), agent.pk, None, None)]),
            (
                both,
                [reply(both, agent, 3), customer(both, 4), customer(both, 5), reply(both, agent, 6)],
                [(both, _t(4), _t(6), agent.pk, None, None)],
            ),
        ]
        for conversation, batch, expected in batches:
            current, reference = _after_batch_both_ways(lambda: _insert_batch(batch), [conversation])  # noqa: B023
            assert reference == {conversation: expected}
            assert current == {conversation: expected}


def test_random_batches_give_the_row_by_row_cycles(world: World) -> None:
    """Many batches over a few conversations, each in a random starting state (no cycle, an open
    one answered or not, a resolved one), messages of every kind in random order."""
    agent, owner = world.agent_a, world.owner_a
    kinds: list[Callable[[int, int], Row]] = [
        customer,
        lambda conv, minute: reply(conv, agent, minute),
        lambda conv, minute: reply(conv, owner, minute),
        lambda conv, minute: Row(conv, "out", "system", None, _t(minute)),
        lambda conv, minute: Row(conv, "internal", "agent", agent.pk, _t(minute)),
    ]
    starts: list[Callable[[int], None]] = [
        lambda conv: None,
        _open_cycle,
        lambda conv: _open_cycle(conv, answered_by=owner),
        lambda conv: _resolved_cycle(conv, agent),
    ]
    generator = random.Random(20260310)
    answered_in_batch = opened_in_batch = 0
    with in_business(world.business_a):
        conversations = _conversations(world, 4)
        for _round in range(40):
            with _rolled_back():
                for conv in conversations:
                    generator.choice(starts)(conv)
                before = _cycles(conversations)
                batch = [
                    generator.choice(kinds)(generator.choice(conversations), minute)
                    for minute in range(generator.randint(1, 16))
                ]
                current, reference = _after_batch_both_ways(lambda: _insert_batch(batch), conversations)  # noqa: B023
            assert current == reference, (batch, before)
            opened_in_batch += sum(len(reference[c]) - len(before[c]) for c in conversations)
            answered_in_batch += sum(
                1 for c in conversations for row in reference[c] if row[2] is not None and row[2] >= T0
            )
    # The rounds did exercise both statements, not only batches that change nothing.
    assert opened_in_batch > 20 and answered_in_batch > 20


def test_the_send_cores_batch_gives_the_row_by_row_cycles(world: World) -> None:
    """One do_send_messages with several requests (one multi-row INSERT): a reply before the
    customer's message in a conversation with an open cycle, and a customer message then a
    reply in a resolved conversation."""
    agent, owner = world.agent_a, world.owner_a
    with in_business(world.business_a):
        waiting_customer, resolved_customer = make_customer("Waiting"), make_customer("Resolved")
        with at(_t(0)):
            waiting = customer_writes(world.business_a, "Hello?", customer=waiting_customer)
            resolved = customer_writes(world.business_a, "Hi", customer=resolved_customer)
        with at(_t(30)):
            conversation_set_status(
                business=world.business_a, user=owner, conversation_id=resolved.pk, status="resolved"
            )
        sent_at = _t(45)

        def send() -> None:
            with at(sent_at):
                results = do_send_messages(
                    business=world.business_a,
                    requests=[
                        check_agent_send(business=world.business_a, user=agent, conversation_id=waiting.pk, body="Yes"),
                        check_customer_send(customer=waiting_customer, body="Still there?"),
                        check_customer_send(customer=resolved_customer, body="One more thing"),
                        check_agent_send(
                            business=world.business_a, user=owner, conversation_id=resolved.pk, body="Sure"
                        ),
                    ],
                )
            messages = [getattr(result, "message", result) for result in results]
            assert all(isinstance(message, Message) for message in messages), messages
            # The batch's premise: one statement, ids in the requests' order.
            ids = [message.pk for message in messages if isinstance(message, Message)]
            assert ids == sorted(ids)
            assert {message.created_at for message in messages if isinstance(message, Message)} == {sent_at}

        current, reference = _after_batch_both_ways(send, [waiting.pk, resolved.pk])
        resolved_status = Conversation.objects.get(pk=resolved.pk).status

    expected = {
        waiting.pk: [(waiting.pk, _t(0), sent_at, agent.pk, None, None)],
        resolved.pk: [
            (resolved.pk, _t(0), None, None, _t(30), None),
            (resolved.pk, sent_at, sent_at, owner.pk, None, None),
        ],
    }
    assert resolved_status == "resolved"  # rolled back with the batch
    assert reference == expected
    assert current == expected


def test_the_template_and_every_business_run_the_set_based_body(world: World) -> None:
    """Migrated schemas (the template, the session's businesses) and a schema copied from the
    template at sign-up all have the body of MESSAGES_FUNCTION_SQL."""
    new = business_create(owner=world.owner_a, name="Epsilon", slug="epsilon-cycles")
    body = MESSAGES_FUNCTION_SQL.split("$$")[1]
    schemas = ["tenant_template", world.business_a.schema_name, world.business_b.schema_name, new.schema_name]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'insights_cycle_on_messages' AND n.nspname = ANY(%s)",
            [schemas],
        )
        bodies = dict(cursor.fetchall())
    assert bodies == dict.fromkeys(schemas, body)
    assert body != ROW_BY_ROW_BODY.split("$$")[1]
