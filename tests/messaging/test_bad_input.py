"""Bad input gets a clear answer, never a 500 or a server_error frame."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from config.routing import websocket_application
from messaging.models import Contact, Conversation
from messaging.services import MessagingError, message_send_customer
from tests.conftest import World, business_client, public_client
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect


@pytest.mark.parametrize("path", ["/inbox/api/conversations/?q=a%00b", "/contacts/?q=a%00b"])
def test_nul_bytes_in_searches_are_harmless(world: World, path: str) -> None:
    assert business_client(world.business_a, world.agent_a).get(path).status_code == 200


def test_nul_bytes_in_the_directory_search_are_harmless(world: World) -> None:
    assert public_client().get("/businesses/?q=a%00b").status_code == 200


def test_nul_bytes_in_bodies_and_contact_fields_are_dropped(world: World) -> None:
    customer = make_customer()
    with tenant_context(world.business_a):
        message = message_send_customer(business=world.business_a, customer=customer, body="a\x00b").message
        assert message.body == "ab"
        with pytest.raises(MessagingError) as error:
            message_send_customer(business=world.business_a, customer=customer, body="\x00 ")
        assert error.value.code == "empty"
        with pytest.raises(MessagingError) as error:
            message_send_customer(business=world.business_a, customer=customer, body="hi", client_msg_id="x\x00")
        assert error.value.code == "invalid"
        contact_id = Conversation.objects.get(pk=message.conversation_id).contact_id
    client = business_client(world.business_a, world.agent_a)
    response = client.post("/contacts/", {"contact_id": contact_id, "name": "Frau\x00 Huber", "notes": "n\x00"})
    assert response.status_code == 302
    with tenant_context(world.business_a):
        assert Contact.objects.filter(pk=contact_id, name="Frau Huber", notes="n").exists()


async def test_non_finite_numbers_in_frames_are_invalid_not_server_errors(live_db: World) -> None:
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    for frame in (
        '{"type": "ack", "conversation_id": 1, "up_to": 1e400, "read": true}',
        '{"type": "view", "conversation_id": 1e400}',
        '{"type": "assign", "conversation_id": 1, "assignee_id": -Infinity}',
    ):
        await agent_ws.send_to(text_data=frame)
        assert (await receive_until(agent_ws, "error"))["code"] in {"invalid", "not_found"}
    await agent_ws.disconnect()


async def test_oversized_frames_are_refused_before_parsing(live_db: World) -> None:
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    await agent_ws.send_to(text_data='{"type": "ping", "pad": "' + "x" * 200_000 + '"}')
    assert (await receive_until(agent_ws, "error"))["code"] == "bad_frame"
    await agent_ws.send_json_to({"type": "ping"})
    assert (await receive_until(agent_ws, "pong"))["id"] is None
    await agent_ws.disconnect()


async def test_error_frames_speak_the_pages_language(live_db: World) -> None:
    """Websockets have no LocaleMiddleware: the consumer picks the language the page was served
    in (the language cookie, then Accept-Language), also for messages the services raise."""
    session = await adb(session_key)(user=live_db.agent_a)
    host = live_db.business_a.host
    base = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
    with translation.override("de"):
        bad_frame_de = gettext("Every frame must be a JSON object with a type.")
        not_found_de = gettext("This conversation does not exist.")
    assert bad_frame_de != "Every frame must be a JSON object with a type."

    cookie = f"{settings.SESSION_COOKIE_NAME}={session}; {settings.LANGUAGE_COOKIE_NAME}=de"
    for headers, expected in (
        ([(b"cookie", cookie.encode())], bad_frame_de),
        (
            [
                (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()),
                (b"accept-language", b"de-AT,de;q=0.9"),
            ],
            bad_frame_de,
        ),
        (
            [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode())],
            "Every frame must be a JSON object with a type.",
        ),
    ):
        communicator = WebsocketCommunicator(websocket_application, "/ws/inbox/", headers=base + headers)
        connected, _code = await communicator.connect(timeout=5)
        assert connected
        await communicator.send_to(text_data="not json")
        assert (await receive_until(communicator, "error"))["message"] == expected
        if expected == bad_frame_de:
            # Raised by a service in the database thread: the language goes along.
            await communicator.send_json_to({"type": "send", "conversation_id": "x", "body": "hi"})
            assert (await receive_until(communicator, "error"))["message"] == not_found_de
        await communicator.disconnect()
