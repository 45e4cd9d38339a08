"""Websocket relays: authenticate, join the business's groups, forward frames, call services.

Database work goes through `_db`, which runs on the bounded thread pool of `tenancy.db` (never
Channels' one thread per process) and enters the schema (the business's, or public for /ws/me/)
inside the worker thread, so no schema is ever left set on a shared thread.

Two paths per socket, so neither stalls the other:
- layer → client (`inbox_batch`, `agents_frame`, `conv_frame`, signals) is dispatched by the
  layer's fan-out (messaging.socket_task: one task per idle socket, a drain task only while
  layer messages wait), without Channels' per-handler `aclose_old_connections` (those handlers
  need no database);
- client → server frames are checked and parsed at once by the socket's own task, then handled
  one at a time by a worker task from a small bounded deque; the worker exists only while frames
  wait (an idle socket has none). A full deque, or a process whose send path is saturated,
  refuses the frame at once (`overloaded` with `retry_after`).
A send is accepted only when `message.accepted` comes back, after commit; a socket closed (or
killed by the server) before that has accepted nothing: the client keeps the send pending and
sends it again, with the same client_msg_id, after it reconnects.

Ordering guarantee: a client first sends {"type": "resume", "after": <last id seen>} and gets the
missed events from PostgreSQL; afterwards live frames are forwarded only in order. A live frame
that would skip an event (the layer is at-most-once, and two commits can publish out of order)
triggers a catch-up from PostgreSQL first; a frame already sent is dropped. Catch-ups and
forwarding share one lock per socket.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from channels.consumer import get_handler_name
from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _

from assignment import services as assignment_services
from config.tunables import tunable
from config.websocket import SEND_RETRY_CAP_SECONDS, CloseCode, send_retry_delay
from customers.session import customer_from_session
from messaging import events, revocation, selectors, services, stages
from messaging.errors import MessagingError, MessagingErrorCode, not_found
from messaging.group_commit import (
    Admission,
    RightsLost,
    ack_gatherer,
    admitted,
    batch_max,
    live_gatherer,
    live_writers,
    max_wait,
    ordered_send,
    rights_pending,
    send_seq_handled,
    server_error,
)
from messaging.ids import conversation_pk
from messaging.receipts import Mark
from messaging.socket_task import CLOSE_INTERNAL_ERROR, OneTaskWebsocketConsumer
from tenancy.asgi import host_from_scope
from tenancy.db import run_in_schema
from tenancy.models import PUBLIC_SCHEMA

logger = logging.getLogger("parley.messaging")
T = TypeVar("T")

CLOSE_UNAUTHENTICATED = CloseCode.UNAUTHENTICATED
CLOSE_FORBIDDEN = CloseCode.FORBIDDEN
CLOSE_NOT_FOUND = CloseCode.NOT_FOUND
# A send carries at most services.MAX_BODY characters; even fully \u-escaped that fits, with room
# for the envelope. Daphne would otherwise hand over (and parse_frame would parse) up to 1 MiB.
MAX_FRAME_CHARS = 64 * 1024
# Acks are gathered per socket for this long, then written once per conversation.
ACK_DEBOUNCE_SECONDS = 0.25
# A gap in an agent's list (a batch lost on the at-most-once layer) is read from the stream after this.
LIST_HOLE_SECONDS = 1.0
# Revocations through the services reach a socket at once (signal) or at its next frame (rights
# version); a change made around them (a seat deleted in the admin, a shell) is caught by the
# full re-check a heartbeat makes: on every ping of an agent's inbox (few sockets, and seats are
# what the admin removes), at most this often on a customer's chat (thousands of sockets: on every
# ping, 2,000 of them cost 80 checks a second, the soak check found).
CUSTOMER_RIGHTS_RECHECK_SECONDS = 300.0
# Frames a socket may have waiting for its worker (more than a burst of sends); more are refused
# (`overloaded`).
FRAME_QUEUE = 32


async def _db[T](schema_name: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    return await run_in_schema(schema_name, fn, **kwargs)


async def _held(rights: asyncio.Future[bool]) -> bool:
    """Whether a socket's pending rights check found them holding (a failed read: answered, as
    `work_one` answers a frame whose check failed)."""
    if not rights.done():
        await asyncio.wait([rights])
    if rights.cancelled():
        return False
    if rights.exception() is not None:
        return True
    return rights.result()


# A send's handling by its socket's worker before any was measured (a send group's usual time).
HANDLING_SECONDS = 0.02
# How long a send refused for load or rate holds its socket's later sends back at most: the
# longest a client waits before retrying it (its cap, with the most jitter), with room for the trip.
OWED_SEND_SECONDS = send_retry_delay(SEND_RETRY_CAP_SECONDS, 1, random=lambda: 1.0) + 10


@dataclass(slots=True)
class OwedSend:
    """A send refused for load or rate, owed by its socket: no later send of the socket is taken
    until it comes back (or `until` passed)."""

    client_msg_id: str
    until: float  # time.monotonic()
    refusal: MessagingError  # what the sends held behind it hear too
    # Its place among the socket's sends (StreamConsumer.send_seq): the sends after it are held
    # back, wherever they are (waiting for the worker, being checked, queued for a group).
    seq: int


class SendGate:
    """The process's send path: at most `limit` sends waiting or running at once, across every
    business (PARLEY_WS_MAX_SENDS: two full send groups). Past that a send is refused at once
    with `retry_after` (about one send's duration: the sends in flight are written together),
    rather than queued for seconds."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.seconds = 0.02  # moving average of one send's duration
        # Moving average of how long a socket's worker is on one send (its handling only, not
        # its wait for the worker), on the server loop it was measured on (tests run a loop each).
        self._handling: tuple[asyncio.AbstractEventLoop | None, float] = (None, HANDLING_SECONDS)

    @property
    def limit(self) -> int:
        return int(tunable("PARLEY_WS_MAX_SENDS", 2 * batch_max()))

    def retry_after(self) -> float:
        # The sends in flight are written together (group commit), not one after another per
        # thread: room comes back about one send's duration from now.
        return round(min(10.0, max(0.5, self.seconds * 2)), 1)

    def enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self, seconds: float | None) -> None:
        """A send is done after `seconds`; None: it left without being handled (refused at
        admission, or its socket closed), which says nothing of how long a send takes — counted
        as 0 it dragged the average, and every retry_after, down to the floor under overload."""
        self.in_flight -= 1
        if seconds is not None:
            self.seconds = 0.9 * self.seconds + 0.1 * seconds

    @property
    def handling(self) -> float:
        """How long a socket's worker is on one send now: what each send queued on a socket
        holds the next one up."""
        loop, seconds = self._handling
        return seconds if loop is asyncio.get_running_loop() else HANDLING_SECONDS

    def handled(self, seconds: float) -> None:
        """A socket's worker (on this loop) was on a send for `seconds`."""
        self._handling = (asyncio.get_running_loop(), 0.9 * self.handling + 0.1 * seconds)

    def backlog_refusal(self, *, handling_since: float | None, queued: int) -> MessagingError | None:
        """`overloaded` if a send arriving on a socket would wait longer than
        PARLEY_SEND_MAX_WAIT for its worker: what is left of the send the worker is on (since
        `handling_since`), then `queued` sends ahead, each held about `handling`. A socket's
        frames are handled one at a time and a send holds its worker until its group commits: a
        queue the business's admission (`LiveGatherer.admit`) cannot see (issue 9: at 2,100
        msgs/s offered, sends waited p99 877 ms there)."""
        backlog = self.handling * queued
        if handling_since is not None:
            backlog += max(0.0, self.handling - (time.monotonic() - handling_since))
        if backlog <= max_wait():
            return None
        return overloaded(round(min(10.0, max(0.5, backlog)), 1))


send_gate = SendGate()


def overloaded(retry_after: float) -> MessagingError:
    return MessagingError(
        MessagingErrorCode.OVERLOADED,
        _("Too many messages are being sent right now. Retrying shortly."),
        retry_after=retry_after,
    )


def origin_host(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return (urlsplit(value.decode("latin-1")).hostname or "").lower()
    return None


def scope_language(scope: dict[str, Any]) -> str:
    """The language LocaleMiddleware picks for the page's own requests (the language cookie on
    the parent domain, then Accept-Language), so error frames read like the page around them."""
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            request.META["HTTP_ACCEPT_LANGUAGE"] = value.decode("latin-1")
    return translation.get_language_from_request(request)


def parse_frame(text_data: str | None) -> Any:
    """The frame's JSON, or None for anything malformed: not JSON, nested deeper than the parser's
    recursion limit (json raises RecursionError, not ValueError, for "[" * 50000), or strings with
    lone surrogates ("\\ud800"), which no UTF-8 column can store and which would otherwise fail
    deep inside a service.

    Read by orjson, in a fifth of the standard library's time (json.loads was 1.3% of a loaded
    server's samples, issue 9). What orjson refuses goes to the standard library, as before: it
    also reads non-finite numbers (1e400, NaN, -Infinity), which the handlers then refuse as
    invalid, and nesting deeper than orjson's 1,024 levels."""
    text = text_data or ""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        payload = json.loads(text)
        if "\\u" in text:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return payload


def _chat_admission(
    *, business_id: int, session_key: str | None
) -> tuple[Any, CloseCode | None, dict[str, Any], int | None]:
    """On a database thread: revocation.customer_admission and the customer's conversation."""
    customer, refusal, versions = revocation.customer_admission(business_id=business_id, session_key=session_key)
    if refusal is not None:
        return None, refusal, versions, None
    conversation = selectors.conversation_for_customer(customer=customer)
    return customer, None, versions, conversation.pk if conversation is not None else None


def _customer_resume(*, conversation_id: int | None, after: int) -> tuple[int | None, list[tuple[int, str]]]:
    """On a database thread, one call per resume: (the stream's head if events after `after` were
    pruned, else None; the customer's events after `after`)."""
    if after < selectors.first_retained_event_id() - 1:
        return selectors.last_event_id(), []
    if conversation_id is None:
        return None, []
    return None, selectors.events_for_customer(conversation_id=conversation_id, after=after)


class _RateLimit:
    """A small token bucket per connection, so one client cannot flood a business's stream."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def give_back(self) -> None:
        """The token `allow` took, for a frame refused for load after all (never written)."""
        self.tokens = min(self.burst, self.tokens + 1)


def _rights_probe(
    *, keys: list[str], seen: dict[str, Any] | None, check: Callable[..., CloseCode | None], **check_kwargs: Any
) -> tuple[CloseCode | None, dict[str, Any]]:
    """On a database thread: the rights versions, and the full check only when they moved since
    `seen` (None: check now). One cache read per frame in the common case."""
    versions = revocation.rights_versions(keys)
    if seen is not None and versions == seen:
        return None, versions
    return check(**check_kwargs), versions


def _view_position(*, conversation_id: int, after: int | None) -> tuple[bool, int]:
    """On a database thread, one trip for an agent's `view`: the conversation must be theirs to
    see (not_found otherwise); then whether the client must reload (no `after`, or it was
    pruned) and the event the live frames follow (the newest, or `after` to catch up from)."""
    selectors.conversation_for_agent(conversation_id=conversation_id)
    if after is not None and after >= selectors.first_retained_event_id() - 1:
        return False, after
    return True, selectors.conversation_last_event_id(conversation_id=conversation_id)


def _presence_view(*, channel_name: str, conversation_id: int | None) -> dict[str, Any]:
    """On a database thread: record what this socket views and read everyone's presence."""
    services.presence_view(channel_name=channel_name, conversation_id=conversation_id)
    return selectors.presence_snapshot()


class GroupsMixin:
    """Group subscriptions tracked per socket and released whatever way the socket ends: a normal
    close, a refused handshake, or the server cancelling the consumer ("took too long to shut
    down"), so no Redis subscription outlives its socket."""

    channel_layer: Any
    channel_name: str

    def _groups(self) -> set[str]:
        if not hasattr(self, "_joined"):
            self._joined: set[str] = set()
        return self._joined

    async def join(self, group: str) -> None:
        self._groups().add(group)
        await self.channel_layer.group_add(group, self.channel_name)

    async def leave(self, group: str) -> None:
        self._groups().discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def leave_all(self) -> None:
        for group in list(self._groups()):
            try:
                await self.leave(group)
            except Exception:  # one failed discard must not keep the others subscribed
                logger.warning("could not leave group %s", group, exc_info=True)


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"id": None, "type": "error", "code": code, "message": message, **extra}


def refusal_frame(payload: dict[str, Any], error: MessagingError) -> dict[str, Any]:
    """The error frame refusing a client frame, naming its client_msg_id if it had one."""
    extra: dict[str, Any] = {}
    client_msg_id = payload.get("client_msg_id")
    if client_msg_id and isinstance(client_msg_id, str):
        extra["client_msg_id"] = client_msg_id
    if error.retry_after is not None:  # overloaded, rate_limited: retry the same client_msg_id then
        extra["retry_after"] = error.retry_after
    return error_frame(error.code, error.message, **extra)


_background: set[asyncio.Task[Any]] = set()


def in_background[T](coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run a coroutine as a task of its own, kept until it is done (the loop holds tasks weakly)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background_done)
    return task


def _background_done(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    log_task_failure(task, "websocket background task")


def log_task_failure(task: asyncio.Task[Any], what: str) -> None:
    """A finished websocket task's failure, if any, logged (else asyncio's "Task exception was
    never retrieved"): a client that left before its answer went out (OSError) only at debug,
    nobody being there to tell; anything else as an error."""
    error = None if task.cancelled() else task.exception()
    if isinstance(error, OSError):
        logger.debug("%s: client gone", what)
    elif error is not None:
        logger.error("%s failed", what, exc_info=error)


def started_now[T](coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task that starts within the caller's step (an eager task) instead of on the loop's next
    turn: it runs up to its first wait before this returns, and one that never waits is done
    by then (never scheduled, never in the loop's set of tasks)."""
    return asyncio.Task(coroutine, loop=asyncio.get_running_loop(), eager_start=True)


class StreamConsumer(GroupsMixin, OneTaskWebsocketConsumer):
    """What agents and customers share: origin check, envelope, resume and in-order delivery."""

    schema_name: str
    last: int | None
    worker: asyncio.Task[None] | None = None  # only while frames wait
    # (frame, when it entered the send gate or None, its send's admission or None), only while some wait: a deque, not an
    # asyncio.Queue (3 KiB per socket), made on demand (an empty deque is 0.7 KiB); only the
    # socket's own task appends, only the worker pops.
    # Each with its send's place among the socket's sends (`send_seq`; 0: not a send).
    frames_waiting: deque[tuple[dict[str, Any], float | None, Admission | None, int]] | None = None
    serving = False  # accepted and joined: frames are handled
    released = False
    relayed = False  # counted in events.relay
    closing = False
    rights_seen: dict[str, Any] | None = None
    rights_checked_at = 0.0  # time.monotonic() of the last full check that passed
    rights_recheck_seconds = 0.0  # a heartbeat's full re-check at most this often
    # time.monotonic() when the worker started on the send it is handling (None: not on a send).
    send_started: float | None = None
    # This socket's send refused for load or rate, which must come back before any later send
    # of the socket is taken (`owed_refusal`); None: none owed.
    owed_send: OwedSend | None = None
    # The client_msg_ids of this socket's latest stored sends (made on the first): a refused
    # repeat of one of them owes nothing (`owe`).
    stored_recently: deque[str] | None = None
    send_seq = 0  # send frames taken so far: each send's place in the socket's order
    # Sends handed to their business's queue by the worker and not answered yet (pipelined:
    # `pipelines_sends`), made on demand.
    sends_in_flight: set[asyncio.Task[bool]] | None = None

    async def ended(self) -> None:
        await self.release()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without `aclose_old_connections` before every handler: layer
        frames and signals never touch the database, and database calls close their own
        connections on the pool (tenancy.db)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.last = None
        self.delivery = asyncio.Lock()
        self.acks: dict[tuple[int, bool], int] = {}  # (conversation id, read) -> highest up_to
        self.ack_task: asyncio.Task[None] | None = None
        self.sends = _RateLimit(rate=2, burst=20)
        self.frames = _RateLimit(rate=20, burst=60)
        self.typing = _RateLimit(rate=0.5, burst=3)
        self.language = scope_language(self.scope)
        # For the socket's whole life, in its own task's context, which its worker and its sends'
        # tasks inherit: messages (ours and the services') use the page's language. Activated per
        # frame instead (an override around each handler, three per send), switching cost ~4% of
        # the server's Python under the inbox load.
        translation.activate(self.language)
        business = self.scope.get("business")
        if business is None or business.is_public:
            await self.close(CLOSE_NOT_FOUND)
            return
        # OriginValidator admits every subdomain of the platform; a page on another business's
        # host must not drive this one's socket with the shared session cookie.
        if origin_host(self.scope) != host_from_scope(self.scope):
            await self.close(CLOSE_FORBIDDEN)
            return
        self.business = business
        self.schema_name = business.schema_name
        if not await self.authenticate():
            return
        # This process now receives the business's commits (before the resume reads the stream).
        await events.relay.watch(self.schema_name)
        self.relayed = True
        await self.accept()
        await self.joined()
        # Client frames are dispatched only after connect returns, so none waits on this.
        self.serving = True

    async def authenticate(self) -> bool:
        raise NotImplementedError

    async def joined(self) -> None:
        pass

    # --- rights: checked at connect, on every frame handled, and when a revocation arrives ---

    @property
    def session_key(self) -> str | None:
        session = self.scope.get("session")
        return getattr(session, "session_key", None)

    def rights(self) -> tuple[list[str], Callable[..., CloseCode | None], dict[str, Any]]:
        """The cache keys of this socket's rights versions, and the full check with its arguments."""
        raise NotImplementedError

    @functools.cached_property
    def socket_rights(self) -> tuple[list[str], Callable[..., CloseCode | None], dict[str, Any]]:
        """`rights()`, made once: they name the socket's user or customer, business and session,
        fixed from its admission on (read for every frame handled)."""
        return self.rights()

    async def rights_refusal(self, *, full: bool) -> CloseCode | None:
        """None while this socket's rights hold. The versions are read on the event loop (one
        MGET per process for every socket asking at once); only when they moved since the last
        check (or `full`) does the check itself go to a database thread."""
        keys, check, kwargs = self.socket_rights
        previous = self.rights_seen
        if not revocation.reads_on_loop():
            refusal, versions = await _db(
                self.schema_name,
                _rights_probe,
                keys=keys,
                seen=None if full else self.rights_seen,
                check=check,
                **kwargs,
            )
        else:
            versions = await revocation.rights_versions_live(keys)
            if not full and self.rights_seen is not None and versions == self.rights_seen:
                return None
            refusal = await _db(self.schema_name, check, **kwargs)
        if refusal is None:
            if full or previous is None or versions != previous:  # the check itself ran
                self.rights_checked_at = time.monotonic()
            self.rights_seen = versions
        return refusal

    async def rights_hold(self, *, full: bool = False) -> bool:
        if self.closing:
            return False
        refusal = await self.rights_refusal(full=full)
        if refusal is not None:
            await self.end(refusal)
            return False
        return True

    async def end(self, code: int) -> None:
        """Close for good: nothing more is delivered or handled on this socket."""
        if self.closing:
            return
        self.closing = True
        await self.close(code)

    async def rights_revoked(self, message: dict[str, Any]) -> None:
        if message.get("session_key") and message["session_key"] == self.session_key:
            await self.end(CLOSE_UNAUTHENTICATED)  # this very session ended (logout, sign-out)
            return
        await self.rights_hold(full=True)

    async def disconnect(self, code: int) -> None:
        await self.release()

    async def release(self) -> None:
        """Once per socket: stop the worker, leave every group, forget presence."""
        if self.released:
            return
        self.released = True
        for task in (self.worker, getattr(self, "ack_task", None), getattr(self, "hole_task", None)):
            if task is not None:
                task.cancel()
        # As the worker's own send: one never taken into a group is dropped unwritten (the
        # client sends it again after reconnecting); one taken is written all the same.
        for task in self.sends_in_flight or ():
            task.cancel()
        # Queued sends were never accepted: the client sends them again after reconnecting.
        waiting, self.frames_waiting = self.frames_waiting or (), None
        for _payload, gated, admission, _seq in waiting:
            if gated is not None:
                send_gate.leave(None)
            if admission is not None:
                admission.release()
        await self.leave_all()
        if self.relayed:
            self.relayed = False
            await events.relay.unwatch(self.schema_name)
        await self.left()

    async def left(self) -> None:
        pass

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=events.dumps(payload))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json(error_frame(code, message, **extra))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # No LocaleMiddleware here: the page's language was activated at connect.
        await self.take_frame(text_data)

    async def take_frame(self, text_data: str | None) -> None:
        """Check and parse at once; queue for the worker, or refuse at once."""
        answer = self.take_frame_now(text_data)
        if answer is not None:
            await self.send_json(answer)

    def receive_now(self, message: dict[str, Any]) -> bool:
        """A client message taken within the step that read it (socket_task's
        `take_messages_now`; the server calls this in the socket task's own context): a text
        frame's checks, its refusal or its place in the worker's queue, all synchronous, as
        `take_frame` does them. Its answer is written at once; if the socket cannot take it at
        once (flow control), it is sent the usual way."""
        text = message.get("text")
        if text is None:
            return False
        try:
            answer = self.take_frame_now(text, start_worker=in_background)
        except Exception:
            # What the socket's task does with a handler's exception: logged, the socket closed.
            logger.exception("a client frame failed; closing the socket")
            in_background(self.close(CLOSE_INTERNAL_ERROR))
            return True
        if answer is not None:
            self.send_json_now(answer)
        return True

    def send_json_now(self, payload: dict[str, Any]) -> None:
        text = events.dumps(payload)
        if not self.send_text_now(text):
            in_background(self.send(text_data=text))

    def take_frame_now(
        self,
        text_data: str | None,
        start_worker: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] | None = None,
    ) -> dict[str, Any] | None:
        """`take_frame` without its write: the answer to send, if any. The worker starts within
        this step (`started_now`), or by `start_worker`: from the server's read step
        (`receive_now`) it starts as a task of its own, so what a frame costs beyond its checks
        runs in its turn, not ahead of every ready callback (deliveries, commits) of the loop."""
        taken_at = time.monotonic() if stages.ENABLED else 0.0
        # Limits first, so a flood of large or malformed frames costs no parsing.
        if not self.frames.allow():
            return error_frame("rate_limited", _("Too many frames. Please slow down."))
        if text_data is not None and len(text_data) > MAX_FRAME_CHARS:
            return error_frame("bad_frame", _("This frame is too large."))
        payload = parse_frame(text_data)
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return error_frame("bad_frame", _("Every frame must be a JSON object with a type."))
        is_send = payload["type"] == "send"
        gated: float | None = None
        admission: Admission | None = None
        seq = 0
        if is_send:
            self.send_seq = seq = self.send_seq + 1
        # Decided without raising: a refusal raised and caught here, bound to a local, kept
        # through its traceback this step's frames and their callers' (the websocket frame, the
        # payload) in a reference cycle — under 3x overload ~20 objects per refusal that only
        # the collector could free (issue 9).
        decided: MessagingError | tuple[float, Admission] | None = None
        if self.frames_waiting is not None and len(self.frames_waiting) >= FRAME_QUEUE:
            decided = overloaded(send_gate.retry_after())
        elif is_send:
            decided = self.admit_send(payload)
        if isinstance(decided, MessagingError):
            if is_send:
                self.owe(payload.get("client_msg_id"), decided, seq)
            answer = refusal_frame(payload, decided)
            if stages.ENABLED and is_send:
                stages.refused_at_arrival(taken_at)
            return answer
        if decided is not None:
            gated, admission = decided
        if stages.ENABLED and is_send:
            stages.arrived(payload)
        if self.frames_waiting is None:
            self.frames_waiting = deque()
        self.frames_waiting.append((payload, gated, admission, seq))
        if self.worker is None and self.serving and not self.released:
            # Started within this step, not the loop's next turn: a send is checked, its rights
            # read asked for and it is in its business's queue before this frame's step ends
            # (on a saturated loop a turn is a wait behind every ready callback: --stages put
            # the frame → worker wait at p50 9 / p99 161 ms at 1,000 msgs/s). A worker that
            # finished within the step (no wait) is not kept.
            if start_worker is None:
                worker = started_now(self.work())
                self.worker = None if worker.done() else worker
            else:
                self.worker = start_worker(self.work())
        return None

    async def work(self) -> None:
        """Handle the waiting frames in order; ends when none is left (the next frame starts it again)."""
        try:
            while self.frames_waiting:
                payload, gated, admission, seq = self.frames_waiting.popleft()
                with admitted(admission):
                    await self.work_one(payload, gated, seq)
            self.frames_waiting = None
        finally:
            self.worker = None

    async def work_one(self, payload: dict[str, Any], gated: float | None, seq: int) -> None:
        if stages.ENABLED:
            stages.begin(payload)
        if gated is None:
            await self.handle_checked(payload)
            return
        started = self.send_started = time.monotonic()
        try:
            if not self.pipelines_sends():
                # The worker is on the send until its group commits.
                if await self.run_send(payload, gated, seq, started):
                    send_gate.handled(time.monotonic() - started)
                return
            # Pipelined: the worker is on the send until it is in its business's queue (its
            # place there keeps the socket's order); then it takes the next frame while the
            # send waits for its group. Under overload a customer's next send waited for the
            # previous one's commit (issue 9: `worker` p90 366 ms, whole p99 ~0.9 s at 3×).
            queued = asyncio.get_running_loop().create_future()
            # Eager, as the worker: in its business's queue before this step ends, so `queued`
            # is mostly done already and the worker goes on without a turn.
            task = started_now(self.run_send(payload, gated, seq, started, queued))
            if self.sends_in_flight is None:
                self.sends_in_flight = set()
            self.sends_in_flight.add(task)
            task.add_done_callback(self.send_finished)
            await queued
            send_gate.handled(time.monotonic() - started)
        finally:
            self.send_started = None

    def pipelines_sends(self) -> bool:
        """Whether the worker may take the next frame once a send is queued, before it is
        written. Not with more than one writer per business (a later send of the socket could
        be written by another writer while an earlier one is refused)."""
        return live_writers() == 1

    def send_finished(self, task: asyncio.Task[bool]) -> None:
        if self.sends_in_flight is not None:
            self.sends_in_flight.discard(task)
            if not self.sends_in_flight:
                self.sends_in_flight = None
        log_task_failure(task, "websocket send")

    async def run_send(
        self,
        payload: dict[str, Any],
        gated: float,
        seq: int,
        started: float,
        queued: asyncio.Future[None] | None = None,
    ) -> bool:
        """Handle a send frame in the socket's order (`group_commit.ordered_send`): False if it was
        held back behind an earlier send of the socket refused meanwhile. Leaves the send gate
        when done; `queued` is set once the send is in its business's queue, or done."""

        def in_queue() -> None:
            if queued is not None and not queued.done():
                queued.set_result(None)

        handled = True
        try:
            held = self.held_back(seq)
            if held is not None:
                # Taken on arrival, but an earlier send of this socket has been refused since
                # (its group's wait ran out, or its author's limit): not stored ahead of it.
                handled = False
                await self.refuse(payload, held)
                return False
            with ordered_send(self, seq, in_queue if queued is not None else None):
                await self.handle_checked(payload)
            return True
        finally:
            send_gate.leave(time.monotonic() - gated if handled else None)
            in_queue()

    async def handle_checked(self, payload: dict[str, Any]) -> None:
        """Handle a frame on the socket's current rights."""
        # Every frame runs on current rights: a revoked socket handles nothing more. A
        # heartbeat re-checks fully (every `rights_recheck_seconds`), which also catches
        # rights removed around the services (a seat deleted in the admin or a shell).
        full = payload["type"] == "ping" and time.monotonic() - self.rights_checked_at >= self.rights_recheck_seconds
        if payload["type"] == "send" and self.rights_seen is not None and revocation.reads_on_loop():
            await self.send_while_rights_read(payload)
            return
        try:
            holds = await self.rights_hold(full=full)
        except Exception:  # the rights store is unreachable: answer, and keep serving
            logger.exception("websocket rights check failed")
            await self.refuse(
                payload,
                MessagingError(MessagingErrorCode.SERVER_ERROR, _("Something went wrong. Please try again.")),
            )
            return
        if stages.ENABLED:
            stages.mark("rights")
        if holds:
            await self.handle_frame(payload)
        if stages.ENABLED:
            stages.end()

    async def send_while_rights_read(self, payload: dict[str, Any]) -> None:
        """A send frame is validated and queued while its socket's rights are read, instead of
        after (one Redis round trip less ahead of the queue): its group's writer waits for the
        read before writing it, and writes it only if the rights hold (`rights_pending`). What it
        answers waits for the read too: a socket whose rights are gone gets no answer, only the
        close code. A failed read (the rights store unreachable) refuses the send, as for any frame."""
        # Eager: its read is asked for within this step and leaves with this turn's commands.
        rights = started_now(self.rights_hold())
        if stages.ENABLED:
            trace = stages.current()
            rights.add_done_callback(lambda _read: stages.mark_on(trace, "rights", overlapped=1))
        with rights_pending(rights):
            await self.handle_frame(payload, rights=rights)
        if not rights.done():  # a send refused before it was queued did not wait for it
            await asyncio.wait([rights])
        if not rights.cancelled() and rights.exception() is not None:
            logger.error("websocket rights check failed", exc_info=rights.exception())
        if stages.ENABLED:
            stages.end()

    async def handle_frame(self, payload: dict[str, Any], rights: asyncio.Future[bool] | None = None) -> None:
        """`rights`: the socket's rights check, still running (`send_while_rights_read`): an
        answer goes out only once it is in, and none if the rights are gone."""
        handler = getattr(self, "on_" + payload["type"].replace(".", "_"), None)
        if handler is None:
            await self.send_error("unknown_type", _("Unknown frame type."))
            return
        try:
            await handler(payload)
            if payload["type"] == "send":
                self.send_stored(payload.get("client_msg_id"))
        except RightsLost:
            return  # not written; the rights check is closing the socket
        except MessagingError as error:
            if rights is not None and not await _held(rights):
                return
            seq = send_seq_handled()
            if payload["type"] == "send" and seq is not None:
                self.owe(payload.get("client_msg_id"), error, seq)
            await self.refuse(payload, error)
        except asyncio.CancelledError:
            raise
        except OSError:
            # The client left while its frame was handled (uvicorn raises ClientDisconnected, an
            # OSError, on a send to a closed socket): nobody to answer.
            logger.debug("websocket frame %s: client gone", payload.get("type"))
        except Exception:
            logger.exception("websocket frame %s failed", payload.get("type"))
            if rights is not None and not await _held(rights):
                return
            await self.send_error("server_error", _("Something went wrong. Please try again."))

    def owed_refusal(self, payload: dict[str, Any]) -> MessagingError | None:
        """A send is taken only after this socket's send refused for load or rate has come back:
        otherwise a later message, sent while the refused one waits out its retry_after, was
        stored ahead of it (issue 9: at 1,200 msgs/s offered, 7,661 of 15,695 stored messages
        came after a later one of their sender). The refused one coming back clears the debt
        (it may be refused again); a client that never sends it again is released after the
        longest a client waits to retry (`OWED_SEND_SECONDS`). A send held back hears what the
        refused one heard (`rate_limited` stays `rate_limited`): it goes again after it."""
        owed = self.owed_send
        if owed is None:
            return None
        if payload.get("client_msg_id") == owed.client_msg_id:
            self.owed_send = None
            return None
        return self.held_back(owed.seq + 1)

    def held_back(self, seq: int) -> MessagingError | None:
        """`group_commit.SendOrder`: the refusal send `seq` hears while an earlier send of this
        socket is owed (None: it may be written)."""
        owed = self.owed_send
        if owed is None or owed.seq >= seq:
            return None
        if time.monotonic() >= owed.until:
            self.owed_send = None
            return None
        return MessagingError(owed.refusal.code, owed.refusal.message, retry_after=owed.refusal.retry_after)

    def refused(self, seq: int, client_msg_id: str, error: MessagingError) -> None:
        """`group_commit.SendOrder`: send `seq` was refused for load or rate by its group's writer."""
        self.owe(client_msg_id, error, seq)

    def owe(self, client_msg_id: Any, error: MessagingError, seq: int) -> None:
        """A send refused for load or rate (it carries retry_after: the client sends it again).
        The earliest refused send is the one owed: the later ones go again after it. Not a
        repeat of a send already stored: nothing can overtake it, and the client, which has its
        acceptance, never sends it again (owed, it held the socket's later sends back for
        OWED_SEND_SECONDS)."""
        if error.retry_after is None or not client_msg_id or not isinstance(client_msg_id, str):
            return
        if self.stored_recently is not None and client_msg_id in self.stored_recently:
            return
        owed = self.owed_send
        if owed is None or seq < owed.seq or time.monotonic() >= owed.until:
            self.owed_send = OwedSend(client_msg_id, time.monotonic() + OWED_SEND_SECONDS, error, seq)

    def send_stored(self, client_msg_id: Any) -> None:
        """A send of this socket was stored (or found stored: a repeat). A page sends again the
        sends still on their way when a refusal holds it (realtime.js SendOutbox), so a repeat
        can be refused while its first attempt is being stored, or after: owed, that one is
        settled here, and a refusal of it coming later owes nothing (`owe`)."""
        if not client_msg_id or not isinstance(client_msg_id, str):
            return
        if self.stored_recently is None:
            self.stored_recently = deque(maxlen=FRAME_QUEUE)
        self.stored_recently.append(client_msg_id)
        owed = self.owed_send
        if owed is not None and owed.client_msg_id == client_msg_id:
            self.owed_send = None

    async def refuse(self, payload: dict[str, Any], error: MessagingError) -> None:
        await self.send_json(refusal_frame(payload, error))

    async def on_ping(self, payload: dict[str, Any]) -> None:
        await self.send_json({"id": None, "type": "pong"})

    async def on_resume(self, payload: dict[str, Any]) -> None:
        after = payload.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise MessagingError("invalid", _("resume needs the last event id seen (a number)."))
        async with self.delivery:
            pruned_head, rows = await self.resume_read(after)
            if pruned_head is not None:
                # Events after `after` were pruned: the client reloads its state, then resumes.
                self.last = pruned_head
                await self.send_json({"id": None, "type": "resync"})
                return
            self.last = after
            await self.replay(rows)
            await self.send_json({"id": None, "type": "resumed", "last": self.last})

    async def resume_read(self, after: int) -> tuple[int | None, list[tuple[int, str]]]:
        """(the stream's head if events after `after` were pruned, else None; the events to replay)."""
        raise NotImplementedError

    async def fetch_after(self, after: int) -> list[tuple[int, str]]:
        raise NotImplementedError

    async def catch_up(self) -> None:
        """Replay from PostgreSQL; the caller holds `self.delivery`."""
        if self.last is None:
            return
        await self.replay(await self.fetch_after(self.last))

    async def replay(self, rows: list[tuple[int, str]]) -> None:
        """Send stored frames in order; the caller holds `self.delivery`."""
        for event_id, frame in rows:
            await self.send(text_data=frame)
            self.last = event_id
        if len(rows) >= selectors.RESUME_LIMIT:
            # Too far behind to replay: the client reloads its state and resumes from there.
            await self.send_json({"id": None, "type": "resync"})

    async def forward(self, message: dict[str, Any], *, gap: Callable[[int], bool]) -> None:
        """Send a live frame in order. `gap(last)` says whether it would skip an event; the lock
        is uncontended (free) except while a resume or catch-up replays."""
        async with self.delivery:
            if self.last is None or self.closing:
                return  # not resumed yet: the resume will read this event from PostgreSQL
            if message["id"] <= self.last:
                return  # already sent (by a catch-up)
            if gap(self.last):
                await self.catch_up()
                if message["id"] <= self.last:
                    return
            await self.send(text_data=message["text"])
            self.last = message["id"]

    async def conv_signal(self, message: dict[str, Any]) -> None:
        if message.get("sender") != self.channel_name:
            await self.send(text_data=message["text"])

    def admit_send(self, payload: dict[str, Any]) -> MessagingError | tuple[float, Admission]:
        """A send frame on arrival: its refusal, or when it entered the process's send gate and
        the place held for it in its business's queue."""
        owed = self.owed_refusal(payload)
        if owed is not None:
            return owed
        if not self.sends.allow():
            return MessagingError(
                MessagingErrorCode.RATE_LIMITED,
                _("You are sending too fast. Please wait a moment."),
                retry_after=round(1 / self.sends.rate, 1),
            )
        if not send_gate.enter():
            # Refused for load, so not sent: it does not count against the author's own rate.
            # Counted, every retry of it did, and a client sending near its limit was then
            # refused `rate_limited` too (issue 9: at 1,000 msgs/s from 500 customers, 26,084
            # of 46,523 refusals).
            self.sends.give_back()
            return overloaded(send_gate.retry_after())
        gated = time.monotonic()
        # This socket's own sends ahead, then the business's send queue in this process: refused
        # now if it would wait too long; otherwise its place is held, and the send is not
        # refused again for load once its worker gets to it (the refusal is decided here, at once).
        queued = sum(waiting is not None for _payload, waiting, _admission, _seq in self.frames_waiting or ())
        decided = send_gate.backlog_refusal(handling_since=self.send_started, queued=queued) or live_gatherer.admit(
            self.schema_name
        )
        if isinstance(decided, MessagingError):
            send_gate.leave(None)
            self.sends.give_back()
            return decided
        return gated, decided

    async def answered_by_event(self, result: services.SendResult) -> bool:
        """A fresh send whose `message.created` is next in this socket's stream of its
        conversation is answered with it, now, instead of `message.accepted` followed by the same
        event through the relay (a third of the frames a chatting customer cost the server; the
        pages take their own message back as the acceptance). False when something comes between
        (an earlier event still on its way), or the socket follows no such stream (not resumed
        yet; an agent not viewing the conversation): `message.accepted`, and the event follows as
        any other. True too when the event is already out (the relay was first)."""
        created = result.created
        if result.duplicate or created is None:
            return False
        async with self.delivery:
            chain = None if self.closing else self.stream_of(created)
            if chain is None:
                return False
            last, previous = chain
            if created.id <= last:
                return True  # delivered already: the page took it as the acceptance
            if previous > last:
                return False
            await self.send(text_data=created.frame)
            self.sent_in_stream(created)
        return True

    def stream_of(self, created: events.StoredEvent) -> tuple[int, int] | None:
        """(the last event sent of the stream `created` belongs to, the event before it there), or
        None when this socket does not follow that stream in order. Caller holds `self.delivery`."""
        return None

    def sent_in_stream(self, created: events.StoredEvent) -> None:
        """`created` went out in its stream's order. Caller holds `self.delivery`."""

    async def accepted(self, result: services.SendResult) -> None:
        await self.send_json(
            {
                "id": None,
                "type": "message.accepted",
                "client_msg_id": result.message.client_msg_id,
                "message_id": result.message.pk,
                "event_id": result.message.event_id,
                "duplicate": result.duplicate,
            }
        )

    async def send_typing(self, conversation_id: int, *, who: str, name: str | None = None) -> None:
        """Within this socket's typing limit, to whoever shows it (`events.send_typing`)."""
        if not self.typing.allow():
            return
        await events.send_typing(self.schema_name, conversation_id, who=who, name=name, sender=self.channel_name)

    # --- acks: batched per socket (the highest up_to per conversation, debounced) ---

    async def queue_ack(self, conversation_id: int, payload: dict[str, Any]) -> None:
        up_to = payload.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            raise MessagingError("invalid", _("Expected a number."))
        key = (conversation_id, bool(payload.get("read")))
        self.acks[key] = max(up_to, self.acks.get(key, up_to))
        if self.ack_task is None or self.ack_task.done():
            self.ack_task = asyncio.ensure_future(self.flush_acks())

    async def flush_acks(self) -> None:
        await asyncio.sleep(ACK_DEBOUNCE_SECONDS)
        pending, self.acks = self.acks, {}
        if self.closing:
            return
        # Reading up to n is also delivery up to n: a delivered ack at or below it is left out.
        marks = [
            self.ack_mark(conversation_id, up_to, read)
            for (conversation_id, read), up_to in pending.items()
            if read or pending.get((conversation_id, True), -1) < up_to
        ]
        try:
            # With every other socket's acks of the business: one database trip per group.
            outcomes = await ack_gatherer.mark(business=self.business, marks=marks)
        except Exception:
            logger.exception("websocket acks failed")
            return
        for outcome in outcomes:
            if isinstance(outcome, MessagingError) and not self.closing:
                # Written with other sockets' acks: worded again in this socket's language.
                error = not_found() if outcome.code == MessagingErrorCode.NOT_FOUND else server_error()
                await self.send_error(error.code, error.message)

    def ack_mark(self, conversation_id: int, up_to: int, read: bool) -> Mark:
        raise NotImplementedError


class InboxConsumer(StreamConsumer):
    """An agent's shared inbox: every event of the business, typing and presence."""

    viewing: int | None = None

    async def authenticate(self) -> bool:
        # One database call: who the session's user is, their seat, the business not suspended.
        user, refusal, versions = await _db(
            self.schema_name, revocation.agent_admission, business_id=self.business.pk, session_key=self.session_key
        )
        if refusal is not None:
            await self.close(refusal)
            return False
        self.user = user
        self.rights_seen = versions
        self.rights_checked_at = time.monotonic()
        # Joined after the check; the first frame handled (the resume: nothing is forwarded
        # before it) re-reads the versions, so a revocation committed meanwhile still counts.
        await self.join(revocation.user_group(user.pk))
        await self.join(revocation.business_sockets_group(self.schema_name))
        return True

    def rights(self) -> tuple[list[str], Callable[..., CloseCode | None], dict[str, Any]]:
        keys = revocation.rights_keys(user_id=self.user.pk, business_id=self.business.pk)
        kwargs = {"business_id": self.business.pk, "user_id": self.user.pk, "session_key": self.session_key}
        return keys, revocation.agent_refusal, kwargs

    async def joined(self) -> None:
        self.conv_last: int | None = None
        self.held: list[dict[str, Any]] = []  # list batches waiting for an earlier one
        self.covered: list[tuple[int, int]] = []  # id ranges received above the list's position
        self.hole_task: asyncio.Task[None] | None = None
        self.inbox_group = events.inbox_group(self.schema_name)
        await self.join(self.inbox_group)
        await self.join(events.user_inbox_group(self.schema_name, self.user.pk))
        await _db(self.schema_name, services.presence_enter, user=self.user, channel_name=self.channel_name)
        await self.broadcast_presence()
        # issue 12: an agent away only because every inbox tab had closed is online again.
        await self.as_agent(assignment_services.agent_connected)

    async def left(self) -> None:
        if not hasattr(self, "inbox_group"):
            return
        await _db(self.schema_name, services.presence_leave, channel_name=self.channel_name)
        await self.broadcast_presence()
        # The last inbox tab closed: an online agent becomes away (and receives no conversations).
        await self.as_agent(assignment_services.agent_disconnected)

    async def broadcast_presence(self) -> None:
        snapshot = await _db(self.schema_name, selectors.presence_snapshot)
        await events.send_signal(self.inbox_group, events.LAYER_INBOX_SIGNAL, {"type": events.PRESENCE, **snapshot})

    async def as_agent(self, service: Callable[..., T], /, **kwargs: Any) -> T:
        """Run a service in this business's schema on behalf of this agent."""
        return await _db(self.schema_name, service, business=self.business, user=self.user, **kwargs)

    # --- the list: resumed by state, live from coalesced batches, gaps filled from the stream ---
    # `self.last` is the id up to which this socket's list is complete.

    async def on_resume(self, payload: dict[str, Any]) -> None:
        after = payload.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise MessagingError("invalid", _("resume needs the last event id seen (a number)."))
        async with self.delivery:
            if after < await _db(self.schema_name, selectors.first_retained_event_id) - 1:
                # Events after `after` were pruned: the client reloads its state, then resumes.
                self.last = await _db(self.schema_name, selectors.last_event_id)
                await self.send_json({"id": None, "type": "resync"})
                return
            head, rows = await _db(self.schema_name, selectors.conversation_states_since, after=after)
            if rows:
                await self.send(text_data=events.inbox_batch_message(ranges=[(after, head)], updates=rows)["text"])
            await self.list_advanced(head)
            await self.send_json({"id": None, "type": "resumed", "last": head})

    async def inbox_batch(self, message: dict[str, Any]) -> None:
        async with self.delivery:
            if self.last is None or self.closing or message["last"] <= self.last:
                return  # not resumed yet (the resume reads it), or already covered
            self.held.append(message)
            self.covered.extend((int(a), int(b)) for a, b in message["ranges"])
            await self.list_advanced(self.last)

    async def list_advanced(self, position: int) -> None:
        """Move the list's position over every contiguous id received, and send the held batches
        it now covers, oldest first. Caller holds `self.delivery`."""
        self.covered.sort()
        rest = []
        for first, last in self.covered:
            if first <= position + 1:
                position = max(position, last)
            else:
                rest.append((first, last))
        self.covered = [r for r in rest if r[1] > position]
        self.last = position
        ready = sorted((m for m in self.held if m["last"] <= position), key=lambda m: m["last"])
        self.held = [m for m in self.held if m["last"] > position]
        for message in ready:
            await self.send(text_data=message["text"])
        if self.held and (self.hole_task is None or self.hole_task.done()):
            self.hole_task = asyncio.ensure_future(self.fill_list_hole())

    async def fill_list_hole(self) -> None:
        """A batch below the held ones did not come (lost, or its process failed to publish):
        read the list states up to the newest held batch from the stream. Only when the list's
        position made no progress for LIST_HOLE_SECONDS: with several server processes each
        flushing on its own timer, a batch is routinely held until the other process's batch
        below it arrives (within a flush interval), and something is nearly always held — a
        read every second per agent socket cost more database time than the acks (issue 9)."""
        while True:
            stuck_at = self.last
            await asyncio.sleep(LIST_HOLE_SECONDS)
            if not self.held or self.closing or self.last is None:
                return
            if self.last == stuck_at:
                break
        async with self.delivery:
            if not self.held or self.closing or self.last is None:
                return
            after, target = self.last, max(m["last"] for m in self.held)
            rows = await _db(self.schema_name, selectors.conversation_states_between, after=after, up_to=target)
            if rows:
                await self.send(text_data=events.inbox_batch_message(ranges=[(after, target)], updates=rows)["text"])
            self.held = []
            await self.list_advanced(target)

    # --- the open conversation: every event of it, chained by `prev` ---

    async def agents_frame(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        if message["conversation_id"] != self.viewing:
            # The assignee's copy of a conversation not open here: a heads-up (and a delivered
            # receipt); the list batches are what is complete.
            if self.last is not None:
                await self.send(text_data=message["text"])
            return
        async with self.delivery:
            if self.conv_last is None or message["conversation_id"] != self.viewing:
                return
            if message["id"] <= self.conv_last:
                return  # already sent (a catch-up, or the assignee's copy)
            if message["prev"] > self.conv_last:
                await self.conversation_catch_up()  # an earlier event of it went missing
                if message["id"] <= self.conv_last:
                    return
            await self.send(text_data=message["text"])
            self.conv_last = message["id"]

    async def conversation_catch_up(self) -> None:
        """Caller holds `self.delivery`."""
        assert self.viewing is not None and self.conv_last is not None
        while True:
            rows = await _db(
                self.schema_name, selectors.events_for_conversation, conversation_id=self.viewing, after=self.conv_last
            )
            for event_id, frame in rows:
                await self.send(text_data=frame)
                self.conv_last = event_id
            if len(rows) < selectors.RESUME_LIMIT:
                return

    async def conv_frame(self, message: dict[str, Any]) -> None:
        pass  # the customer's group; agents viewing a conversation get agents.frame

    async def inbox_signal(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])

    # client → server
    async def on_ping(self, payload: dict[str, Any]) -> None:
        # Rights were re-checked before this frame (a removed seat whose signal was lost ends here).
        await _db(self.schema_name, services.presence_heartbeat, channel_name=self.channel_name)
        await super().on_ping(payload)

    async def on_view(self, payload: dict[str, Any]) -> None:
        conversation_id = payload.get("conversation_id")
        after = payload.get("after")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise MessagingError("invalid", _("view takes the last event id seen of the conversation (a number)."))
        if conversation_id is not None:
            conversation_id = conversation_pk(conversation_id)
        async with self.delivery:
            if self.viewing is not None:
                await self.leave(events.agents_conversation_group(self.schema_name, self.viewing))
            # conv_last None: live frames of it wait for this lock, then see where to start.
            self.viewing, self.conv_last = conversation_id, None
            if conversation_id is not None:
                # Joined before the read, so no event falls between the position and the live
                # frames; left again if the check fails.
                group = events.agents_conversation_group(self.schema_name, conversation_id)
                await self.join(group)
                try:
                    reload, last = await _db(
                        self.schema_name, _view_position, conversation_id=conversation_id, after=after
                    )
                except BaseException:
                    self.viewing = None
                    await self.leave(group)
                    raise
                self.conv_last = last
                if not reload:
                    await self.conversation_catch_up()
                await self.send_json(
                    {
                        "id": None,
                        "type": "viewing",
                        "conversation_id": conversation_id,
                        "last": self.conv_last,
                        "reload": reload,
                    }
                )
        snapshot = await _db(
            self.schema_name, _presence_view, channel_name=self.channel_name, conversation_id=conversation_id
        )
        await events.send_signal(self.inbox_group, events.LAYER_INBOX_SIGNAL, {"type": events.PRESENCE, **snapshot})

    async def on_send(self, payload: dict[str, Any]) -> None:
        # On the event loop until the group it joins is written: no database thread per send.
        result = await services.message_send_agent_live(
            business=self.business,
            user=self.user,
            conversation_id=payload.get("conversation_id"),
            body=payload.get("body"),
            client_msg_id=payload.get("client_msg_id"),
            kind=payload.get("kind") or "text",
            reply_to=payload.get("reply_to"),
            attachment_id=payload.get("attachment_id"),
            interactive=payload.get("interactive"),
            takeover=payload.get("takeover") is True,
        )
        if not await self.answered_by_event(result):
            await self.accepted(result)

    def stream_of(self, created: events.StoredEvent) -> tuple[int, int] | None:
        # The open conversation's stream: every event of it, chained by `prev` (agents_frame).
        if self.conv_last is None or created.conversation_id != self.viewing:
            return None
        return self.conv_last, created.prev_event_id

    def sent_in_stream(self, created: events.StoredEvent) -> None:
        self.conv_last = created.id

    # Rich messages (issue 13): the services check the sender, the window and the rights.
    async def on_edit(self, payload: dict[str, Any]) -> None:
        await self.as_agent(services.message_edit, message_id=payload.get("message_id"), body=payload.get("body"))

    async def on_delete(self, payload: dict[str, Any]) -> None:
        await self.as_agent(services.message_delete, message_id=payload.get("message_id"))

    async def on_react(self, payload: dict[str, Any]) -> None:
        await self.as_agent(services.reaction_set, message_id=payload.get("message_id"), emoji=payload.get("emoji"))

    async def on_typing(self, payload: dict[str, Any]) -> None:
        # Only for the conversation this agent has open, whose group they joined after a check.
        if self.viewing is not None and payload.get("conversation_id") == self.viewing:
            await self.send_typing(self.viewing, who="agent", name=self.user.get_short_name())

    async def on_ack(self, payload: dict[str, Any]) -> None:
        # Checked when written (batched): a conversation that does not exist gets not_found then.
        await self.queue_ack(conversation_pk(payload.get("conversation_id")), payload)

    def ack_mark(self, conversation_id: int, up_to: int, read: bool) -> Mark:
        return Mark(up_to=up_to, read=read, user=self.user, conversation_id=conversation_id)

    async def on_assign(self, payload: dict[str, Any]) -> None:
        assignee = payload.get("assignee_id")
        if assignee == "me":
            assignee = self.user.pk
        await self.as_agent(
            services.conversation_assign,
            conversation_id=payload.get("conversation_id"),
            assignee_id=assignee,
            note=payload.get("note") or "",
        )

    async def on_status(self, payload: dict[str, Any]) -> None:
        await self.as_agent(
            services.conversation_set_status,
            conversation_id=payload.get("conversation_id"),
            status=payload.get("status"),
        )

    async def on_snooze(self, payload: dict[str, Any]) -> None:
        # `until`: an ISO 8601 time, or null for "until the customer writes".
        await self.as_agent(
            assignment_services.conversation_snooze,
            conversation_id=payload.get("conversation_id"),
            until=payload.get("until"),
        )

    async def on_agent_status(self, payload: dict[str, Any]) -> None:
        await self.as_agent(assignment_services.agent_status_set, status=payload.get("status"))


class ChatConsumer(StreamConsumer):
    """A signed-in customer on a business's chat page: their one conversation with it."""

    conversation_id: int | None = None
    admitted_conversation_id: int | None = None
    rights_recheck_seconds = CUSTOMER_RIGHTS_RECHECK_SECONDS

    async def authenticate(self) -> bool:
        # One database call at connect (a server restart brings every customer back at once):
        # the customer, their rights, and their conversation with this business.
        customer, refusal, versions, conversation_id = await _db(
            self.schema_name, _chat_admission, business_id=self.business.pk, session_key=self.session_key
        )
        if refusal is not None:
            await self.close(refusal)
            return False
        self.customer = customer
        self.rights_seen = versions
        self.rights_checked_at = time.monotonic()
        self.admitted_conversation_id = conversation_id
        # Joined after the check; the first frame handled (the resume: nothing is forwarded
        # before it) re-reads the versions, so a revocation committed meanwhile still counts.
        await self.join(revocation.customer_sockets_group(customer.pk))
        await self.join(revocation.business_sockets_group(self.schema_name))
        return True

    def rights(self) -> tuple[list[str], Callable[..., CloseCode | None], dict[str, Any]]:
        keys = revocation.rights_keys(customer_id=self.customer.pk, business_id=self.business.pk)
        kwargs = {"business_id": self.business.pk, "customer_id": self.customer.pk, "session_key": self.session_key}
        return keys, revocation.customer_refusal, kwargs

    async def joined(self) -> None:
        # Until the conversation exists (first message from this or another tab, or a template
        # from the business), listen on the customer's own group to learn when it appears.
        self.waiting_group: str | None = events.customer_group(self.customer.pk)
        await self.join(self.waiting_group)
        if self.admitted_conversation_id is not None:
            await self.join_conversation(self.admitted_conversation_id)

    async def on_resume(self, payload: dict[str, Any]) -> None:
        if self.conversation_id is None:
            # Admission found no conversation, but one may have been written since (a template
            # from a delivery job) and announced before this socket's subscription reached Redis.
            # Looked up again now, and joined before the resume reads its events.
            await self.find_conversation()
        await super().on_resume(payload)

    async def find_conversation(self) -> None:
        conversation = await _db(self.schema_name, selectors.conversation_for_customer, customer=self.customer)
        if conversation is not None:
            await self.join_conversation(conversation.pk)

    async def join_conversation(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        await self.join(events.conversation_group(self.schema_name, conversation_id))
        if self.waiting_group is not None:
            await self.leave(self.waiting_group)
            self.waiting_group = None

    async def me_frame(self, message: dict[str, Any]) -> None:
        if self.conversation_id is None and message.get("schema") == self.schema_name:
            await self.find_conversation()
            # Its first events were published before this socket joined: read them.
            async with self.delivery:
                await self.catch_up()

    async def as_customer(self, service: Callable[..., T], /, **kwargs: Any) -> T:
        """Run a service in this business's schema on behalf of this customer."""
        return await _db(self.schema_name, service, business=self.business, customer=self.customer, **kwargs)

    async def resume_read(self, after: int) -> tuple[int | None, list[tuple[int, str]]]:
        return await _db(self.schema_name, _customer_resume, conversation_id=self.conversation_id, after=after)

    async def fetch_after(self, after: int) -> list[tuple[int, str]]:
        if self.conversation_id is None:
            return []
        return await _db(
            self.schema_name, selectors.events_for_customer, conversation_id=self.conversation_id, after=after
        )

    async def conv_frame(self, message: dict[str, Any]) -> None:
        # Customer-visible ids are sparse; each frame names the previous one it follows.
        await self.forward(message, gap=lambda last: message["prev"] > last)

    def pipelines_sends(self) -> bool:
        # Not before the conversation exists: the send that makes it joins it when written.
        return self.conversation_id is not None and super().pipelines_sends()

    async def on_send(self, payload: dict[str, Any]) -> None:
        # On the event loop until the group it joins is written: no database thread per send.
        result = await services.message_send_customer_live(
            business=self.business,
            customer=self.customer,
            body=payload.get("body"),
            client_msg_id=payload.get("client_msg_id"),
            reply_to=payload.get("reply_to"),
            attachment_id=payload.get("attachment_id"),
            choice=payload.get("choice"),
        )
        if self.conversation_id is None:
            # The first message created the conversation after this socket connected; its
            # event was published before we joined, so read it from the stream.
            await self.join_conversation(result.message.conversation_id)
            async with self.delivery:
                await self.catch_up()
        if not await self.answered_by_event(result):
            await self.accepted(result)

    def stream_of(self, created: events.StoredEvent) -> tuple[int, int] | None:
        if self.last is None:
            return None
        return self.last, created.prev_public_id

    def sent_in_stream(self, created: events.StoredEvent) -> None:
        self.last = created.id

    async def on_edit(self, payload: dict[str, Any]) -> None:
        await self.as_customer(services.message_edit, message_id=payload.get("message_id"), body=payload.get("body"))

    async def on_delete(self, payload: dict[str, Any]) -> None:
        await self.as_customer(services.message_delete, message_id=payload.get("message_id"))

    async def on_react(self, payload: dict[str, Any]) -> None:
        await self.as_customer(services.reaction_set, message_id=payload.get("message_id"), emoji=payload.get("emoji"))

    async def on_typing(self, payload: dict[str, Any]) -> None:
        if self.conversation_id is not None:
            await self.send_typing(self.conversation_id, who="customer")

    async def on_ack(self, payload: dict[str, Any]) -> None:
        await self.queue_ack(0, payload)  # the customer's one conversation

    def ack_mark(self, conversation_id: int, up_to: int, read: bool) -> Mark:
        return Mark(up_to=up_to, read=read, customer=self.customer)


class MeConsumer(GroupsMixin, OneTaskWebsocketConsumer):
    """The customer's /me/ page on the public host: their cross-business list changed."""

    async def ended(self) -> None:
        await self.leave_all()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # As StreamConsumer.dispatch: no database work before handlers that need none.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        business = self.scope.get("business")
        if business is not None and not business.is_public:
            await self.close(CLOSE_NOT_FOUND)
            return
        if origin_host(self.scope) != settings.PARLEY_DOMAIN.lower():
            await self.close(CLOSE_FORBIDDEN)
            return
        customer = await _db(PUBLIC_SCHEMA, customer_from_session, session=self.scope.get("session"))
        if customer is None:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        self.customer = customer
        await self.join(events.customer_group(customer.pk))
        await self.join(revocation.customer_sockets_group(customer.pk))
        await self.accept()

    async def rights_revoked(self, message: dict[str, Any]) -> None:
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None)
        if not (message.get("session_key") and message["session_key"] == session_key):
            refusal = await _db(
                PUBLIC_SCHEMA,
                revocation.customer_refusal,
                business_id=None,
                customer_id=self.customer.pk,
                session_key=session_key,
            )
            if refusal is None:
                return
        await self.close(CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        await self.leave_all()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=events.dumps({"id": None, "type": "pong"}))

    async def me_frame(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])
