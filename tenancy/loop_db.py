"""Database calls on the server's event loop thread, in a greenlet, instead of on a database thread.

A websocket send group written on a database thread (tenancy.db) has to win the GIL back from
the busy event loop after each of its round trips and for each slice of its Python: at 1,000
msgs/s a group of ~10 sends took 11.9 ms on its thread for 3.5 ms of that thread's CPU (issue 9,
docs/performance.md). `run_on_loop` runs the same synchronous code (the send core: Django's ORM
on psycopg's sync connection) in a greenlet on the loop's own thread. Whenever psycopg would wait for its
socket, the greenlet hands that wait to the loop (`add_reader`/`add_writer`) and the loop serves
other sockets until PostgreSQL answers; the group's Python then runs without a GIL hand-off.
SQLAlchemy's asyncio support is built the same way (greenlet_spawn / await_only).

Each call runs in a slot with a Django connection of its own (Django keeps one per thread, so
the slot's is put in place of the loop thread's own while its greenlet runs), opened directly
rather than borrowed from the process's pool (whose wait for a free connection would block the
loop): a slot keeps it from call to call (warm, with its prepared statements and search_path)
and closes it after PARLEY_LOOP_DB_KEEP_SECONDS without calls. A call sees
a copy of its caller's context (an active translation), as on a database thread. At most PARLEY_LOOP_DB_SLOTS calls run at once per
loop; more wait in order. Slots' connections are counted on top of the pool's (README's
connection sizing rule). They serve send groups only, so their sessions plan every prepared
statement generically (config.sql.GENERIC_PLANS_OPTION).

What code run here must not do: block on anything but psycopg's socket (that would stop the
loop; the send core asks Redis before, on the loop). Its Python between two waits holds the
loop's thread: long runs of it (a send group of hundreds) call `let_the_loop_in`, which lets
the loop take a turn once PARLEY_LOOP_DB_SLICE is used up. Events its commit publishes are handed to
the channel layer when the call returns, in commit order (`deferred`), not from inside it. Django
refuses database calls where an event loop is running (`SynchronousOnlyOperation`); the loop is
unset while the greenlet runs, since the greenlet's waits are the loop's.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import select
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import greenlet
import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created
from django.db.utils import load_backend
from psycopg.waiting import Ready, Wait

from config.sql import with_generic_plans
from config.tunables import tunable
from tenancy.db import _run

logger = logging.getLogger("parley.tenancy")


def loop_slots() -> int:
    return int(tunable("PARLEY_LOOP_DB_SLOTS", 2))


def loop_slice() -> float:
    return float(tunable("PARLEY_LOOP_DB_SLICE", 0.005))


def loop_keep_seconds() -> float:
    return float(tunable("PARLEY_LOOP_DB_KEEP_SECONDS", 60.0))


class _OnLoop(greenlet.greenlet):
    """A call running on the loop's thread: its psycopg waits go to `parent` (the loop)."""

    def __init__(self, run: Callable[[], Any], loop: asyncio.AbstractEventLoop, wrapper: Any) -> None:
        super().__init__(run)
        self.loop = loop
        self.wrapper = wrapper  # its slot's Django connection
        # Set when the loop is going away mid-call: its waits block this thread from then on.
        self.blocking = False
        # What the call's commits publish, handed to the layer when the call returns.
        self.deferred: list[Callable[[], object]] = []
        # When its current step began (perf_counter): how long it has held the loop's thread.
        self.step_started = 0.0


class _Turn:
    """What a greenlet hands the loop to let it take one turn (`let_the_loop_in`)."""


_TURN = _Turn()


@dataclass(eq=False)
class _Wait:
    """A wait a greenlet hands to the loop: psycopg's generator and the socket it waits on."""

    gen: Generator[Any, Any, Any]
    fileno: int
    # What the started generator waits for (None: not started yet), until it is sent an answer.
    state: int | None = None


def _diverting_wait(
    self: psycopg.Connection[Any], gen: Any, interval: float = 0.1, timeout: float | None = None
) -> Any:
    """psycopg's `Connection.wait`, handed to the loop inside a `run_on_loop` call once it has
    to wait. Driven here until then: most of a send group's calls never wait (a pipelined
    statement is handed to libpq and flushed, and a socket asked for writing is nearly always
    writable), and each one handed to the loop cost two greenlet switches and a swap of the
    thread's Django connection there and back — 15 hand-offs a group of one send where 3 are
    round trips (issue 9)."""
    current = greenlet.getcurrent()
    if isinstance(current, _OnLoop) and not current.blocking and timeout is None:
        fileno = self.pgconn.socket
        try:
            state = _while_writable(gen, fileno, next(gen))
        except StopIteration as done:
            return done.value
        except OSError as error:
            raise psycopg.OperationalError("connection socket closed") from error
        return current.parent.switch(_Wait(gen, fileno, state))
    return psycopg.Connection.wait(self, gen, interval, timeout)


def let_the_loop_in() -> None:
    """Inside a `run_on_loop` call that has held the loop's thread for PARLEY_LOOP_DB_SLICE
    seconds since its last wait: hand the loop one turn (every socket's frames read meanwhile,
    their refusals written, deliveries), then go on. Nothing anywhere else (a database thread,
    a shell, a test's synchronous call), nor before the slice is used up.

    Called between the sends of a group: a group's Python between two round trips runs in one
    step of the loop, and under overload, where groups gather ~200 sends, those steps took p99
    42–46 ms, max 96 ms (issue 9, docs/performance.md, session 42) — every socket of the process
    waited that long to be read, a refusal to be answered. The call's transaction stays open meanwhile; its
    locks are its own group's conversations, which no other writer of this process takes."""
    current = greenlet.getcurrent()
    if (
        isinstance(current, _OnLoop)
        and not current.blocking
        and time.perf_counter() - current.step_started >= loop_slice()
    ):
        current.parent.switch(_TURN)


def divert_waits(raw: Any) -> None:
    """Give a slot's psycopg connection the diverting wait (psycopg's own outside a call here)."""
    if isinstance(raw, psycopg.Connection) and "wait" not in vars(raw):
        raw.wait = _diverting_wait.__get__(raw)  # type: ignore[method-assign]


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Only a slot's own connection, which it opens inside a call: the pool's connections (views,
    # database threads) keep psycopg's wait untouched.
    current = greenlet.getcurrent()
    if isinstance(current, _OnLoop) and connection is current.wrapper:
        divert_waits(connection.connection)


connection_created.connect(_on_connection_created, dispatch_uid="parley.loop_db.divert_waits")


def deferred_on_loop() -> list[Callable[[], object]] | None:
    """Inside a `run_on_loop` call: the list its after-commit publishes go to (None elsewhere)."""
    current = greenlet.getcurrent()
    return current.deferred if isinstance(current, _OnLoop) else None


def _unpooled_wrapper() -> Any:
    """A Django connection of the default database that connects on its own, not through the
    process's pool: borrowing from the pool waits on a lock for a free connection (up to
    PARLEY_DB_POOL_TIMEOUT), which on the loop's thread would stop every socket of the process
    while views and database threads hold the pool's connections (a full test run, 2026-12-05:
    a 20 s PoolTimeout)."""
    settings_dict = dict(connections.settings[DEFAULT_DB_ALIAS])
    options = dict(settings_dict.get("OPTIONS") or {})
    options.pop("pool", None)
    # Its statements are all send groups': planned generically for the session's life, not set
    # again in each group's transaction (config.sql.GENERIC_PLANS_OPTION).
    settings_dict["OPTIONS"] = with_generic_plans(options)
    backend = load_backend(settings_dict["ENGINE"])
    return backend.DatabaseWrapper(settings_dict, DEFAULT_DB_ALIAS)


@dataclass(eq=False)
class _Slot:
    # Django keeps a connection per thread: each slot has a wrapper of its own, put in place
    # of the loop thread's own whenever its greenlet runs (`_switch`).
    wrapper: Any = field(default_factory=_unpooled_wrapper)
    release: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Slots:
    loop: asyncio.AbstractEventLoop
    free: list[_Slot] = field(default_factory=list)  # the last given back on top (warmest)
    count: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


# Per running loop (a process serves from one; tests run one per test, some beside a server
# loop of their own): a loop's slots and their connections live on its thread.
_slots: dict[int, _Slots] = {}


def _slots_here() -> _Slots:
    loop = asyncio.get_running_loop()
    slots = _slots.get(id(loop))
    if slots is None or slots.loop is not loop:
        for key, gone in list(_slots.items()):
            if gone.loop.is_closed():  # its free slots' connections closed
                del _slots[key]
                for slot in gone.free:
                    _release(slot)
        slots = _slots[id(loop)] = _Slots(loop)
    return slots


async def _take(slots: _Slots) -> _Slot:
    while not slots.free and slots.count >= loop_slots():
        waiter = slots.loop.create_future()
        slots.waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                _wake_next(slots)  # handed a slot it will not use: pass it on
            raise
    if slots.free:
        slot = slots.free.pop()
    else:
        slots.count += 1
        slot = _Slot()
    if slot.release is not None:
        slot.release.cancel()
        slot.release = None
    return slot


def _give_back(slots: _Slots, slot: _Slot) -> None:
    slots.free.append(slot)
    slot.release = slots.loop.call_later(loop_keep_seconds(), _release_idle, slots, slot)
    _wake_next(slots)


def _wake_next(slots: _Slots) -> None:
    while slots.waiting:
        waiter = slots.waiting.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _release_idle(slots: _Slots, slot: _Slot) -> None:
    slot.release = None
    if slot in slots.free:
        _release(slot)


def _release(slot: _Slot) -> None:
    """Close the slot's connection (psycopg's own blocking waits: not in a call)."""
    if slot.release is not None:
        slot.release.cancel()
        slot.release = None
    loop = asyncio.events._get_running_loop()
    # Django refuses to close where a loop runs: the loop is unset meanwhile.
    asyncio.events._set_running_loop(None)
    try:
        slot.wrapper.close()
    except Exception:  # a connection made on another thread (an old test loop's): left to the pool
        logger.debug("a loop slot's connection could not be given back", exc_info=True)
    finally:
        asyncio.events._set_running_loop(loop)


def _switch(g: _OnLoop, *, start: bool = False, value: Any = None, error: BaseException | None = None) -> Any:
    """Run the greenlet until it waits or returns, with its slot's connection as this thread's
    and the loop unset meanwhile (Django refuses database calls where a loop runs)."""
    asyncio.events._set_running_loop(None)
    # With no loop running, Django's connections are the thread's (asgiref's thread-critical
    # Local): the thread's own is put back after the switch.
    own = connections[DEFAULT_DB_ALIAS]
    connections[DEFAULT_DB_ALIAS] = g.wrapper
    g.step_started = time.perf_counter()
    try:
        if error is not None:
            return g.throw(error)
        return g.switch() if start else g.switch(value)
    finally:
        connections[DEFAULT_DB_ALIAS] = own
        asyncio.events._set_running_loop(g.loop)


async def _ready(loop: asyncio.AbstractEventLoop, fileno: int, state: int) -> int:
    future: asyncio.Future[None] = loop.create_future()
    ready = 0

    def wake(flag: int) -> None:
        nonlocal ready
        ready |= flag
        if not future.done():
            future.set_result(None)

    if state & Wait.R:
        loop.add_reader(fileno, wake, Ready.R)
    if state & Wait.W:
        loop.add_writer(fileno, wake, Ready.W)
    try:
        await future
    finally:
        if state & Wait.R:
            loop.remove_reader(fileno)
        if state & Wait.W:
            loop.remove_writer(fileno)
    return ready


def _poll(fileno: int, state: int, timeout_ms: int | None) -> int:
    """Which of what `state` waits for the socket is ready for (0: none within the timeout)."""
    poller = select.poll()
    poller.register(fileno, (select.POLLIN if state & Wait.R else 0) | (select.POLLOUT if state & Wait.W else 0))
    ready = 0
    for _fd, events in poller.poll(timeout_ms):
        # As psycopg's own poll wait: an error or hang-up wakes both directions.
        if events & ~select.POLLOUT:
            ready |= Ready.R
        if events & ~select.POLLIN:
            ready |= Ready.W
    return ready


def _while_writable(gen: Generator[Any, Any, Any], fileno: int, state: int) -> int:
    """Answer psycopg's generator at once while what it waits for is a writable socket (nearly
    always so: a poll costs less than a turn of the loop); what it waits for next. StopIteration
    when it is done."""
    while state & Wait.W and (ready := _poll(fileno, state, 0)):
        state = gen.send(ready)
    return state


async def _wait_on_loop(loop: asyncio.AbstractEventLoop, wait: _Wait) -> Any:
    """Drive psycopg's generator, waiting for its socket on the loop."""
    gen = wait.gen
    try:
        # Started by the greenlet (_diverting_wait), which found it waiting for `state`.
        state = wait.state if wait.state is not None else next(gen)
        while True:
            wait.state = state = _while_writable(gen, wait.fileno, state)
            ready = await _ready(loop, wait.fileno, state)
            wait.state = None
            state = gen.send(ready)
    except StopIteration as done:
        return done.value
    except OSError as error:
        raise psycopg.OperationalError("connection socket closed") from error


def _wait_blocking(wait: _Wait) -> Any:
    """The rest of a wait the loop was cancelled in, blocking this thread (the loop is going)."""
    gen, state = wait.gen, wait.state
    try:
        if state is None:
            state = next(gen)
        while True:
            state = gen.send(_poll(wait.fileno, state, None))
    except StopIteration as done:
        return done.value
    except OSError as error:
        raise psycopg.OperationalError("connection socket closed") from error


async def _drive(slot: _Slot, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    loop = asyncio.get_running_loop()
    g = _OnLoop(lambda: fn(*args), loop, slot.wrapper)
    # A copy of the caller's context (an active translation), as on a database thread; what the
    # call sets there stays there.
    g.gr_context = contextvars.copy_context()
    cancelled: asyncio.CancelledError | None = None
    try:
        request = _switch(g, start=True)
        while not g.dead:
            answer: Any = None
            error: BaseException | None = None
            if request is _TURN:
                if cancelled is None:
                    try:
                        await asyncio.sleep(0)
                    except asyncio.CancelledError as stop:
                        # The loop is going away: the call goes on blocking (as below).
                        cancelled, g.blocking = stop, True
                request = _switch(g)
                continue
            wait: _Wait = request
            try:
                if cancelled is None:
                    try:
                        answer = await _wait_on_loop(loop, wait)
                    except asyncio.CancelledError as stop:
                        # The loop is going away (callers are shielded from their own
                        # cancellation): the call finishes blocking this thread, as on a database
                        # thread — a send group commits or rolls back whole, never half.
                        cancelled, g.blocking = stop, True
                        answer = _wait_blocking(wait)
                else:
                    answer = _wait_blocking(wait)
            except Exception as failed:
                error = failed
            request = _switch(g, value=answer, error=error)
    finally:
        # What the call committed, published in commit order from the loop (also when it failed
        # after a commit).
        for publish in g.deferred:
            publish()
    if cancelled is not None:
        raise cancelled
    return request


async def _call(schema_name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    slots = _slots_here()
    slot = await _take(slots)
    try:
        return await _drive(slot, _run, (schema_name, fn, kwargs))
    finally:
        _give_back(slots, slot)


# Calls running on this loop (their tasks, kept until done: the loop holds tasks weakly).
_running: set[asyncio.Task[None]] = set()


async def run_on_loop[T](schema_name: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(**kwargs)` inside `schema_name`, on this event loop's thread (module docstring). The
    call goes on if the caller is cancelled (a socket that went away): a send group being
    written commits or rolls back whole, and what it committed is published.

    What `asyncio.shield` would do, in fewer turns of the loop: on a saturated loop each turn
    is a wait behind every other ready callback (docs/performance.md, session 38: a Redis round
    trip, one turn for its reply, took p50 19 ms at the goal load), and a send group is on every send's
    path. The call starts at once,
    within the caller's own step (an eager task: no turn to start), and hands its result to the
    caller itself when it ends (one turn to wake the caller, where shield's callback took two)."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    async def call() -> None:
        try:
            result = await _call(schema_name, fn, kwargs)
        except asyncio.CancelledError:
            outcome.cancel()  # the loop is going away (the call finished blocking: _drive)
            raise
        except BaseException as error:
            if not outcome.done():  # else its caller was cancelled: nobody to tell, as shield
                outcome.set_exception(error)
            return
        if not outcome.done():
            outcome.set_result(result)

    task = asyncio.Task(call(), loop=loop, eager_start=True)
    if not task.done():
        _running.add(task)
        task.add_done_callback(_running.discard)
    return await outcome
