"""Rich messages through the API and webhooks: upload a file and send it by media id, templates'
buttons become real buttons, and the customer's tap comes back with its choice id (event stream
and webhook). Business B's key never reaches business A's files."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from attachments.models import Attachment
from messaging.models import Message
from messaging.services import message_send_customer
from notifications import webhooks
from notifications.models import Notification
from tests.attachments.files import HTML, PDF
from tests.conftest import World, in_business
from tests.jobs import run_queued_jobs
from tests.messaging.test_api import Api, api, api_for, make_customer, send_flight
from tests.notifications.conftest import approved_template
from tests.notifications.test_webhooks import Receiver, fresh_business, loopback_allowed, receiver

__all__ = ["api", "fresh_business", "loopback_allowed", "receiver"]  # fixtures used here


def upload(api: Api, name: str, data: bytes, key: str = "") -> Any:
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.client.post("/api/v1/media", {"file": SimpleUploadedFile(name, data)}, **api.auth, **extra)


def test_upload_then_send_by_media_id_with_buttons(world: World) -> None:
    api = api_for(world)
    first = upload(api, "boarding-pass.pdf", PDF, key="media-1")
    assert first.status_code == 201, first.content
    media = first.json()
    assert media["kind"] == "document" and media["content_type"] == "application/pdf"
    again = upload(api, "boarding-pass.pdf", PDF, key="media-1")
    assert again.status_code == 200 and again.json()["id"] == media["id"]  # a retry, not a second file
    refused = upload(api, "x.jpg", HTML)
    assert refused.status_code == 415 and refused.json()["code"] == "unsupported_type"

    customer = make_customer()
    with in_business(world.business_a):
        message_send_customer(business=world.business_a, customer=customer, body="Where is my boarding pass?")
    answer = api.post(
        "messages",
        {
            "to": customer.phone_number,
            "text": "Here it is.",
            "media_id": media["id"],
            "interactive": {"type": "buttons", "options": [{"id": "thanks", "title": "Thanks"}]},
        },
    )
    assert answer.status_code == 201 and answer.json()["status"] == "sent", answer.content
    with in_business(world.business_a):
        notification = Notification.objects.get(pk=answer.json()["id"])
        message = Message.objects.get(pk=notification.message_id)
        assert message.interactive["options"][0]["id"] == "thanks"
        assert Attachment.objects.get(pk=media["id"]).message_id == message.pk
    # Bad shapes are refused before anything is sent.
    bad = api.post(
        "messages", {"to": customer.phone_number, "text": "x", "interactive": {"type": "buttons", "options": []}}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"


def test_business_b_cannot_send_business_a_media(world: World) -> None:
    api_a, api_b = api_for(world), api_for(world, world.business_b)
    media = upload(api_a, "a.pdf", PDF).json()
    customer = make_customer()
    with in_business(world.business_b):
        message_send_customer(business=world.business_b, customer=customer, body="hi")
    answer = api_b.post("messages", {"to": customer.phone_number, "text": "yours?", "media_id": media["id"]})
    assert answer.json()["status"] == "failed" and answer.json()["failure"]["code"] == "invalid"
    with in_business(world.business_b):
        assert not Attachment.objects.filter(message__isnull=False).filter(pk=media["id"]).exists()


def test_template_buttons_are_tapped_and_the_choice_is_in_the_event_stream(world: World, api: Api) -> None:
    with in_business(world.business_a):
        approved_template(
            world.business_a, world.staff, name="rebook_offer", buttons=["Rebook", "Refund", "Talk to us"]
        )
    customer = make_customer()
    after = api.get("events?after=0").json()
    start = after["next_after"] if "next_after" in after else max([e["id"] for e in after.get("events", [])] or [0])
    sent = api.post(
        "messages",
        {
            "to": customer.phone_number,
            "template": {"name": "rebook_offer", "parameters": {"flight": "LH 9", "time": "9:00"}},
        },
    )
    assert sent.json()["status"] == "sent", sent.content
    with in_business(world.business_a):
        asked = Message.objects.get(pk=Notification.objects.get(pk=sent.json()["id"]).message_id)
        assert "[Rebook]" not in asked.body  # real buttons, not text
        assert [o["id"] for o in asked.interactive["options"]] == ["rebook", "refund", "talk-to-us"]
        tap = message_send_customer(
            business=world.business_a,
            customer=customer,
            body="",
            choice={"message_id": asked.pk, "option_id": "refund"},
        ).message
        assert (tap.body, tap.choice_id, tap.reply_to_id) == ("Refund", "refund", asked.pk)
    events = api.get(f"events?after={start}").json()["events"]
    created = [e for e in events if e["type"] == "message.created" and e["data"]["message"]["id"] == tap.pk]
    assert created and created[0]["data"]["message"]["choice_id"] == "refund"
    assert created[0]["data"]["message"]["reply_to"]["id"] == asked.pk


def test_the_webhook_carries_the_choice_id(fresh_business: Any, receiver: Receiver, loopback_allowed: None) -> None:
    from messaging.services import message_send_agent

    business, owner = fresh_business
    with in_business(business):
        endpoint = webhooks.webhook_endpoint_create(
            business=business, actor=owner, url=receiver.url, event_types=["message.received"]
        )
        receiver.secret = endpoint.secret
        customer = make_customer()
        first = message_send_customer(business=business, customer=customer, body="My flight was cancelled").message
        from accounts.models import Membership

        Membership.objects.get_or_create(user=owner, business=business, defaults={"role": "owner"})
        asked = message_send_agent(
            business=business,
            user=owner,
            conversation_id=first.conversation_id,
            body="What would you like?",
            interactive={"type": "buttons", "options": [{"id": "rebook", "title": "Rebook"}]},
        ).message
        message_send_customer(
            business=business, customer=customer, body="", choice={"message_id": asked.pk, "option_id": "rebook"}
        )
    from notifications.jobs import webhook_dispatch

    webhook_dispatch.defer(schema_name=business.schema_name)
    run_queued_jobs(queues=["webhooks"])
    received = [hit["json"]["data"]["message"] for hit in receiver.received if hit["valid"]]
    assert [m["choice_id"] for m in received] == ["", "rebook"]
    assert received[1]["reply_to"]["id"] == asked.pk and received[1]["body"] == "Rebook"


def test_templates_list_their_buttons(world: World, api: Api) -> None:
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    customer = make_customer()
    answer = send_flight(api, customer.phone_number)
    assert answer.json()["status"] == "sent"
    with in_business(world.business_a):
        message = Message.objects.get(pk=Notification.objects.get(pk=answer.json()["id"]).message_id)
        assert [o["title"] for o in message.interactive["options"]] == ["OK", "Call me"]
