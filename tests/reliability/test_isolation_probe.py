"""Reliability check 1: tenant isolation, probed over every route and frame type there is.

Owner, agent and customer of business A (and an anonymous visitor) try every URL pattern of
both URLconfs — on B's host, and on A's host and the public host with B's identifiers — with
GET and with a POST aimed at B's objects, then every websocket route and every frame type.
A new route or frame type is probed without editing this file. Passing means: no answer shows
B's secret data, no existing row of B changed, nothing was added to B's conversation, no 5xx.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Customer, User
from config.routing import websocket_application
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from reliability.report import record
from tests.conftest import World
from tests.reliability.probe import (
    Route,
    Secrets,
    frame_payload,
    frame_types,
    http_routes,
    plant_secrets,
    probe_form_data,
    snapshot,
    tampering,
    websocket_routes,
)

pytestmark = pytest.mark.reliability
CHECK = "1. Tenant isolation probe"


def session_key(*, user: User | None = None, customer: Customer | None = None) -> str:
    store = SessionStore()
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if customer is not None:
        store[CUSTOMER_SESSION_KEY] = customer.pk
    store.create()
    return str(store.session_key)


def actors(world: World) -> dict[str, dict[str, Any]]:
    customer_a = Customer.objects.create(
        phone_number="+49153" + str(time.time_ns())[-8:], country_code="DE", verified_at=timezone.now()
    )
    return {
        "anonymous": {},
        "owner A": {"user": world.owner_a},
        "agent A": {"user": world.agent_a},
        "customer A": {"customer": customer_a},
    }


def client_for(host: str, session: str | None, api_key: str | None = None) -> Client:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"} if api_key else {}
    client = Client(HTTP_HOST=host, raise_request_exception=False, **headers)
    if session:
        client.cookies[settings.SESSION_COOKIE_NAME] = session
    return client


def api_key_of(world: World) -> str:
    """A send+read API key of business A (the notifications API), made like the owner makes one."""
    from notifications.services import api_key_create
    from tests.conftest import in_business

    with in_business(world.business_a):
        return api_key_create(
            business=world.business_a, actor=world.owner_a, name="isolation probe", scopes=["send", "read"]
        ).secret


def targets(route: Route, secrets: Secrets) -> list[str]:
    """The route's paths aimed at B: each of B's ids in every int parameter, B's slug, schema
    name and id in every other parameter."""
    if not route.params:
        return [route.fill("")]
    values = (
        [str(v) for v in secrets.ids.values()]
        if set(route.params) <= route.int_params
        else [str(v) for v in secrets.ids.values()] + secrets.strings
    )
    return sorted({route.fill(value) for value in values})


def test_http_routes_never_reach_business_b(world: World) -> None:
    b = world.business_b
    secrets = plant_secrets(b)
    before = snapshot(b)
    people = actors(world)
    sessions = {name: session_key(**kwargs) if kwargs else None for name, kwargs in people.items()}
    sessions["API key A"] = None
    api_key = api_key_of(world)
    public_routes = http_routes(settings.PUBLIC_SCHEMA_URLCONF)
    tenant_routes = http_routes(settings.ROOT_URLCONF)
    plan = [(settings.PARLEY_DOMAIN, r) for r in public_routes] + [
        (host, r) for r in tenant_routes for host in (b.host, world.business_a.host)
    ]
    form = probe_form_data(secrets)
    leaks: list[str] = []
    errors: list[str] = []
    statuses: Counter[int] = Counter()
    requests = 0
    for host, route in plan:
        for path in targets(route, secrets):
            for name, session in sessions.items():
                for method in ("get", "post"):
                    if (name != "anonymous" and "logout" in path) or "sign-out" in path:
                        continue  # would end the session the next requests need; probed anonymously
                    client = client_for(host, session, api_key if name == "API key A" else None)
                    response = getattr(client, method)(path, form if method == "post" else None)
                    connection.set_schema_to_public()
                    requests += 1
                    statuses[response.status_code // 100 * 100] += 1
                    if response.status_code >= 500:
                        errors.append(f"{response.status_code} {method.upper()} {host}{path} as {name}")
                    body = b"".join(response) if response.streaming else response.content  # type: ignore[attr-defined]
                    for marker in secrets.leaked_in(body.decode(errors="replace")):
                        leaks.append(f"{method.upper()} {host}{path} as {name} showed {marker!r}")
    tampered = tampering(before, b, secrets)
    HTTP_ERRORS[:] = errors or ["none"]
    isolated = not (leaks or tampered)
    record(
        check=CHECK + " (HTTP)",
        tried=f"{len(public_routes)} public + {len(tenant_routes)} business URL patterns (API included), "
        f"{len(sessions)} actors (owner, agent, customer, API key of A, anonymous), GET+POST: "
        f"{requests} requests aimed at B",
        result=f"no leak, B unchanged ({dict(sorted(statuses.items()))})"
        if isolated
        else f"{len(leaks)} leaks, {len(tampered)} rows of B changed",
        passed=isolated,
    )
    server_errors = sorted({e.split(" as ")[0].split(" ", 2)[2] for e in errors})
    record(
        check=CHECK + " (HTTP, no 5xx)",
        tried="the same requests",
        result="no 5xx"
        if not errors
        else f"{len(errors)} answers were 5xx on {len(server_errors)} paths: {server_errors}",
        passed=not errors,
    )
    assert requests > 500, f"only {requests} requests: did discovery find the routes?"
    assert not leaks, "\n".join(leaks[:20])
    assert not tampered, "\n".join(tampered[:20])


# The 5xx found by the HTTP probe, for the next test (the probe runs once).
HTTP_ERRORS: list[str] = []


def test_http_routes_never_answer_5xx(world: World) -> None:
    if not HTTP_ERRORS:
        pytest.skip("runs after test_http_routes_never_reach_business_b")
    assert HTTP_ERRORS == ["none"], "\n".join(HTTP_ERRORS)


async def ws_frames(path: str, host: str, session: str | None, frames: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    communicator = WebsocketCommunicator(websocket_application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    received: list[str] = []
    if connected:
        for frame in frames:
            await communicator.send_json_to(frame)
            while not await communicator.receive_nothing(timeout=0.15):
                output = await communicator.receive_output(timeout=1)
                if output.get("type") == "websocket.close":
                    break
                received.append(str(output.get("text") or output.get("bytes") or ""))
    await communicator.disconnect()
    return connected, received


def test_websocket_routes_and_frames_never_reach_business_b(live_db: World) -> None:
    from asgiref.sync import async_to_sync

    b = live_db.business_b
    secrets = plant_secrets(b)
    before = snapshot(b)
    people = actors(live_db)
    sessions = {name: session_key(**kwargs) if kwargs else None for name, kwargs in people.items()}
    routes = websocket_routes()
    leaks: list[str] = []
    accepted_on_b: list[str] = []
    frames_sent = 0
    for path, consumer in routes:
        types = frame_types(consumer) if consumer else []
        frames = [frame_payload(t, secrets) for t in types]
        for host in (b.host, live_db.business_a.host, settings.PARLEY_DOMAIN):
            for name, session in sessions.items():
                connected, received = async_to_sync(ws_frames)(path, host, session, frames)
                connection.set_schema_to_public()
                if connected:
                    frames_sent += len(frames)
                    if host == b.host and name in {"owner A", "agent A"}:
                        accepted_on_b.append(f"{path} on B as {name}")
                for text in received:
                    for marker in secrets.leaked_in(text):
                        leaks.append(f"{path} on {host} as {name} received {marker!r}")
    tampered = tampering(before, b, secrets)
    passed = not (leaks or tampered or accepted_on_b)
    record(
        check=CHECK + " (websockets)",
        tried=f"{len(routes)} routes × 3 hosts × 4 actors, every frame type "
        f"({sum(len(frame_types(c)) for _, c in routes if c)}) aimed at B: {frames_sent} frames",
        result="no leak, B unchanged, A's staff refused on B"
        if passed
        else f"{len(leaks)} leaks, {len(tampered)} rows, {len(accepted_on_b)} accepted",
        passed=passed,
    )
    assert frames_sent > 0
    assert not accepted_on_b, accepted_on_b
    assert not leaks, "\n".join(leaks[:20])
    assert not tampered, "\n".join(tampered[:20])
