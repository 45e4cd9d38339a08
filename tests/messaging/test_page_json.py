"""The JSON the inbox and chat pages read (messaging.views, DRF): the same shapes as the
websocket frames, query parameters checked with clear 4xx answers, one business never sees
another's conversations."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from accounts.models import Customer
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging import events, services
from messaging.models import Event, Message
from tests.conftest import World, business_client, unique
from tests.messaging.conftest import make_customer
from tests.messaging.test_event_schemas import _check


def signed_in(client: Client, customer: Customer) -> Client:
    session = client.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    return client


def stored_frames(world: World, message: Message) -> tuple[dict, dict]:
    """The message and its conversation as the websocket frames carry them."""
    with tenant_context(world.business_a):
        created = Event.objects.get(type=events.MESSAGE_CREATED, conversation_id=message.conversation_id)
        updated = Event.objects.filter(type=events.CONVERSATION_UPDATED, conversation_id=message.conversation_id)
        return json.loads(created.frame)["message"], json.loads(updated.latest("id").frame)["conversation"]


def test_pages_carry_the_websocket_frames_shapes_to_the_letter(world: World) -> None:
    name = unique("Shape ")
    customer = make_customer(name)
    with tenant_context(world.business_a):
        message = services.message_send_customer(business=world.business_a, customer=customer, body="hi").message
    frame_message, frame_conversation = stored_frames(world, message)

    agent = business_client(world.business_a, world.agent_a)
    listed = agent.get("/inbox/api/conversations/", {"q": name})
    assert listed.status_code == 200 and listed["Content-Type"] == "application/json"
    body = listed.json()
    assert body["conversations"] == [frame_conversation]
    assert set(body["counts"]) == {"mine", "unassigned", "all", "queue"}
    assert all(isinstance(n, int) for n in body["counts"].values())

    thread = agent.get(f"/inbox/api/conversations/{message.conversation_id}/messages/").json()
    assert thread == {
        "messages": [frame_message],
        "has_more": False,
        "conversation": frame_conversation,
        "activity": [],
    }
    assert not _check(thread["messages"][0], events.MessageShape, "message")
    assert not _check(thread["conversation"], events.ConversationShape, "conversation")

    chat = signed_in(business_client(world.business_a), customer).get("/chat/messages/").json()
    assert chat == {"messages": [frame_message], "has_more": False}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/inbox/api/conversations/?tab=everything", "tab"),
        ("/inbox/api/conversations/?status=sleeping", "status"),
        ("/inbox/api/conversations/?q=" + "x" * 101, "q"),
        ("/inbox/api/conversations/1/messages/?before=abc", "before"),
        ("/inbox/api/conversations/1/messages/?before=0", "before"),
        ("/inbox/api/conversations/1/messages/?before=1e400", "before"),
    ],
)
def test_bad_parameters_get_a_clear_400(world: World, path: str, field: str) -> None:
    response = business_client(world.business_a, world.agent_a).get(path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"] and list(error["fields"]) == [field]


def test_bad_history_parameters_on_the_chat_page_too(world: World) -> None:
    client = signed_in(business_client(world.business_a), make_customer())
    response = client.get("/chat/messages/?before=-3")
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["before"]


def test_errors_say_who_may_ask(world: World) -> None:
    anonymous = business_client(world.business_a).get("/inbox/api/conversations/")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    stranger = business_client(world.business_a, world.agent_b).get("/inbox/api/conversations/1/messages/")
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "forbidden"
    missing = business_client(world.business_a, world.agent_a).get("/inbox/api/conversations/999999999/messages/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    chat = business_client(world.business_a).get("/chat/messages/")
    assert chat.status_code == 401 and chat.json()["error"]["code"] == "unauthenticated"
    posted = business_client(world.business_a, world.agent_a).post("/inbox/api/conversations/")
    assert posted.status_code == 405 and posted.json()["error"]["code"] == "method_not_allowed"


def test_german_errors_on_the_german_page(world: World) -> None:
    client = business_client(world.business_a)
    response = client.get("/chat/messages/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 401 and response.json()["error"]["message"] == "Bitte melden Sie sich an."


def test_business_b_never_reads_business_a(world: World) -> None:
    name = unique("Secret ")
    customer = make_customer(name)
    with tenant_context(world.business_a):
        message = services.message_send_customer(business=world.business_a, customer=customer, body="private").message
    agent_b = business_client(world.business_b, world.agent_b)
    # B's own host: A's conversation id names nothing there, and A's customer is not in B's list.
    assert agent_b.get(f"/inbox/api/conversations/{message.conversation_id}/messages/").status_code == 404
    assert agent_b.get("/inbox/api/conversations/", {"q": name}).json()["conversations"] == []
    # A's host: B's agent has no seat there.
    on_a = business_client(world.business_a, world.agent_b)
    assert on_a.get(f"/inbox/api/conversations/{message.conversation_id}/messages/").status_code == 403
    # The customer's page on B's host shows nothing of their conversation with A.
    assert signed_in(business_client(world.business_b), customer).get("/chat/messages/").json() == {
        "messages": [],
        "has_more": False,
    }


def test_the_pages_json_is_not_in_the_public_api_schema(world: World) -> None:
    schema = business_client(world.business_a).get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    assert "/inbox/" not in schema.content.decode() and "/chat/" not in schema.content.decode()
