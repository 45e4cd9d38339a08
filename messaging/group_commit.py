"""Group commit: concurrent sends into one business, gathered into one transaction.

Services stay synchronous (consumers call them from a pool of worker threads). A thread that
sends queues its checked request under its business's schema. If no thread is writing for that
schema it becomes the leader: it takes what is queued (up to PARLEY_SEND_BATCH_MAX), writes it
with `do_send_messages` in one transaction, hands every waiting caller its own outcome, and
repeats until its own request is done; then it passes the lead to the next queued caller (so
no caller keeps writing for others forever). Outcomes are handed out only after the commit (the
publish is queued by then; see events.publish_soon), so a sender's ack always follows durable
events.

Websocket sends use `LiveGatherer` instead: the same queue and bounds, kept on the server's event
loop, so a waiting send holds no database thread (with threads as waiters, a pool of 8 gathered
at most 8 sends and every other socket's database work queued behind them). One task per schema
takes what is queued and writes it (author rate limits, one Redis round trip for the batch,
then `do_send_messages`) in a greenlet on the event loop's own thread (tenancy.loop_db: its
round trips are the loop's waits, and its Python needs no GIL hand-off from the loop), and
answers each sender once the batch's events are handed to the channel layer.

Bounded: a request that would find more than PARLEY_SEND_QUEUE_LIMIT requests ahead of it, or
would wait longer than PARLEY_SEND_MAX_WAIT seconds (estimated from recent batches, or found
out while still queued), is refused at once with `overloaded` and `retry_after` — never
accepted and dropped: a refused request was never taken into a batch, so nothing of it exists.

If a batch fails on a database error, its requests are retried one by one, so one bad request
cannot fail the others and each caller gets its own outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from django.db import connection
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from config.tunables import tunable
from messaging import events, stages
from messaging.errors import MessagingError, MessagingErrorCode
from messaging.receipts import Mark, marks_write
from messaging.send_limits import Verdict, live_send_tokens, prefetched_tokens, rate_limited, send_take_many
from messaging.sending import SendRequest, SendResult, do_send_messages, worded_in
from tenancy.db import run_in_schema
from tenancy.loop_db import run_on_loop
from tenancy.models import Business

logger = logging.getLogger("parley.messaging")

Outcome = SendResult | BaseException


def queue_limit() -> int:
    return int(tunable("PARLEY_SEND_QUEUE_LIMIT", 2000))


def batch_max() -> int:
    return int(tunable("PARLEY_SEND_BATCH_MAX", 256))


def max_wait() -> float:
    return float(tunable("PARLEY_SEND_MAX_WAIT", 0.5))


def overloaded(retry_after: float) -> MessagingError:
    return MessagingError(
        MessagingErrorCode.OVERLOADED,
        _("Too many messages are being sent to this business right now. Please try again in a moment."),
        retry_after=round(max(retry_after, 0.05), 3),
    )


@dataclass(eq=False)
class _Waiter:
    request: SendRequest
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    lead: bool = False  # handed the lead by the previous leader

    def result(self) -> SendResult:
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome


@dataclass
class _Schema:
    queue: deque[_Waiter] = field(default_factory=deque)
    leading: bool = False
    # Recent seconds per batch write (exponentially weighted): how long the queue takes to drain.
    batch_seconds: float = 0.0


def write_batch(business: Business, requests: Sequence[SendRequest]) -> list[Outcome]:
    """One transaction for the batch; on a database error, one transaction per request, so each
    caller gets its own outcome (a MessagingError is always per request already)."""
    try:
        return list(do_send_messages(business=business, requests=requests))
    except Exception as error:
        if len(requests) == 1:
            return [error]
        logger.warning("a batch of %d sends failed (%r); retrying them one by one", len(requests), error)
    outcomes: list[Outcome] = []
    for request in requests:
        try:
            outcomes += do_send_messages(business=business, requests=[request])
        except Exception as error:
            outcomes.append(error)
    return outcomes


class SendGatherer:
    """The per-process gatherer: one queue and at most one writing thread per schema."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[str, _Schema] = {}
        self._batches: list[int] = []

    def reset(self) -> None:
        """Forget the measured batch costs (tests that stall a writer on purpose)."""
        with self._lock:
            for state in self._schemas.values():
                state.batch_seconds = 0.0

    def queued(self, schema_name: str) -> int:
        with self._lock:
            state = self._schemas.get(schema_name)
            return len(state.queue) if state else 0

    def writing(self, schema_name: str) -> bool:
        with self._lock:
            state = self._schemas.get(schema_name)
            return bool(state and state.leading)

    # Figures for bench/send_core.py.
    def stats_reset(self) -> None:
        with self._lock:
            self._batches = []

    def stats_batches(self) -> list[int]:
        with self._lock:
            return list(self._batches)

    def send(self, *, business: Business, request: SendRequest) -> SendResult:
        schema_name = business.schema_name
        waiter = _Waiter(request)
        cap, limit, wait_limit = batch_max(), queue_limit(), max_wait()
        with self._lock:
            state = self._schemas.setdefault(schema_name, _Schema())
            ahead = len(state.queue)
            # Full batches queued before this request's, plus the one being written, × their cost.
            # With nobody queued the wait is at most the batch in flight: never refused by estimate.
            estimate = (ahead // cap + 1) * state.batch_seconds if ahead else 0.0
            if ahead >= limit or estimate > wait_limit:
                raise overloaded(estimate or wait_limit)
            state.queue.append(waiter)
            lead = not state.leading
            state.leading = True
        if not lead:
            lead = self._wait(schema_name, state, waiter, wait_limit)
        if lead:
            self._lead(business, state, waiter, cap)
        return waiter.result()

    def _wait(self, schema_name: str, state: _Schema, waiter: _Waiter, wait_limit: float) -> bool:
        """Wait for the outcome (False) or for the lead (True); refuse if still queued too long."""
        if waiter.done.wait(wait_limit):
            return waiter.lead
        with self._lock:
            if waiter.lead:
                return True
            if waiter in state.queue:
                # Never taken into a batch, so nothing of it is written: refusing loses nothing.
                state.queue.remove(waiter)
                raise overloaded(state.batch_seconds or wait_limit)
        # Taken into a batch that is being written: its outcome comes with the commit.
        waiter.done.wait()
        return waiter.lead

    def _lead(self, business: Business, state: _Schema, own: _Waiter, cap: int) -> None:
        try:
            while own.outcome is None:
                with self._lock:
                    batch = [state.queue.popleft() for _ in range(min(cap, len(state.queue)))]
                    self._batches.append(len(batch))
                if not batch:  # cannot happen: `own` is queued until a batch takes it
                    break
                started = time.monotonic()
                outcomes = self._write(business, [w.request for w in batch])
                elapsed = time.monotonic() - started
                with self._lock:
                    state.batch_seconds = (
                        elapsed if not state.batch_seconds else 0.7 * state.batch_seconds + 0.3 * elapsed
                    )
                for waiter, outcome in zip(batch, outcomes, strict=True):
                    waiter.outcome = outcome
                    if waiter is not own:
                        waiter.done.set()
        finally:
            with self._lock:
                if own.outcome is None and own in state.queue:
                    state.queue.remove(own)
                if state.queue:
                    successor = state.queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    state.leading = False
            if own.outcome is None:  # the leader itself failed (e.g. interrupted): say so
                own.outcome = MessagingError(
                    MessagingErrorCode.SERVER_ERROR, _("Something went wrong. Please try again.")
                )

    def _write(self, business: Business, requests: list[SendRequest]) -> list[Outcome]:
        if getattr(connection, "schema_name", None) == business.schema_name:
            return write_batch(business, requests)
        with schema_context(business.schema_name):
            return write_batch(business, requests)


gatherer = SendGatherer()


def send_message(*, business: Business, request: SendRequest) -> SendResult:
    """Write one checked send: gathered with concurrent sends to the same business, or on its
    own inside a caller's transaction (whose commit is the caller's, so it cannot be shared)."""
    if connection.in_atomic_block:
        outcome = do_send_messages(business=business, requests=[request])[0]
        if isinstance(outcome, MessagingError):
            raise outcome
        return outcome
    return gatherer.send(business=business, request=request)


# --- websocket sends: gathered on the event loop -------------------------------------------------


def server_error() -> MessagingError:
    return MessagingError(MessagingErrorCode.SERVER_ERROR, _("Something went wrong. Please try again."))


def write_live_batch(
    *,
    business: Business,
    requests: Sequence[SendRequest],
    limit_keys: Sequence[str],
    verdicts: Sequence[Verdict] | None = None,
    chains: Sequence[object | None] | None = None,
) -> list[Outcome]:
    """On the event loop's thread (tenancy.loop_db), in the business's schema: write the sends
    their authors' limits allow. `verdicts`: the send tokens of the keyed sends, taken on the
    event loop (`live_send_tokens`); None takes them here (one Redis round trip for the batch,
    or the database cache's window). An empty key is not limited. `chains`: each send's socket
    (`hold_behind_refusals`), None: no order between them."""
    outcomes: list[Outcome | None] = [None] * len(requests)
    limited = [index for index, key in enumerate(limit_keys) if key]
    if limited:
        if verdicts is None:
            try:
                verdicts = send_take_many(
                    schema_name=business.schema_name, author_keys=[limit_keys[i] for i in limited]
                )
            except Exception:  # Redis unreachable: refuse (nothing written), the client retries
                logger.exception("send limits unavailable")
                return [server_error() for _request in requests]
        for index, verdict in zip(limited, verdicts, strict=True):
            if not verdict.allowed:
                # In its sender's language: the group runs in the context of whichever socket's
                # send started its writer.
                with worded_in(requests[index].language):
                    outcomes[index] = rate_limited(verdict.retry_after)
        if chains is not None:
            hold_behind_refusals(outcomes, chains)
    allowed = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if allowed:
        for index, outcome in zip(allowed, write_batch(business, [requests[i] for i in allowed]), strict=True):
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


@dataclass(eq=False)
class _Queued:
    request: SendRequest
    limit_key: str
    future: asyncio.Future[SendResult]
    taken: bool = False  # in a batch being written: its outcome comes with the commit
    trace: stages.Trace | None = None  # bench/inbox_load.py --stages
    # Its socket's rights check, still running when it was queued (`rights_pending`).
    rights: asyncio.Future[bool] | None = None
    # Its author's send token, asked for when it was queued (send_limits.PrefetchedTokens).
    verdict: asyncio.Future[Verdict] | None = None
    # Its socket and its place among the socket's sends (`ordered_send`), or None.
    order: SendOrder | None = None
    seq: int = 0


# An admitted send still untaken after this many times PARLEY_SEND_MAX_WAIT is refused after all:
# the writers stalled (the database, a starved process), which admission cannot foresee.
STALL_FACTOR = 4.0


class Admission:
    """A place in a business's send queue held from a send frame's arrival until its send is
    queued (`take`) or given up (`release`); either happens once."""

    __slots__ = ("held", "schema_name", "state")

    def __init__(self, schema_name: str, state: _LiveSchema) -> None:
        self.schema_name, self.state, self.held = schema_name, state, True

    def take(self, state: _LiveSchema) -> bool:
        """The send is being queued now (True), if this admission is for that queue."""
        if not self.held or state is not self.state:
            return False
        self.release()
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.state.reserved = max(0, self.state.reserved - 1)


_admission: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("parley_send_admission", default=None)
_rights: contextvars.ContextVar[asyncio.Future[bool] | None] = contextvars.ContextVar(
    "parley_send_rights", default=None
)


class SendOrder(Protocol):
    """A socket's sends in the order they arrived (`seq`, growing). A send refused for load or
    rate (its refusal carries `retry_after`: the client sends it again) holds back every later
    send of its socket until it comes back: stored ahead of it, a later message would read out
    of the order written. The socket (consumers.StreamConsumer) keeps that debt; the gatherer
    tells it of the refusals it makes and asks it before taking or writing a send, because a
    socket's sends are pipelined — its next send is queued while the one before waits for its
    group — so a refusal can meet later sends of its socket already queued or in the same group."""

    def held_back(self, seq: int) -> MessagingError | None:
        """The refusal a send `seq` hears because an earlier send of the socket is owed; None: none."""
        ...

    def refused(self, seq: int, client_msg_id: str, error: MessagingError) -> None:
        """Send `seq` was refused with `error` (retryable): the socket owes it."""
        ...


def _retryable(outcome: object) -> TypeGuard[MessagingError]:
    """A refusal for load or rate: the client sends it again after `retry_after`."""
    return isinstance(outcome, MessagingError) and outcome.retry_after is not None


def _same_refusal(error: MessagingError) -> MessagingError:
    """What a send held back behind a refused one hears: the same refusal (it goes again after it)."""
    return MessagingError(error.code, error.message, retry_after=error.retry_after)


def hold_behind_refusals(outcomes: list[Any], chains: Sequence[object | None]) -> None:
    """In place, for one group in order: a send whose socket (`chains`, None: not ordered) had an
    earlier send of this group refused for load or rate is refused the same, not written in the
    same transaction ahead of it (the refused one comes back later)."""
    first: dict[int, MessagingError] = {}
    for index, chain in enumerate(chains):
        if chain is None:
            continue
        refusal = first.get(id(chain))
        outcome = outcomes[index]
        if refusal is not None:
            if outcome is None:
                outcomes[index] = _same_refusal(refusal)
        elif _retryable(outcome):
            first[id(chain)] = outcome


class RightsLost(Exception):
    """A send whose socket's rights did not hold (`rights_pending`): it was not written, and its
    socket is being closed with the reason."""


@contextmanager
def rights_pending(rights: asyncio.Future[bool]) -> Iterator[None]:
    """Run a send frame's handler while its socket's rights are still being read (True: they
    hold): the send is validated and queued meanwhile, and its group's writer waits for the answer
    before writing it — written only if they hold, else refused with `RightsLost`. The read went
    out after the frame arrived, so the send is still written on rights at least as new as
    itself; it no longer waits for that Redis round trip before joining the queue (issue 9)."""
    token = _rights.set(rights)
    try:
        yield
    finally:
        _rights.reset(token)


def _rights_outcome(item: _Queued) -> Outcome | None:
    """None: write it (no pending check, or its rights hold); else its refusal. The check is done."""
    rights = item.rights
    if rights is None:
        return None
    if rights.cancelled():
        return RightsLost()
    if rights.exception() is not None:  # the rights store is unreachable: nothing written, retry
        return server_error()
    return None if rights.result() else RightsLost()


_order: contextvars.ContextVar[tuple[SendOrder, int, Callable[[], None] | None] | None] = contextvars.ContextVar(
    "parley_send_order", default=None
)


@contextmanager
def ordered_send(order: SendOrder, seq: int, on_queued: Callable[[], None] | None = None) -> Iterator[None]:
    """Run a send frame's handler as send `seq` of its socket (`SendOrder`); `on_queued` is
    called once the send is in its business's queue (the socket's worker may then take its next
    frame: the send's place in the queue keeps its order)."""
    token = _order.set((order, seq, on_queued))
    try:
        yield
    finally:
        _order.reset(token)


def send_seq_handled() -> int | None:
    """The place among its socket's sends of the send being handled (`ordered_send`), or None."""
    ordered = _order.get()
    return ordered[1] if ordered is not None else None


@contextmanager
def admitted(admission: Admission | None) -> Iterator[None]:
    """Run a send frame's handler with its admission: `LiveGatherer.send` takes the place held
    for it instead of deciding again; a place the handler never took is released after."""
    token = _admission.set(admission)
    try:
        yield
    finally:
        _admission.reset(token)
        if admission is not None:
            admission.release()


def live_writers() -> int:
    return max(1, int(tunable("PARLEY_SEND_WRITERS", 1)))


@dataclass
class _LiveSchema:
    queue: deque[_Queued] = field(default_factory=deque)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    batch_seconds: float = 0.0
    # Sends admitted when their frame arrived (`LiveGatherer.admit`) and not queued yet (their
    # socket's worker is still checking rights or validating): counted as queued by admission.
    reserved: int = 0
    # When each batch being written started (one per writing task).
    writing: dict[asyncio.Task[None], float] = field(default_factory=dict)


class LiveGatherer:
    """Per event loop: websocket sends queued per schema, written by up to PARLEY_SEND_WRITERS
    tasks per schema (default 1). With more than one, the next group's locks and reads overlap
    the previous one's tail, and all still take the stream counter in commit order; with a
    server process per core the processes' writers overlap already, and each more writer is one
    more transaction waiting for the counter's lock (settings.PARLEY_SEND_WRITERS: measured)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._schemas: dict[str, _LiveSchema] = {}
        self._batches: list[int] = []

    def _state(self, schema_name: str) -> _LiveSchema:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new server loop (tests run one per test)
            self._loop, self._schemas = loop, {}
        state = self._schemas.get(schema_name)
        if state is None:  # not setdefault: that builds a state (three containers) on every call
            state = self._schemas[schema_name] = _LiveSchema()
        return state

    def queued(self, schema_name: str) -> int:
        state = self._schemas.get(schema_name)
        return len(state.queue) if state else 0

    def refusal(self, schema_name: str) -> MessagingError | None:
        """`overloaded` if a send to this business queued now would wait longer than
        PARLEY_SEND_MAX_WAIT (or find the queue full); None otherwise. Consumers ask when a send
        frame arrives, so an excess send is refused within the event loop's turn, before it
        waits for its socket's worker, its rights check or its validation."""
        state = self._state(schema_name)
        cap, limit, wait_limit = batch_max(), queue_limit(), max_wait()
        ahead = len(state.queue) + state.reserved
        # A writer free and nobody queued: taken at once. Otherwise what is left of the batch
        # that finishes first, then the full batches queued ahead: the wait before its own batch
        # starts. Its own batch's time is not counted: a batch of one takes about as long as a
        # full one, so when a starved process's batches take longer than the limit, counting it
        # refused every send while the writers were busy, the next batches held one or two
        # sends, and throughput collapsed to writers / batch time (issue 9: 36 of 400 msgs/s
        # persisted, the rest going round refuse–retry).
        estimate = 0.0
        if ahead or len(state.writing) >= live_writers():
            estimate = (ahead // cap) * state.batch_seconds
            if state.writing:
                now = time.monotonic()
                estimate += min(max(0.0, state.batch_seconds - (now - since)) for since in state.writing.values())
        if ahead >= limit or estimate > wait_limit:
            return overloaded(estimate + state.batch_seconds or wait_limit)
        return None

    def admit(self, schema_name: str) -> Admission | MessagingError:
        """Decide a send when its frame arrives, from this process's state only: `overloaded`
        (`refusal`), or a place held for it until its socket's worker queues it (`send` within
        `admitted(...)`) or lets it go (`Admission.release`: refused by a check meanwhile, or
        the socket closed). Held places count as queued, so a burst of frames arriving while
        earlier ones are still being checked is not all admitted against the same empty queue."""
        refused = self.refusal(schema_name)
        if refused is not None:
            return refused
        state = self._state(schema_name)
        state.reserved += 1
        return Admission(schema_name, state)

    async def send(self, *, business: Business, request: SendRequest, limit_key: str = "") -> SendResult:
        """Queue the send and wait for its outcome. A send admitted when its frame arrived
        (`admit`, then `admitted` around the handler) is not asked again: the refusal was decided
        then, within the event loop's turn, and an admitted send is written — refused later only
        if it is still untaken after STALL_FACTOR × PARLEY_SEND_MAX_WAIT (the writers stalled,
        not load: admission bounds what load queues). Otherwise refused at once (`overloaded`)
        when the queue is full or would take longer than PARLEY_SEND_MAX_WAIT, and refused when
        still queued (never written) after that long."""
        state = self._state(business.schema_name)
        wait_limit = max_wait()
        admission = _admission.get()
        if admission is not None and admission.take(state):
            wait_limit *= STALL_FACTOR
        else:
            refused = self.refusal(business.schema_name)
            if refused is not None:
                raise refused
        ordered = _order.get()
        if ordered is not None:
            held = ordered[0].held_back(ordered[1])
            if held is not None:  # an earlier send of its socket was refused meanwhile
                raise held
        item = _Queued(request, limit_key, asyncio.get_running_loop().create_future(), rights=_rights.get())
        if ordered is not None:
            item.order, item.seq = ordered[0], ordered[1]
        if limit_key:
            item.verdict = prefetched_tokens.ask(schema_name=business.schema_name, author_key=limit_key)
        if stages.ENABLED:
            stages.mark("queued")
            item.trace = stages.current()
        state.queue.append(item)
        # A task that found the queue empty is done at once (no await between its check and its
        # end), so a send queued after it is never left without a writer.
        if sum(not task.done() for task in state.tasks) < live_writers():
            task = asyncio.ensure_future(self._drain(business, state))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        if ordered is not None and ordered[2] is not None:
            ordered[2]()  # in the queue: its socket's worker may take the next frame
        # The outcome is awaited directly (a timer refuses the send if it is still untaken by
        # then): `asyncio.wait` cost two more turns of a busy loop before the sender's ack.
        timer = asyncio.get_running_loop().call_later(wait_limit, _expire, state, item, wait_limit)
        try:
            return await item.future
        except asyncio.CancelledError:
            # The socket went away (its task cancelled, and the future with it): a send never
            # taken into a batch is dropped, unwritten; one taken is written all the same.
            if not item.taken and item in state.queue:
                state.queue.remove(item)
            raise
        finally:
            timer.cancel()

    async def _drain(self, business: Business, state: _LiveSchema) -> None:
        cap = batch_max()
        me = asyncio.current_task()
        assert me is not None
        while state.queue:
            batch = [state.queue.popleft() for _ in range(min(cap, len(state.queue)))]
            self._batches.append(len(batch))
            for item in batch:
                item.taken = True
                if item.trace is not None:
                    stages.mark_on(item.trace, "taken", size=len(batch))
            started = state.writing[me] = time.monotonic()
            outcomes: list[Outcome]
            limit_keys = [item.limit_key for item in batch]
            try:
                try:
                    verdicts = await _batch_verdicts(business.schema_name, batch)
                except Exception:  # Redis unreachable: refuse (nothing written), the clients retry
                    logger.exception("send limits unavailable")
                    outcomes = [server_error() for _item in batch]
                else:
                    if stages.ENABLED:
                        for item in batch:
                            stages.mark_on(item.trace, "tokens")
                    outcomes = await _write_where_rights_hold(business, batch, limit_keys, verdicts)
            except Exception as error:
                logger.exception("a batch of %d websocket sends failed", len(batch))
                outcomes = [error] * len(batch)
            except asyncio.CancelledError:
                # The loop is shutting down; the thread may still commit the batch: a retry of
                # any of these sends gets `duplicate: true` or writes it.
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(server_error())
                raise
            finally:
                state.writing.pop(me, None)
            if stages.ENABLED:
                for item in batch:
                    stages.mark_on(item.trace, "written")
            elapsed = time.monotonic() - started
            state.batch_seconds = elapsed if not state.batch_seconds else 0.7 * state.batch_seconds + 0.3 * elapsed
            _owe_refusals(state, batch, outcomes)
            # The batch's events were handed to the layer before the trip returned: its senders
            # are answered once they are out, while the next batch is already being written.
            _answer_when_published(batch, outcomes, events.commit_publishing(business.schema_name))

    # Figures for bench/send_core.py.
    def stats_reset(self) -> None:
        self._batches = []

    def stats_batches(self) -> list[int]:
        return list(self._batches)


async def _batch_verdicts(schema_name: str, batch: list[_Queued]) -> list[Verdict] | None:
    """The send tokens of the batch's keyed sends, in order: asked for when each was queued (in
    by now, mostly); None without Redis (`write_live_batch` takes them from the database cache)."""
    keyed = [item for item in batch if item.limit_key]
    if any(item.verdict is None for item in keyed):
        return await live_send_tokens.take_many(schema_name=schema_name, author_keys=[item.limit_key for item in keyed])
    return list(await asyncio.gather(*(item.verdict for item in keyed if item.verdict is not None)))


async def _write_where_rights_hold(
    business: Business, batch: list[_Queued], limit_keys: list[str], verdicts: Sequence[Verdict] | None
) -> list[Outcome]:
    """Write the batch's sends whose sockets' rights hold, once every pending check is in
    (their reads went out when the sends arrived, on the connection their tokens then took:
    answered by now, or within a turn of the loop; a socket whose versions moved — after a revocation, rarely —
    is checked in full on a database thread first, and the group waits for it); the others are
    refused and nothing of them is written."""
    pending = [item.rights for item in batch if item.rights is not None and not item.rights.done()]
    if pending:
        await asyncio.wait(pending)
    outcomes = [_rights_outcome(item) or _held_outcome(item) for item in batch]
    written = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if written:
        # The verdicts are the keyed sends', in order: passed on for the sends still written.
        keyed = [index for index, key in enumerate(limit_keys) if key]
        verdict_of = dict(zip(keyed, verdicts, strict=True)) if verdicts is not None else {}
        # On the loop's own thread (tenancy.loop_db): no GIL hand-off between its round trips.
        results = await run_on_loop(
            business.schema_name,
            write_live_batch,
            business=business,
            requests=[batch[i].request for i in written],
            limit_keys=[limit_keys[i] for i in written],
            verdicts=None if verdicts is None else [verdict_of[i] for i in written if limit_keys[i]],
            chains=[batch[i].order for i in written],
        )
        for index, result in zip(written, results, strict=True):
            outcomes[index] = result
    return [outcome for outcome in outcomes if outcome is not None]


def _held_outcome(item: _Queued) -> MessagingError | None:
    """Refused if an earlier send of its socket was refused since it was queued (`SendOrder`)."""
    return item.order.held_back(item.seq) if item.order is not None else None


def _owe_refusals(state: _LiveSchema, batch: list[_Queued], outcomes: Sequence[Outcome]) -> None:
    """Each send of the group refused for load or rate is owed by its socket, and that socket's
    later sends still queued are refused now, the same way, before a writer takes one of them:
    written, they would be stored ahead of it. (Later sends of the same group were refused with
    it: `hold_behind_refusals`.)"""
    refused: dict[int, tuple[int, MessagingError]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.order is not None and _retryable(outcome):
            item.order.refused(item.seq, item.request.client_msg_id, outcome)
            refused.setdefault(id(item.order), (item.seq, outcome))
    if refused:
        _refuse_queued_behind(state, refused)


def _refuse_queued_behind(state: _LiveSchema, refused: dict[int, tuple[int, MessagingError]]) -> None:
    """Refuse the queued sends that came after a refused one of their socket (by id(order): its
    seq and refusal)."""
    behind = [
        item
        for item in state.queue
        if item.order is not None and id(item.order) in refused and item.seq > refused[id(item.order)][0]
    ]
    for item in behind:
        state.queue.remove(item)
        if not item.future.done():
            item.future.set_exception(_same_refusal(refused[id(item.order)][1]))


def _expire(state: _LiveSchema, item: _Queued, wait_limit: float) -> None:
    """Still queued after the wait limit: never taken into a batch, so nothing of it is written:
    refused, with its socket's later sends still queued. (Taken: its outcome comes with the commit.)"""
    if item.taken or item.future.done() or item not in state.queue:
        return
    state.queue.remove(item)
    refusal = overloaded(state.batch_seconds or wait_limit)
    item.future.set_exception(refusal)
    if item.order is not None:
        item.order.refused(item.seq, item.request.client_msg_id, refusal)
        _refuse_queued_behind(state, {id(item.order): (item.seq, refusal)})


def _answer_when_published(
    batch: list[_Queued], outcomes: list[Outcome], published: asyncio.Future[Any] | None
) -> None:
    """Each sender's outcome, after its events are published (a sender's `message.accepted`
    follows its `message.created`); a failed publish delays nobody (clients catch up), one that
    takes longer than PUBLISH_TIMEOUT_SECONDS neither. A callback on the publish, not a task
    waiting for it: on a busy loop every task start and wake-up is a turn of the loop more
    between the commit and the sender's ack."""
    if published is None or published.done():
        _answer(batch, outcomes)
        return
    timer = asyncio.get_running_loop().call_later(events.PUBLISH_TIMEOUT_SECONDS, _answer, batch, outcomes)

    def answer(_published: asyncio.Future[Any]) -> None:
        timer.cancel()
        _answer(batch, outcomes)

    published.add_done_callback(answer)


def _answer(batch: list[_Queued], outcomes: list[Outcome]) -> None:
    if stages.ENABLED:
        for item in batch:
            stages.mark_on(item.trace, "published")
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.future.done():
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)


live_gatherer = LiveGatherer()


# --- acks: every socket's, gathered per business and written in one trip -------------------------

# An ack waits this long for others to join its group: receipts are not latency-critical (a tick
# on the other side), and a group costs about the same for 2 acks as for 20 (its round trips and
# locks). 0.05 s made ~20 groups a second per process of ~2.5 acks each under the inbox load of
# issue 9 (500 msgs/s, 50 agents acking): the ack writer was ~9% of the server's CPU. At 0.2 s
# the server's CPU fell by 2-3% in alternating runs.
ACK_GATHER_SECONDS = 0.2
ACK_BATCH_MAX = 500


@dataclass(eq=False)
class _QueuedAck:
    mark: Mark
    future: asyncio.Future[int | MessagingError]


@dataclass
class _AckSchema:
    queue: list[_QueuedAck] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def write_marks(*, business: Business, marks: Sequence[Mark]) -> list[int | MessagingError]:
    """On a database thread: the group in one transaction; if that fails on a database error,
    ack by ack, so one bad ack cannot fail the others."""
    try:
        return marks_write(business=business, marks=marks)
    except Exception as error:
        if len(marks) == 1:
            raise
        logger.warning("a group of %d acks failed (%r); writing them one by one", len(marks), error)
    outcomes: list[int | MessagingError] = []
    for mark in marks:
        try:
            outcomes += marks_write(business=business, marks=[mark])
        except Exception:
            logger.exception("an ack failed")
            outcomes.append(server_error())
    return outcomes


class AckGatherer:
    """Per event loop: the acks of every socket of the process, queued per business and written
    by one task per business, one database trip per group (messaging.receipts). A socket's
    own acks are already merged per conversation (consumers.StreamConsumer.queue_ack)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._schemas: dict[str, _AckSchema] = {}
        self._batches: list[int] = []

    async def mark(self, *, business: Business, marks: Sequence[Mark]) -> list[int | MessagingError]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new server loop (tests run one per test)
            self._loop, self._schemas = loop, {}
        state = self._schemas.get(business.schema_name)
        if state is None:
            state = self._schemas[business.schema_name] = _AckSchema()
        items = [_QueuedAck(mark, loop.create_future()) for mark in marks]
        state.queue += items
        if state.task is None or state.task.done():
            state.task = asyncio.ensure_future(self._drain(business, state))
        # Shielded: a socket that goes away does not take its acks (or others') with it.
        return list(await asyncio.shield(asyncio.gather(*(item.future for item in items))))

    async def _drain(self, business: Business, state: _AckSchema) -> None:
        await asyncio.sleep(ACK_GATHER_SECONDS)
        while state.queue:
            batch, state.queue = state.queue[:ACK_BATCH_MAX], state.queue[ACK_BATCH_MAX:]
            self._batches.append(len(batch))
            outcomes: list[int | MessagingError]
            try:
                outcomes = await run_in_schema(
                    business.schema_name, write_marks, business=business, marks=[item.mark for item in batch]
                )
            except Exception:
                logger.exception("a group of %d acks failed", len(batch))
                outcomes = [server_error()] * len(batch)
            except asyncio.CancelledError:
                for item in batch + state.queue:
                    if not item.future.done():
                        item.future.set_result(server_error())
                raise
            for item, outcome in zip(batch, outcomes, strict=True):
                if not item.future.done():
                    item.future.set_result(outcome)

    def stats_batches(self) -> list[int]:
        return list(self._batches)


ack_gatherer = AckGatherer()


async def send_message_live(*, business: Business, request: SendRequest, limit_key: str = "") -> SendResult:
    """A websocket's send (on the server's event loop): gathered with the process's concurrent
    websocket sends to the same business. `limit_key`: the author's shared send bucket."""
    return await live_gatherer.send(business=business, request=request, limit_key=limit_key)
