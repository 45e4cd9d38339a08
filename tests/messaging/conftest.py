"""Helpers for messaging tests: customers, sessions (cookies) and websocket connections.

Consumers run their database work in other threads, so websocket tests use committed data
(`live_db`) with unique customers, and measure events from the stream's current end.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection, connections
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, Membership, User
from config.routing import websocket_application
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging import selectors
from tenancy.models import Business
from tests.conftest import PASSWORD


def prepared_statements(fragment: str) -> list[tuple[str, int]]:
    """This connection's prepared statements whose text holds `fragment` (config.sql.prepared_cursor):
    (name, how often it ran)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s "
            "ORDER BY name",
            ["%" + fragment + "%"],
        )
        return [(name, int(runs)) for name, runs in cursor.fetchall()]


class StepReads:
    """The heap rows each named step read from these tables of one schema, by scans of any kind,
    from PostgreSQL's own statistics for the current transaction (`pg_stat_xact_user_tables`):
    what a statement reads, whatever plan the real planner chose."""

    def __init__(self, schema: str, tables: Sequence[str]) -> None:
        self.schema, self.tables = schema, list(tables)
        self.reads: dict[str, int] = {}

    def _so_far(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
                "FROM pg_stat_xact_user_tables WHERE schemaname = %s AND relname = ANY(%s)",
                [self.schema, self.tables],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def __call__[T](self, name: str, action: Callable[[], T]) -> T:
        before = self._so_far()
        result = action()
        self.reads[name] = self._so_far() - before
        return result


def make_customer(name: str = "") -> Customer:
    phone = "+49151" + "".join(random.choice("0123456789") for _ in range(8))
    return Customer.objects.create(phone_number=phone, display_name=name, country_code="DE", verified_at=timezone.now())


def session_key(*, user: User | None = None, customer: Customer | None = None) -> str:
    store = SessionStore()
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if customer is not None:
        store[CUSTOMER_SESSION_KEY] = customer.pk
    store.save()
    assert store.session_key
    return store.session_key


def last_event_id(business: Business) -> int:
    with tenant_context(business):
        return selectors.last_event_id()


async def ws_connect(
    path: str, *, host: str, origin: str | None = None, session: str | None = None, language: str | None = None
) -> tuple[WebsocketCommunicator, bool, Any]:
    headers = [(b"host", host.encode())]
    if language:
        headers.append((b"accept-language", language.encode()))
    origin = host if origin is None else origin
    if origin:
        headers.append((b"origin", f"http://{origin}".encode()))
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    communicator = WebsocketCommunicator(websocket_application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def receive_until(communicator: WebsocketCommunicator, wanted: str, timeout: float = 5) -> dict[str, Any]:
    """Frames up to and including the first of type `wanted` (ephemeral frames skipped)."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == wanted:
            return frame


def accepted_id(frame: dict[str, Any], client_msg_id: str) -> int | None:
    """The stored message's id if the frame answers this send: `message.accepted`, or the send's
    own `message.created` (what answers a send when it is next in the socket's stream)."""
    if frame.get("type") == "message.accepted" and frame.get("client_msg_id") == client_msg_id:
        return int(frame["message_id"])
    message = frame.get("message") if frame.get("type") == "message.created" else None
    if isinstance(message, dict) and message.get("client_msg_id") == client_msg_id:
        return int(message["id"])
    return None


async def answer_to(communicator: WebsocketCommunicator, client_msg_id: str, timeout: float = 5) -> dict[str, Any]:
    """The answer to this socket's send (`accepted_id`), or an error naming it."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if accepted_id(frame, client_msg_id) is not None:
            return frame
        if frame["type"] == "error" and frame.get("client_msg_id") == client_msg_id:
            return frame


async def drain(communicator: WebsocketCommunicator, timeout: float = 0.3) -> list[dict[str, Any]]:
    # receive_nothing does not cancel the application on timeout, unlike receive_from.
    frames = []
    while not await communicator.receive_nothing(timeout=timeout):
        frames.append(await communicator.receive_json_from(timeout=timeout))
    return frames


async def durable(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    """The next `count` frames that carry an event id (ephemeral ones skipped)."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frame = await communicator.receive_json_from(timeout=5)
        if frame.get("id") is not None:
            frames.append(frame)
    return frames


async def resumed(communicator: WebsocketCommunicator, after: int) -> list[dict[str, Any]]:
    """Send resume and return the replayed durable frames (up to the "resumed" marker)."""
    await communicator.send_json_to({"type": "resume", "after": after})
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == "resumed":
            return frames
        if frame.get("id") is not None:
            frames.append(frame)


adb = sync_to_async


@pytest.fixture
def customer(live_db: Any) -> Customer:
    return make_customer("Test Kunde")


@pytest.fixture
def temp_agent(live_db: Any) -> Iterator[Callable[[], tuple[User, Membership]]]:
    """Agents with a seat in business A made for one test; their seats go afterwards (other
    tests count the business's seats)."""
    made: list[Membership] = []

    def make() -> tuple[User, Membership]:
        user = User.objects.create_user(f"temp-{uuid.uuid4().hex[:8]}@alpha.test", PASSWORD)
        membership = Membership.objects.create(user=user, business=live_db.business_a, role="agent")
        made.append(membership)
        return user, membership

    yield make

    def remove() -> None:
        # On a connection of its own: this thread's may be inside the test's rolled-back atomic block.
        try:
            Membership.objects.filter(pk__in=[m.pk for m in made]).delete()
        finally:
            connections.close_all()

    worker = threading.Thread(target=remove)
    worker.start()
    worker.join()
