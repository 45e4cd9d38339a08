"""Issue 10 defect 2: websocket rights are not only checked at connect. Seat removal, logout,
customer sign-out, password change and suspension close the affected sockets at once, and every
frame runs on current rights (so a revocation whose signal was lost still holds)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django_tenants.utils import tenant_context

from accounts.models import Customer, Membership, User
from accounts.services import seat_remove
from config.websocket import CloseCode
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging import revocation
from messaging.services import message_send_customer
from tenancy.services import business_reactivate, business_suspend
from tests.conftest import PASSWORD, World, host_client
from tests.messaging.conftest import (
    adb,
    drain,
    last_event_id,
    make_customer,
    receive_until,
    resumed,
    session_key,
    ws_connect,
)

pytestmark = pytest.mark.django_db(transaction=False)


def exact_code(output: dict[str, Any]) -> int:
    """A close message's code, which must be a plain int: Daphne's websocket library (autobahn)
    refuses anything else, an IntEnum too, and the socket then stayed open."""
    code = output["code"]
    assert type(code) is int, f"close code {code!r} is a {type(code).__name__}, not an int"
    return code


async def closed_with(ws: WebsocketCommunicator, timeout: float = 5) -> int:
    """The close code the server sends (frames before it are skipped)."""
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return exact_code(output)


async def frames_until_closed(ws: WebsocketCommunicator, timeout: float = 5) -> tuple[list[dict[str, Any]], int]:
    """The frames the server sends before it closes the socket, and the close code."""
    frames = []
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return frames, exact_code(output)
        frames.append(json.loads(output["text"]))


TempAgent = Callable[[], tuple[User, Membership]]


def customer_send(world: World, customer: Customer, body: str) -> None:
    with tenant_context(world.business_a):
        message_send_customer(business=world.business_a, customer=customer, body=body)


def lose_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer is at-most-once: revocations whose signal never arrives must hold too."""

    class Silent:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            pass

    monkeypatch.setattr(revocation, "get_channel_layer", lambda: Silent())


@pytest.fixture
def signals_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    lose_signals(monkeypatch)


async def test_a_removed_seat_closes_the_socket_at_once_and_cannot_resume(
    live_db: World, temp_agent: TempAgent
) -> None:
    user, membership = await adb(temp_agent)()
    session = await adb(session_key)(user=user)
    start = await adb(last_event_id)(live_db.business_a)
    ws, ok, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=session)
    assert ok
    await resumed(ws, start)
    await adb(seat_remove)(membership=membership, actor=live_db.owner_a)
    assert await closed_with(ws) == CloseCode.FORBIDDEN  # no heartbeat needed
    # It stops receiving: a new customer message does not reach the closed socket.
    await adb(customer_send)(live_db, await adb(make_customer)(), "after removal")
    assert all(f.get("type") != "message.created" for f in await drain(ws))
    _ws, connected, code = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=session)
    assert (connected, code) == (False, CloseCode.FORBIDDEN)


async def test_a_removed_seat_whose_signal_was_lost_cannot_resume(
    live_db: World, signals_lost: None, temp_agent: TempAgent
) -> None:
    user, membership = await adb(temp_agent)()
    ws, ok, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=user))
    assert ok
    await adb(customer_send)(live_db, await adb(make_customer)(), "internal history")
    await adb(seat_remove)(membership=membership, actor=live_db.owner_a)
    await ws.send_json_to({"type": "resume", "after": 0})  # the whole stream, notes and numbers
    frames, code = await frames_until_closed(ws)
    assert code == CloseCode.FORBIDDEN
    assert [f for f in frames if f["id"] is not None or f["type"] == "resumed"] == []  # not one replayed event


async def test_logout_closes_the_inbox_socket(live_db: World, temp_agent: TempAgent) -> None:
    user, _membership = await adb(temp_agent)()
    client: Client = await adb(host_client)(live_db.business_a.host, user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    other_session = await adb(session_key)(user=user)  # the same agent on another computer
    ws, ok, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=session)
    other, ok_other, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=other_session)
    assert ok and ok_other
    response = await adb(client.post)("/accounts/logout/")
    assert response.status_code in (200, 302)
    assert await closed_with(ws) == CloseCode.UNAUTHENTICATED
    # Logging out here does not end the other computer's session.
    await other.send_json_to({"type": "ping"})
    assert (await receive_until(other, "pong"))["id"] is None
    await other.disconnect()


async def test_a_password_change_closes_the_other_sessions_sockets(live_db: World, temp_agent: TempAgent) -> None:
    user, _membership = await adb(temp_agent)()
    client: Client = await adb(host_client)(live_db.business_a.host, user)
    here = client.cookies[settings.SESSION_COOKIE_NAME].value
    elsewhere = await adb(session_key)(user=user)
    ws_here, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=here)
    ws_elsewhere, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=elsewhere)
    new_password = "another-horse-battery-staple-43"
    response = await adb(client.post)(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302, response.content[:500]
    assert await closed_with(ws_elsewhere) == CloseCode.UNAUTHENTICATED
    # Django gives the session that changed it a new key (the socket's old key is gone, so that
    # socket closes too); with the browser's new cookie the inbox connects again.
    assert await closed_with(ws_here) == CloseCode.UNAUTHENTICATED
    renewed = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert renewed != here
    again, connected, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=renewed)
    assert connected
    await again.disconnect()
    _ws, connected, code = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=elsewhere)
    assert (connected, code) == (False, CloseCode.UNAUTHENTICATED)


def _customer_client(customer: Customer) -> tuple[Client, str]:
    client = Client(HTTP_HOST=settings.PARLEY_DOMAIN)
    session = client.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return client, str(session.session_key)


@pytest.mark.parametrize("lost", [False, True], ids=["signalled", "signal-lost"])
async def test_a_customer_who_signs_out_cannot_send_on_an_open_chat(
    live_db: World, lost: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lost:
        lose_signals(monkeypatch)
    customer = await adb(make_customer)()
    client, session = await adb(_customer_client)(customer)
    chat, ok, _ = await ws_connect("/ws/chat/", host=live_db.business_a.host, session=session)
    me, ok_me, _ = await ws_connect("/ws/me/", host=settings.PARLEY_DOMAIN, session=session)
    assert ok and ok_me
    response = await adb(client.post)("/me/sign-out/")
    assert response.status_code == 302
    await chat.send_json_to({"type": "send", "body": "after sign-out", "client_msg_id": "gone"})
    assert await closed_with(chat) == CloseCode.UNAUTHENTICATED
    if not lost:
        assert await closed_with(me) == CloseCode.UNAUTHENTICATED

    def sent() -> bool:
        with tenant_context(live_db.business_a):
            from messaging.models import Message

            return Message.objects.filter(client_msg_id="gone", author_key=f"customer:{customer.pk}").exists()

    assert not await adb(sent)()


async def test_a_signed_out_customers_sends_get_no_answer_only_the_close(live_db: World, signals_lost: None) -> None:
    """A send is validated and queued while its socket's rights are read (issue 9): whatever it
    would answer — a refusal of a bad frame, an acceptance — waits for that read, so a socket
    whose rights are gone hears nothing but its close code, and nothing of it is written."""
    customer = await adb(make_customer)()
    client, session = await adb(_customer_client)(customer)
    chat, ok, _ = await ws_connect("/ws/chat/", host=live_db.business_a.host, session=session)
    assert ok
    response = await adb(client.post)("/me/sign-out/")
    assert response.status_code == 302
    await chat.send_json_to({"type": "send", "body": "", "client_msg_id": "empty"})  # refused if it were checked
    await chat.send_json_to({"type": "send", "body": "after sign-out", "client_msg_id": "gone-too"})
    assert await frames_until_closed(chat) == ([], CloseCode.UNAUTHENTICATED)

    def sent() -> bool:
        with tenant_context(live_db.business_a):
            from messaging.models import Message

            return Message.objects.filter(author_key=f"customer:{customer.pk}").exists()

    assert not await adb(sent)()


async def test_suspension_closes_every_socket_of_the_business(live_db: World) -> None:
    beta = live_db.business_b
    customer = await adb(make_customer)()
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=beta.host, session=await adb(session_key)(user=live_db.agent_b)
    )
    chat_ws, ok_chat, _ = await ws_connect(
        "/ws/chat/", host=beta.host, session=await adb(session_key)(customer=customer)
    )
    assert ok and ok_chat
    try:
        await adb(business_suspend)(business=beta, actor=live_db.staff, reason="test")
        assert await closed_with(agent_ws) == CloseCode.FORBIDDEN
        assert await closed_with(chat_ws) == CloseCode.FORBIDDEN
        _ws, connected, code = await ws_connect(
            "/ws/inbox/", host=beta.host, session=await adb(session_key)(user=live_db.agent_b)
        )
        assert (connected, code) == (False, CloseCode.FORBIDDEN)
    finally:
        await adb(business_reactivate)(business=beta, actor=live_db.staff)
    # Reactivated: sockets open again.
    again, connected, _ = await ws_connect(
        "/ws/inbox/", host=beta.host, session=await adb(session_key)(user=live_db.agent_b)
    )
    assert connected
    await again.disconnect()


@pytest.mark.parametrize("lost", [False, True], ids=["signalled", "signal-lost"])
async def test_deleting_the_account_closes_the_customers_open_chat(
    live_db: World, lost: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a customer who deletes their account can no longer write on a chat page that
    was open before — whether the revocation signal arrives or the next frame finds out."""
    from customers.privacy import customer_account_delete

    if lost:
        lose_signals(monkeypatch)
    customer = await adb(make_customer)()
    _client, session = await adb(_customer_client)(customer)
    chat, ok, _ = await ws_connect("/ws/chat/", host=live_db.business_a.host, session=session)
    assert ok
    await adb(customer_account_delete)(customer=customer)
    await chat.send_json_to({"type": "send", "body": "after deletion", "client_msg_id": "deleted"})
    assert await closed_with(chat) == CloseCode.UNAUTHENTICATED

    def sent() -> bool:
        with tenant_context(live_db.business_a):
            from messaging.models import Message

            return Message.objects.filter(client_msg_id="deleted", author_key=f"customer:{customer.pk}").exists()

    assert not await adb(sent)()


async def test_versions_read_on_the_loop_equal_those_read_at_admission() -> None:
    """A socket's admission reads the rights versions on a database thread (the cache) and its
    frames read them on the event loop (one MGET): the same versions must compare equal, or every
    socket's first frame would pay for a full re-check."""
    from asgiref.sync import sync_to_async

    from messaging import revocation

    if not revocation.reads_on_loop():
        pytest.skip("the versions are read on the loop only with the Redis cache")
    from django.core.cache import cache

    keys = revocation.rights_keys(user_id=987_654, business_id=987_653)
    await sync_to_async(cache.delete_many)(keys)
    await sync_to_async(revocation._bump)(keys[1])
    await sync_to_async(revocation._bump)(keys[1])
    at_admission = await sync_to_async(revocation.rights_versions)(keys)
    assert at_admission == {keys[1]: 2}
    assert await revocation.rights_versions_live(keys) == at_admission
