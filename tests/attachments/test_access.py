"""Private files over HTTP: uploads from the chat page and the inbox, the access check that
redirects to a signed URL, the URL's expiry, and that nobody else — another customer, another
business's host or members — ever gets the bytes."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer
from attachments.models import Attachment
from messaging.services import message_send_agent, message_send_customer
from tests.attachments.files import HTML, PDF, png
from tests.conftest import World, business_client
from tests.messaging.conftest import make_customer
from tests.messaging.test_pages import signed_in


def customer_client(world: World, customer: Customer, *, business: object = None) -> Client:
    return signed_in(business_client(business or world.business_a), customer)  # type: ignore[arg-type]


def upload(client: Client, path: str, name: str, data: bytes, **fields: object) -> dict:
    response = client.post(path, {"file": SimpleUploadedFile(name, data), **fields})
    return {"status": response.status_code, **response.json()}


def fetch(client: Client, url: str) -> tuple[int, bytes, dict[str, str]]:
    """Follow the access check's redirect to the signed URL and read the file."""
    first = client.get(url)
    if first.status_code != 302:
        return first.status_code, first.content, dict(first.headers)
    response = client.get(first["Location"])
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    return response.status_code, body, dict(response.headers)


def test_a_customer_uploads_sends_and_both_sides_open_the_file(world: World) -> None:
    customer = make_customer("Uma")
    client = customer_client(world, customer)
    answer = upload(client, "/chat/attachments/", "boarding.pdf", PDF, upload_key="u1")
    assert answer["status"] == 201, answer
    attachment = answer["attachment"]
    assert attachment["kind"] == "document" and attachment["url"] == f"/attachments/{attachment['id']}/"
    with tenant_context(world.business_a):
        sent = message_send_customer(
            business=world.business_a, customer=customer, body="", attachment_id=attachment["id"]
        ).message
        assert Attachment.objects.get(pk=attachment["id"]).message_id == sent.pk
        assert sent.conversation.last_message_preview == "📄 Document"
    status, body, headers = fetch(client, attachment["url"])
    assert status == 200 and body == PDF and headers["Content-Type"] == "application/pdf"
    assert "sandbox" in headers["Content-Security-Policy"]
    agent = business_client(world.business_a, world.agent_a)
    assert fetch(agent, attachment["url"])[:2] == (200, PDF)
    # The inbox shows it in the thread's history.
    page = agent.get(f"/inbox/api/conversations/{sent.conversation_id}/messages/").json()
    assert page["messages"][-1]["attachments"][0]["id"] == attachment["id"]


def test_a_retried_upload_returns_the_first_attachment(world: World) -> None:
    customer = make_customer("Rita")
    client = customer_client(world, customer)
    first = upload(client, "/chat/attachments/", "photo.png", png(), upload_key="same")
    again = upload(client, "/chat/attachments/", "photo.png", png(), upload_key="same")
    assert (first["status"], again["status"]) == (201, 200)
    assert first["attachment"]["id"] == again["attachment"]["id"]
    with tenant_context(world.business_a):
        assert Attachment.objects.filter(uploader_key=f"customer:{customer.pk}").count() == 1


def test_bad_uploads_get_clear_errors(world: World) -> None:
    client = customer_client(world, make_customer("Bea"))
    refused = upload(client, "/chat/attachments/", "cat.jpg", HTML)
    assert refused["status"] == 415 and refused["error"]["code"] == "unsupported_type"
    assert client.post("/chat/attachments/", {}).status_code == 400
    assert business_client(world.business_a).post("/chat/attachments/", {}).status_code == 401
    agent = business_client(world.business_a, world.agent_a)
    missing = upload(agent, "/inbox/api/attachments/", "a.png", png(), conversation_id="999999")
    assert missing["status"] == 404
    # Another business's agent has no seat here.
    assert business_client(world.business_a, world.agent_b).post("/inbox/api/attachments/", {}).status_code == 403


def test_signed_urls_expire(world: World) -> None:
    customer = make_customer("Eve")
    client = customer_client(world, customer)
    attachment = upload(client, "/chat/attachments/", "p.png", png())["attachment"]
    location = client.get(attachment["url"])["Location"]
    assert client.get(location).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=301)):
        response = client.get(location)
        assert response.status_code == 403 and response.json()["error"]["code"] == "link_expired"
        # Opening the file again makes a fresh link.
        assert fetch(client, attachment["url"])[0] == 200


def test_another_customer_never_gets_the_file(world: World) -> None:
    owner, other = make_customer("Owner"), make_customer("Other")
    mine = customer_client(world, owner)
    attachment = upload(mine, "/chat/attachments/", "p.png", png())["attachment"]
    with tenant_context(world.business_a):
        message_send_customer(business=world.business_a, customer=owner, body="look", attachment_id=attachment["id"])
    theirs = customer_client(world, other)
    assert theirs.get(attachment["url"]).status_code == 404
    assert theirs.get(attachment["thumbnail_url"]).status_code == 404
    # Even with the owner's signed URL in hand: it was made for someone else.
    location = mine.get(attachment["url"])["Location"]
    assert theirs.get(location).status_code == 404
    assert business_client(world.business_a).get(location).status_code == 404  # signed out
    # A customer cannot send someone else's upload either.
    with tenant_context(world.business_a):
        import pytest

        from messaging.errors import MessagingError

        with pytest.raises(MessagingError):
            message_send_customer(business=world.business_a, customer=other, body="", attachment_id=attachment["id"])


def test_an_agents_file_reaches_only_that_conversations_customer(world: World) -> None:
    customer, stranger = make_customer("Cora"), make_customer("Stranger")
    with tenant_context(world.business_a):
        conversation_id = message_send_customer(
            business=world.business_a, customer=customer, body="hi"
        ).message.conversation_id
    agent = business_client(world.business_a, world.agent_a)
    attachment = upload(agent, "/inbox/api/attachments/", "pass.pdf", PDF, conversation_id=str(conversation_id))[
        "attachment"
    ]
    # Not sent yet: only its uploader's business sees it.
    assert customer_client(world, customer).get(attachment["url"]).status_code == 404
    with tenant_context(world.business_a):
        message_send_agent(
            business=world.business_a,
            user=world.agent_a,
            conversation_id=conversation_id,
            body="",
            attachment_id=attachment["id"],
        )
    assert fetch(customer_client(world, customer), attachment["url"])[:2] == (200, PDF)
    assert customer_client(world, stranger).get(attachment["url"]).status_code == 404


def test_business_b_never_reaches_business_a_files(world: World) -> None:
    customer = make_customer("Tenant")
    client_a = customer_client(world, customer)
    attachment = upload(client_a, "/chat/attachments/", "p.png", png())["attachment"]
    location = client_a.get(attachment["url"])["Location"]
    # The same customer on B's host, and B's members, with A's id or A's signed URL: nothing.
    client_b = customer_client(world, customer, business=world.business_b)
    assert client_b.get(location).status_code == 404
    agent_b = business_client(world.business_b, world.owner_b)
    assert agent_b.get(location).status_code == 404
    with tenant_context(world.business_b):
        assert not Attachment.objects.filter(pk=attachment["id"], uploader_key=f"customer:{customer.pk}").exists()
    assert agent_b.get(attachment["url"]).status_code == 404
    # A's members open it on A's host; B's owner has no seat there.
    assert business_client(world.business_a, world.owner_b).get(attachment["url"]).status_code == 404
