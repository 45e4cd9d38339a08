"""Database calls on the event loop's own thread (tenancy.loop_db, issue 9).

Websocket send groups are written in a greenlet on the server's event loop thread, their
psycopg waits handed to the loop. These tests run such calls against the real database: the
call runs on the loop's thread in its business's schema with Django's ORM, the loop keeps
serving while PostgreSQL works, calls beyond the slots wait for a free one, a slot keeps its
connection while busy and gives it back when idle, errors reach the caller and spoil nothing,
a caller that goes away does not stop a call half-way, what a call publishes goes out once
it returns, and a call's long Python lets the loop take turns in between.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from collab.models import Label
from config.sql import pipelined
from messaging import events, group_commit
from messaging import services as messaging_services
from messaging.models import Message
from messaging.sending import check_customer_send, do_send_messages
from tenancy import loop_db
from tenancy.db import run_in_schema
from tenancy.loop_db import deferred_on_loop, run_on_loop
from tenancy.models import Business
from tests.conftest import World
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect


def sleep_between_clocks(seconds: float) -> tuple[datetime, datetime]:
    """PostgreSQL's clock when the statement started and when its sleep ended."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp(), pg_sleep(%s), clock_timestamp()", [seconds])
        started, _slept, ended = cursor.fetchone()
    return started, ended


def session() -> tuple[int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_schema()")
        pid, schema = cursor.fetchone()
    return pid, schema


def label_exists(name: str) -> bool:
    return Label.objects.filter(name=name).exists()


@pytest.fixture
def label_name(live_db: World) -> Iterator[str]:
    """A label name for a call to write; the label is deleted afterwards (the data is committed
    and other tests list the business's labels)."""
    name = f"loop-db-{secrets.token_hex(4)}"
    yield name
    with schema_context(live_db.business_a.schema_name):
        Label.objects.filter(name=name).delete()


async def test_a_call_runs_on_the_loop_thread_in_its_schema_and_the_loop_serves_while_postgres_works(
    live_db: World,
) -> None:
    alpha = live_db.business_a.schema_name
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    def sleepy() -> tuple[int, str, int, bool]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.5), current_schema()")
            _slept, schema = cursor.fetchone()
        # The ORM, which refuses to run where an event loop runs, works here: the call's waits are the loop's.
        return threading.get_ident(), schema, Business.objects.count(), deferred_on_loop() is not None

    ticker = asyncio.ensure_future(tick())
    try:
        thread, schema, businesses, inside = await run_on_loop(alpha, sleepy)
    finally:
        ticker.cancel()
    assert thread == threading.get_ident()  # the loop's own thread, not a database thread
    assert schema == alpha and businesses >= 2 and inside
    assert deferred_on_loop() is None  # only inside a call
    # Blocking the loop for the sleep would have let the ticker run once at most.
    assert ticks >= 10, ticks


@pytest.mark.parametrize("slots", [1, 2])
async def test_calls_beyond_the_slots_wait_for_a_free_one(live_db: World, slots: int) -> None:
    alpha, beta = live_db.business_a.schema_name, live_db.business_b.schema_name
    with override_settings(PARLEY_LOOP_DB_SLOTS=slots):
        (_first_started, first_ended), (second_started, _second_ended) = await asyncio.gather(
            run_on_loop(alpha, sleep_between_clocks, seconds=1.0),
            run_on_loop(beta, sleep_between_clocks, seconds=0.0),
        )
    if slots == 1:
        assert second_started >= first_ended  # waited for the one slot
    else:
        assert second_started < first_ended  # ran while the first one's PostgreSQL slept


async def test_a_slot_keeps_its_connection_while_busy_and_gives_it_back_when_idle(live_db: World) -> None:
    alpha, beta = live_db.business_a.schema_name, live_db.business_b.schema_name
    with override_settings(PARLEY_LOOP_DB_SLOTS=1, PARLEY_LOOP_DB_KEEP_SECONDS=0.3):
        first = await run_on_loop(alpha, session)
        second = await run_on_loop(beta, session)
        assert second[0] == first[0]  # the same backend: kept, not given back and borrowed again
        assert (first[1], second[1]) == (alpha, beta)  # each call in its own schema all the same
        slots = loop_db._slots[id(asyncio.get_running_loop())]
        assert len(slots.free) == 1
        assert slots.free[0].wrapper.connection is not None
        await asyncio.sleep(0.8)
        assert slots.free[0].wrapper.connection is None  # idle: closed
        assert (await run_on_loop(alpha, session))[1] == alpha  # and borrowed again when needed


async def test_a_failing_call_raises_to_its_caller_and_the_next_call_works(live_db: World, label_name: str) -> None:
    alpha, name = live_db.business_a.schema_name, label_name

    def fails() -> None:
        with transaction.atomic():
            Label.objects.create(name=name)
            with connection.cursor() as cursor:
                cursor.execute("SELECT no_such_column FROM collab_label")

    with override_settings(PARLEY_LOOP_DB_SLOTS=1), pytest.raises(DatabaseError):
        await run_on_loop(alpha, fails)
    assert not await run_on_loop(alpha, label_exists, name=name)  # rolled back whole
    assert (await run_on_loop(alpha, session))[1] == alpha


async def test_a_call_whose_caller_is_cancelled_still_commits(live_db: World, label_name: str) -> None:
    alpha, name = live_db.business_a.schema_name, label_name

    def slow_write() -> None:
        with transaction.atomic():
            sleep_between_clocks(0.5)
            Label.objects.create(name=name)

    caller = asyncio.ensure_future(run_on_loop(alpha, slow_write))
    await asyncio.sleep(0.2)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(50):
        if await run_in_schema(alpha, label_exists, name=name):
            break
        await asyncio.sleep(0.1)
    assert await run_in_schema(alpha, label_exists, name=name)


def counting_turns() -> tuple[list[int], list[asyncio.Handle]]:
    """A callback that runs once in every turn of the loop and counts the turns."""
    loop = asyncio.get_running_loop()
    turns = [0]
    handle: list[asyncio.Handle] = []

    def turn() -> None:
        turns[0] += 1
        handle[0] = loop.call_soon(turn)

    handle.append(loop.call_soon(turn))
    return turns, handle  # cancel handle[0] to stop


async def test_a_call_starts_in_its_callers_step_and_answers_it_without_a_turn_of_its_own(live_db: World) -> None:
    """On a saturated loop every turn is a wait behind all other ready callbacks
    (docs/performance.md, session 38): a call that needs no round trip costs its caller no turn at all (asyncio.shield
    cost three: one to start the call, two to hand its result over)."""
    alpha = live_db.business_a.schema_name
    await run_on_loop(alpha, session)  # the slot's connection made and warm
    turns, ticker = counting_turns()
    try:
        await asyncio.sleep(0)
        before = turns[0]
        assert await run_on_loop(alpha, lambda: 7) == 7
        assert turns[0] == before
        failing = ValueError("raised by the call")

        def fails() -> None:
            raise failing

        with pytest.raises(ValueError) as raised:
            await run_on_loop(alpha, fails)
        assert raised.value is failing and turns[0] == before
    finally:
        ticker[0].cancel()


async def test_a_call_of_many_round_trips_returns_their_answers_in_order(live_db: World) -> None:
    """Calls' round trips interleaved on the loop: each call's answers come back to the
    statements that asked, in order."""
    alpha = live_db.business_a.schema_name

    def many(base: int) -> list[int]:
        answers = []
        with connection.cursor() as cursor:
            for offset in range(20):
                cursor.execute("SELECT %s::int FROM pg_sleep(0.001)", [base + offset])
                answers.append(cursor.fetchone()[0])
        return answers

    with override_settings(PARLEY_LOOP_DB_SLOTS=3):
        results = await asyncio.gather(*(run_on_loop(alpha, many, base=base) for base in (0, 100, 200)))
    assert results == [list(range(base, base + 20)) for base in (0, 100, 200)]


async def test_only_a_calls_waits_for_answers_are_handed_to_the_loop(
    live_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipelined statement is handed to libpq and sent without waiting, and an answer already
    read needs no wait: the call drives those itself. Handed to the loop as well, each cost two
    greenlet switches and a swap of the thread's Django connection there and back, for nothing
    (issue 9: 15 hand-offs a send group of one, where 3 are round trips)."""
    alpha = live_db.business_a.schema_name
    handed: list[int | None] = []
    real_wait = loop_db._wait_on_loop

    async def counted_wait(loop: asyncio.AbstractEventLoop, wait: Any) -> Any:
        handed.append(wait.state)
        return await real_wait(loop, wait)

    def pipelined_group() -> list[int]:
        with transaction.atomic(), pipelined(commit=True):
            cursors = [connection.cursor() for _ in range(6)]
            for number, cursor in enumerate(cursors):
                cursor.execute("SELECT %s::int", [number])
            return [cursor.fetchone()[0] for cursor in cursors]

    await run_on_loop(alpha, session)  # the slot's connection made, its search_path set
    monkeypatch.setattr(loop_db, "_wait_on_loop", counted_wait)
    assert await run_on_loop(alpha, pipelined_group) == list(range(6))
    # Six statements, six reads and the commit: the first read's round trip and the commit's.
    assert 1 <= len(handed) <= 3, handed


async def test_a_slots_session_plans_generically_and_its_send_groups_do_not_set_it_again(live_db: World) -> None:
    """A slot's connection serves send groups only: its session plans generically from the
    start, so a group sends no `SET LOCAL plan_cache_mode` of its own (a statement less per
    group); the pool's connections keep PostgreSQL's choice outside a group."""
    business = live_db.business_a
    customer = await adb(make_customer)()

    def send_group() -> tuple[str, list[str], int]:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            (mode,) = cursor.fetchone()
        with CaptureQueriesContext(connection) as captured:
            request = check_customer_send(customer=customer, body="Hallo", client_msg_id=secrets.token_hex(8))
            (outcome,) = do_send_messages(business=business, requests=[request])
        return mode, [query["sql"] for query in captured.captured_queries], outcome.message.pk

    mode, statements, message_id = await run_on_loop(business.schema_name, send_group)
    assert mode == "force_generic_plan"
    assert statements and not [sql for sql in statements if "plan_cache_mode" in sql], statements
    assert await run_in_schema(business.schema_name, lambda: Message.objects.filter(pk=message_id).exists())

    def pooled_mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            return str(cursor.fetchone()[0])

    assert await run_in_schema(business.schema_name, pooled_mode) == "auto"


async def test_a_call_cancelled_itself_finishes_blocking_rather_than_half_way(live_db: World, label_name: str) -> None:
    """The loop going away cancels the call's own task: the rest of the call then runs blocking
    the thread, as on a database thread, so its transaction commits (or rolls back) whole."""
    alpha, name = live_db.business_a.schema_name, label_name

    def slow_write() -> None:
        with transaction.atomic():
            sleep_between_clocks(0.5)
            Label.objects.create(name=name)

    call = asyncio.ensure_future(loop_db._call(alpha, slow_write, {}))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await run_in_schema(alpha, label_exists, name=name)  # committed before the task ended


async def test_a_call_cancelled_while_the_loop_has_its_turn_finishes_blocking(live_db: World, label_name: str) -> None:
    """Cancelled while it lets the loop in: the rest of the call runs without further turns and
    its transaction commits whole, as when cancelled in a wait."""
    alpha, name = live_db.business_a.schema_name, label_name
    turns_after_cancel: list[int] = []
    cancelled_at: list[int] = []
    turns, ticker = counting_turns()

    def slow_write() -> None:
        with transaction.atomic():
            Label.objects.create(name=name)
            deadline = time.perf_counter() + 0.3
            while time.perf_counter() < deadline:
                loop_db.let_the_loop_in()
            if cancelled_at:
                turns_after_cancel.append(turns[0] - cancelled_at[0])

    try:
        with override_settings(PARLEY_LOOP_DB_SLICE=0.002):
            call = asyncio.ensure_future(loop_db._call(alpha, slow_write, {}))
            await asyncio.sleep(0.1)
            call.cancel()
            cancelled_at.append(turns[0])
            with pytest.raises(asyncio.CancelledError):
                await call
    finally:
        ticker[0].cancel()
    assert await run_in_schema(alpha, label_exists, name=name)  # committed before the task ended
    assert turns_after_cancel and turns_after_cancel[0] <= 1  # no more turns once cancelled


async def test_what_a_call_publishes_goes_out_when_it_returns(live_db: World) -> None:
    alpha = live_db.business_a.schema_name
    published: list[str] = []

    async def publish() -> None:
        published.append("out")

    def call() -> list[Any]:
        events.run_from_sync(publish())
        return list(published)  # not yet: the loop is this call's

    seen_inside = await run_on_loop(alpha, call)
    await asyncio.sleep(0.05)
    assert seen_inside == [] and published == ["out"]


async def test_a_websocket_send_group_is_written_on_the_loop_thread(
    live_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    written_on: list[int] = []
    real_write = group_commit.write_live_batch

    def recording_write(**kwargs: Any) -> list[Any]:
        written_on.append(threading.get_ident())
        return real_write(**kwargs)

    monkeypatch.setattr(group_commit, "write_live_batch", recording_write)
    customer = await adb(make_customer)()
    ws, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    await ws.send_json_to({"type": "send", "body": "on the loop", "client_msg_id": "loop-1"})
    accepted = await receive_until(ws, "message.accepted")
    assert accepted["client_msg_id"] == "loop-1" and accepted["duplicate"] is False
    assert written_on == [threading.get_ident()]  # the server's loop runs on this test's thread
    # The send's assignment work (a new conversation in line) runs on after its ack: waited for
    # here, so it does not touch the database after the test has ended.
    await asyncio.gather(*messaging_services._background)
    await ws.disconnect()


def counting_hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often calls handed the loop a turn (`let_the_loop_in`), counted at the switch back."""
    handed = [0]
    real_switch = loop_db._switch

    def counted(g: Any, **kwargs: Any) -> Any:
        request = real_switch(g, **kwargs)
        if request is loop_db._TURN:
            handed[0] += 1
        return request

    monkeypatch.setattr(loop_db, "_switch", counted)
    return handed


@pytest.mark.parametrize("slice_seconds", [0.005, 10.0])
async def test_a_calls_long_python_lets_the_loop_take_turns_once_its_slice_is_used_up(
    live_db: World, label_name: str, slice_seconds: float
) -> None:
    """Between two round trips a call's Python holds the loop's thread: under overload a send
    group's took up to 96 ms, every socket of the process unread meanwhile (docs/performance.md,
    session 42). `let_the_loop_in` hands the loop a turn once PARLEY_LOOP_DB_SLICE is used up, and only then;
    meanwhile another call runs on its own slot, and the first goes on in its own schema,
    connection and transaction."""
    alpha, beta, name = live_db.business_a.schema_name, live_db.business_b.schema_name, label_name
    turns, ticker = counting_turns()
    others: list[asyncio.Future[tuple[int, str]]] = []
    loop = asyncio.get_running_loop()

    def spin_in_a_transaction() -> tuple[int, int, tuple[int, str], bool]:
        with transaction.atomic():
            Label.objects.create(name=name)
            before = session()
            # Started by the loop in the call's first turn, on the other slot.
            loop.call_soon(lambda: others.append(asyncio.ensure_future(run_on_loop(beta, session))))
            spun_from, deadline = turns[0], time.perf_counter() + 0.06
            while time.perf_counter() < deadline:
                loop_db.let_the_loop_in()
            turns_meanwhile = turns[0] - spun_from
            after = session()
            in_transaction = connection.in_atomic_block
        assert after == before
        return turns_meanwhile, before[0], after, in_transaction

    loop_db.let_the_loop_in()  # outside a call: nothing to hand, nothing happens
    try:
        with override_settings(PARLEY_LOOP_DB_SLICE=slice_seconds, PARLEY_LOOP_DB_SLOTS=2):
            await run_on_loop(alpha, session)  # both slots' connections made before the spin
            await run_on_loop(beta, session)
            turns_meanwhile, pid, (after_pid, after_schema), in_transaction = await run_on_loop(
                alpha, spin_in_a_transaction
            )
            other_pid, other_schema = await others[0]
    finally:
        ticker[0].cancel()
    assert after_schema == alpha and after_pid == pid and in_transaction
    assert other_schema == beta and other_pid != pid
    assert await run_in_schema(alpha, label_exists, name=name)  # committed whole
    if slice_seconds < 1:
        # ~12 slices of 5 ms in 60 ms of Python: a turn after each (a loaded machine: fewer).
        assert turns_meanwhile >= 4, turns_meanwhile
    else:
        assert turns_meanwhile == 0


@pytest.mark.parametrize("slice_seconds", [0.0, 10.0])
async def test_a_large_send_group_lets_the_loop_in_between_its_sends(
    live_db: World, monkeypatch: pytest.MonkeyPatch, slice_seconds: float
) -> None:
    """The send core asks for a turn before each send of a group and each event it makes: a
    group of hundreds (overload) lets the process's other sockets be read within a slice."""
    business = live_db.business_a
    customers = await adb(lambda: [make_customer() for _ in range(30)])()
    requests = [check_customer_send(customer=c, body=f"group {i}") for i, c in enumerate(customers)]
    handed = counting_hand_offs(monkeypatch)
    with override_settings(PARLEY_LOOP_DB_SLICE=slice_seconds):
        outcomes = await run_on_loop(business.schema_name, do_send_messages, business=business, requests=requests)
    assert len(outcomes) == 30 and all(not isinstance(o, Exception) for o in outcomes)
    stored = await run_in_schema(
        business.schema_name,
        lambda: set(Message.objects.filter(body__startswith="group ").values_list("body", flat=True)),
    )
    assert {f"group {i}" for i in range(30)} <= stored
    if slice_seconds == 0:
        assert handed[0] >= 60, handed  # before each send and each of their events
    else:
        assert handed[0] == 0
