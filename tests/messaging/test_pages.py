"""Pages and services without websockets: inbox, chat, directory, /me/ list, send rules."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from accounts.models import Customer
from billing.models import UsageRecord
from customers.models import Block
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from directory.models import CustomerThread
from messaging.models import Conversation, Message
from messaging.services import MessagingError, message_send_agent, message_send_customer, message_send_template
from tenancy.models import Business
from tests.conftest import World, business_client, public_client
from tests.messaging.conftest import make_customer


def signed_in(client: Client, customer: Customer) -> Client:
    session = client.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    return client


def say(world: World, customer: Customer, body: str) -> Message:
    with tenant_context(world.business_a):
        return message_send_customer(business=world.business_a, customer=customer, body=body).message


def test_inbox_is_for_members_only(world: World) -> None:
    assert business_client(world.business_a, world.agent_b).get("/inbox/").status_code == 403
    assert business_client(world.business_a).get("/inbox/").status_code == 302
    response = business_client(world.business_a, world.agent_a).get("/inbox/")
    assert response.status_code == 200
    assert b'id="inbox-config"' in response.content and b"parley/inbox.js" in response.content


def _inbox_strings(client: Client, language: str) -> dict[str, str]:
    from django.utils import translation

    try:
        page = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    finally:
        translation.deactivate()  # the request activated its language on this thread
    config = page.split('<script id="inbox-config" type="application/json">', 1)[1].split("</script>", 1)[0]
    return json.loads(config)["strings"]


def test_inbox_names_authors_that_are_not_an_agent(world: World) -> None:
    """The away message (author_kind "system") and API sends have no author's name: the inbox
    labels them (tests/messaging/test_inbox_composer_browser.py), in the page's language."""
    client = business_client(world.business_a, world.agent_a)
    english, german = _inbox_strings(client, "en"), _inbox_strings(client, "de")
    assert (english["automaticReply"], english["api"]) == ("Automatic reply", "API")
    assert (german["automaticReply"], german["api"]) == ("Automatische Antwort", "API")


def test_inbox_json_lists_and_pages_history(world: World) -> None:
    customer = make_customer("Ida")
    for n in range(35):
        message = say(world, customer, f"line {n}")
    client = business_client(world.business_a, world.agent_a)
    rows = client.get("/inbox/api/conversations/?tab=unassigned").json()["conversations"]
    assert any(r["id"] == message.conversation_id and r["unread"] == 35 for r in rows)
    page = client.get(f"/inbox/api/conversations/{message.conversation_id}/messages/").json()
    assert page["has_more"] and [m["body"] for m in page["messages"]][-1] == "line 34"
    older = client.get(
        f"/inbox/api/conversations/{message.conversation_id}/messages/?before={page['messages'][0]['id']}"
    ).json()
    assert [m["body"] for m in older["messages"]] == [f"line {n}" for n in range(5)] and not older["has_more"]
    assert client.get("/inbox/api/conversations/999999999/messages/").status_code == 404
    # Another business's agent cannot read it through its own host or this one.
    assert business_client(world.business_a, world.agent_b).get("/inbox/api/conversations/").status_code == 403


def test_chat_page_asks_strangers_to_sign_in(world: World) -> None:
    response = business_client(world.business_a).get("/chat/")
    assert response.status_code == 200
    assert b"/me/?next=http%3A%2F%2Falpha.parley.localhost" in response.content
    assert b"chat.js" not in response.content


def test_chat_page_shows_history_for_the_signed_in_customer(world: World) -> None:
    customer = make_customer()
    say(world, customer, "Ist der Kuchen fertig?")
    client = signed_in(business_client(world.business_a), customer)
    response = client.get("/chat/")
    config = json.loads(response.content.split(b'id="chat-config" type="application/json">')[1].split(b"</script>")[0])
    assert [m["body"] for m in config["messages"]] == ["Ist der Kuchen fertig?"]
    assert client.get("/chat/messages/").json()["messages"][0]["body"] == "Ist der Kuchen fertig?"
    assert business_client(world.business_a).get("/chat/messages/").status_code == 401


def test_notes_never_reach_the_customer_page(world: World) -> None:
    customer = make_customer()
    message = say(world, customer, "hi")
    with tenant_context(world.business_a):
        message_send_agent(
            business=world.business_a,
            user=world.agent_a,
            conversation_id=message.conversation_id,
            body="secret",
            kind="note",
        )
    client = signed_in(business_client(world.business_a), customer)
    assert b"secret" not in client.get("/chat/").content
    assert "secret" not in str(client.get("/chat/messages/").json())


def test_public_list_keeps_no_text_and_counts_unread(world: World) -> None:
    customer = make_customer()
    message = say(world, customer, "Hallo")
    with tenant_context(world.business_a):
        message_send_agent(
            business=world.business_a, user=world.agent_a, conversation_id=message.conversation_id, body="Hi!"
        )
    thread = CustomerThread.objects.get(customer=customer, business=world.business_a)
    assert thread.unread_count == 1
    assert {f.name for f in CustomerThread._meta.get_fields()} == {
        "id",
        "customer",
        "business",
        "last_activity_at",
        "unread_count",
    }
    response = signed_in(public_client(), customer).get("/me/conversations/")
    assert world.business_a.display_name.encode() in response.content
    assert b'data-unread="1"' in response.content and b"me.js" in response.content
    # Someone else sees nothing of it.
    assert (
        world.business_a.display_name.encode()
        not in signed_in(public_client(), make_customer()).get("/me/conversations/").content
    )


def test_templates_respect_block_suspension_and_bill_their_category(world: World) -> None:
    customer = make_customer()
    kwargs = {
        "customer": customer,
        "template_name": "flight_change",
        "body": "Your flight AU 412 now leaves at 10:40.",
        "category": "utility",
        "author_key": "api:test",
    }
    with tenant_context(world.business_a):
        result = message_send_template(business=world.business_a, **kwargs, client_msg_id="t1")
        assert result.message.kind == "template"
        # Outside any service window, a free-form reply is still refused.
        with pytest.raises(MessagingError) as refused:
            message_send_agent(
                business=world.business_a, user=world.agent_a, conversation_id=result.message.conversation_id, body="hi"
            )
        assert refused.value.code == "window_closed"
    assert UsageRecord.objects.get(customer_id=customer.pk).category == "utility"

    Business.objects.filter(pk=world.business_a.pk).update(status=Business.Status.SUSPENDED)  # rolled back
    with tenant_context(world.business_a), pytest.raises(MessagingError) as suspended:
        message_send_template(business=world.business_a, **kwargs, client_msg_id="t2")
    assert suspended.value.code == "suspended"
    Business.objects.filter(pk=world.business_a.pk).update(status=Business.Status.ACTIVE)

    Block.objects.create(customer=customer, business=world.business_a)
    with tenant_context(world.business_a), pytest.raises(MessagingError) as blocked:
        message_send_template(business=world.business_a, **kwargs, client_msg_id="t3")
    assert blocked.value.code == "blocked"
    assert UsageRecord.objects.filter(customer_id=customer.pk).count() == 1


def test_messages_are_validated(world: World) -> None:
    customer = make_customer()
    with tenant_context(world.business_a):
        for body, code in (("   ", "empty"), ("x" * 5000, "too_long"), (None, "empty")):
            with pytest.raises(MessagingError) as error:
                message_send_customer(business=world.business_a, customer=customer, body=body)
            assert error.value.code == code
        assert not Conversation.objects.filter(contact__customer=customer, messages__isnull=False).exists()


def test_contacts_page_edits_names_and_notes(world: World) -> None:
    customer = make_customer()
    message = say(world, customer, "hi")
    client = business_client(world.business_a, world.agent_a)
    with tenant_context(world.business_a):
        contact_id = Conversation.objects.get(pk=message.conversation_id).contact_id
    response = client.post("/contacts/", {"contact_id": contact_id, "name": "Frau Huber", "notes": "prefers German"})
    assert response.status_code == 302
    page = client.get("/contacts/?q=Huber").content.decode()
    assert "Frau Huber" in page and "prefers German" in page
    assert f"/inbox/#c{message.conversation_id}" in page
    assert client.post("/contacts/", {"contact_id": "abc", "name": "x"}).status_code == 302


def test_replying_reads_the_customers_messages(world: World) -> None:
    customer = make_customer()
    message = say(world, customer, "anyone there?")
    with tenant_context(world.business_a):
        message_send_agent(
            business=world.business_a, user=world.agent_a, conversation_id=message.conversation_id, body="Yes!"
        )
        message.refresh_from_db()
        assert message.status == "read" and message.read_at is not None
        assert Conversation.objects.get(pk=message.conversation_id).unread_count == 0
