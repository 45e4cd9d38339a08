"""Rich messages over the websockets and in the services: quoted replies, reactions, interactive
buttons and the customer's choice, edits and deletes (sender only, 15 minutes), both sides live."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tenants.utils import tenant_context

from attachments.models import Attachment
from attachments.services import attachment_upload
from messaging.errors import MessagingError, MessagingErrorCode
from messaging.models import Message, Reaction
from messaging.rich import check_rich
from messaging.sending import check_agent_send
from messaging.services import (
    message_delete,
    message_edit,
    message_send_agent,
    message_send_customer,
    reaction_set,
)
from tests.attachments.files import png
from tests.conftest import World
from tests.messaging.conftest import adb, last_event_id, make_customer, receive_until, resumed, session_key, ws_connect

BUTTONS = {
    "type": "buttons",
    "options": [
        {"id": "rebook", "title": "Rebook"},
        {"id": "refund", "title": "Refund"},
        {"id": "talk", "title": "Talk to us"},
    ],
}


async def connect_both(world: World, customer: Any) -> tuple[Any, Any, int]:
    start = await adb(last_event_id)(world.business_a)
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=world.business_a.host, session=await adb(session_key)(user=world.agent_a)
    )
    assert ok
    await resumed(agent_ws, start)
    chat_ws, ok, _ = await ws_connect(
        "/ws/chat/", host=world.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    await resumed(chat_ws, start)
    return agent_ws, chat_ws, start


async def test_replies_reactions_edits_and_deletes_reach_both_sides_live(live_db: World) -> None:
    customer = await adb(make_customer)("Rich")
    agent_ws, chat_ws, _start = await connect_both(live_db, customer)

    def upload() -> int:
        with tenant_context(live_db.business_a):
            attachment, _ = attachment_upload(
                business=live_db.business_a,
                uploader_key=f"customer:{customer.pk}",
                file=SimpleUploadedFile("parcel.png", png()),
                upload_key="ws-photo",
            )
            return attachment.pk

    attachment_id = await adb(upload)()
    await chat_ws.send_json_to({"type": "send", "body": "", "attachment_id": attachment_id, "client_msg_id": "r-1"})
    photo = (await receive_until(chat_ws, "message.created"))["message"]
    assert photo["attachments"][0]["id"] == attachment_id and photo["attachments"][0]["thumbnail_url"]
    conversation_id = photo["conversation_id"]
    await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id})
    await receive_until(agent_ws, "viewing")

    # The agent quotes the photo; the customer sees the quote.
    await agent_ws.send_json_to(
        {
            "type": "send",
            "conversation_id": conversation_id,
            "body": "Sorry about that!",
            "reply_to": photo["id"],
            "client_msg_id": "a-1",
        }
    )
    reply = (await receive_until(chat_ws, "message.created"))["message"]
    assert reply["reply_to"]["id"] == photo["id"] and reply["reply_to"]["attachment_kind"] == "image"

    # The customer reacts; the agent sees it live. Another emoji replaces it (one per person).
    await chat_ws.send_json_to({"type": "react", "message_id": reply["id"], "emoji": "👍"})
    seen = await receive_until(agent_ws, "reaction.set")
    assert seen["message_id"] == reply["id"] and seen["reactions"] == [
        {"by": f"customer:{customer.pk}", "name": "Rich", "emoji": "👍"}
    ]
    await chat_ws.send_json_to({"type": "react", "message_id": reply["id"], "emoji": "❤️"})
    seen = await receive_until(agent_ws, "reaction.set")
    assert [r["emoji"] for r in seen["reactions"]] == ["❤️"]
    await agent_ws.send_json_to({"type": "react", "message_id": photo["id"], "emoji": "😮"})
    seen = await receive_until(chat_ws, "reaction.set")
    while seen["message_id"] != photo["id"]:  # the customer's own reactions came back first
        seen = await receive_until(chat_ws, "reaction.set")
    assert seen["reactions"] == [
        {"by": f"user:{live_db.agent_a.pk}", "name": live_db.agent_a.get_short_name(), "emoji": "😮"}
    ]

    # The agent edits the reply; the customer cannot edit it (not theirs).
    await agent_ws.send_json_to({"type": "edit", "message_id": reply["id"], "body": "Sorry about the parcel!"})
    edited = await receive_until(chat_ws, "message.edited")
    assert edited["message"]["body"] == "Sorry about the parcel!" and edited["message"]["edited_at"]
    await chat_ws.send_json_to({"type": "edit", "message_id": reply["id"], "body": "hacked"})
    refused = await receive_until(chat_ws, "error")
    assert refused["code"] == "forbidden"

    # The customer deletes their photo: both sides see "deleted", and the file is gone.
    await chat_ws.send_json_to({"type": "delete", "message_id": photo["id"]})
    deleted = await receive_until(agent_ws, "message.deleted")
    assert deleted["message"]["deleted_at"] and deleted["message"]["attachments"] == []
    await receive_until(chat_ws, "message.deleted")
    removed = await adb(lambda: _attachment(live_db, attachment_id))()
    assert removed.removed_at is not None and removed.removed_reason == "deleted"

    # A reaction to a message of another conversation is refused like a missing one.
    other = await adb(make_customer)("Other")
    other_message = await adb(lambda: _say(live_db, other, "mine"))()
    await chat_ws.send_json_to({"type": "react", "message_id": other_message.pk, "emoji": "👍"})
    assert (await receive_until(chat_ws, "error"))["code"] == "not_found"
    await agent_ws.disconnect()
    await chat_ws.disconnect()


def _attachment(world: World, pk: int) -> Attachment:
    with tenant_context(world.business_a):
        return Attachment.objects.get(pk=pk)


def _say(world: World, customer: Any, body: str, **rich: Any) -> Message:
    with tenant_context(world.business_a):
        return message_send_customer(business=world.business_a, customer=customer, body=body, **rich).message


async def test_a_customers_tap_comes_back_as_a_message_linked_to_the_choice(live_db: World) -> None:
    customer = await adb(make_customer)("Tap")
    first = await adb(lambda: _say(live_db, customer, "My flight was cancelled"))()
    agent_ws, chat_ws, _start = await connect_both(live_db, customer)
    await agent_ws.send_json_to({"type": "view", "conversation_id": first.conversation_id})
    await receive_until(agent_ws, "viewing")
    await agent_ws.send_json_to(
        {
            "type": "send",
            "conversation_id": first.conversation_id,
            "body": "What would you like?",
            "interactive": BUTTONS,
            "client_msg_id": "q",
        }
    )
    asked = (await receive_until(chat_ws, "message.created"))["message"]
    assert [o["title"] for o in asked["interactive"]["options"]] == ["Rebook", "Refund", "Talk to us"]
    await chat_ws.send_json_to(
        {"type": "send", "choice": {"message_id": asked["id"], "option_id": "refund"}, "client_msg_id": "t"}
    )
    tap = (await receive_until(agent_ws, "message.created"))["message"]
    while tap["direction"] != "in":  # the agent's own question came back first
        tap = (await receive_until(agent_ws, "message.created"))["message"]
    assert (tap["body"], tap["choice_id"], tap["reply_to"]["id"]) == ("Refund", "refund", asked["id"])
    # An option that was never offered is refused.
    await chat_ws.send_json_to(
        {"type": "send", "choice": {"message_id": asked["id"], "option_id": "free-upgrade"}, "client_msg_id": "t2"}
    )
    assert (await receive_until(chat_ws, "error"))["code"] == "invalid"
    await agent_ws.disconnect()
    await chat_ws.disconnect()


def test_interactive_shapes_are_checked(world: World) -> None:
    customer = make_customer("Shapes")
    first = _say(world, customer, "hi")
    common = {"business": world.business_a, "user": world.agent_a, "conversation_id": first.conversation_id}
    with tenant_context(world.business_a):
        for bad in (
            {"type": "buttons", "options": ["a", "b", "c", "d"]},  # more than three buttons
            {"type": "list", "options": [f"o{n}" for n in range(11)]},  # more than ten rows
            {"type": "buttons", "options": [{"title": "x" * 26}]},  # title too long
            {"type": "buttons", "options": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]},  # ids repeat
            {"type": "carousel", "options": ["a"]},
        ):
            with pytest.raises(MessagingError) as refused:
                message_send_agent(**common, body="Pick one", interactive=bad)
            assert refused.value.code == MessagingErrorCode.INVALID
        listed = message_send_agent(
            **common, body="Pick a seat", interactive={"type": "list", "button": "Seats", "options": ["12A", "12B"]}
        ).message
        assert listed.interactive == {
            "type": "list",
            "button": "Seats",
            "options": [
                {"id": "opt1", "title": "12A", "description": ""},
                {"id": "opt2", "title": "12B", "description": ""},
            ],
        }
        # Only the customer taps.
        parts = check_rich(choice={"message_id": listed.pk, "option_id": "opt1"})
        with pytest.raises(MessagingError):
            check_agent_send(
                business=world.business_a,
                user=world.agent_a,
                conversation_id=first.conversation_id,
                body="",
                rich=parts,
            )


def test_edit_and_delete_rules(world: World) -> None:
    customer, other = make_customer("Edith"), make_customer("Otto")
    business = world.business_a
    message = _say(world, customer, "Helo")
    with tenant_context(business):
        # The sender edits within 15 minutes.
        edited = message_edit(business=business, message_id=message.pk, body="Hello", customer=customer)
        assert edited.body == "Hello" and edited.edited_at is not None
        # Nobody else: another customer does not even see it; an agent is not the sender.
        with pytest.raises(MessagingError) as refused:
            message_edit(business=business, message_id=message.pk, body="x", customer=other)
        assert refused.value.code == MessagingErrorCode.NOT_FOUND
        with pytest.raises(MessagingError) as refused:
            message_delete(business=business, message_id=message.pk, user=world.agent_a)
        assert refused.value.code == MessagingErrorCode.FORBIDDEN
        # Another business's agent has no seat here.
        with pytest.raises(MessagingError):
            message_edit(business=business, message_id=message.pk, body="x", user=world.agent_b)
        # Empty text is refused (the message has no file to stand on).
        with pytest.raises(MessagingError) as refused:
            message_edit(business=business, message_id=message.pk, body="  ", customer=customer)
        assert refused.value.code == MessagingErrorCode.EMPTY
        # After 15 minutes, neither edit nor delete.
        with time_machine.travel(timezone.now() + timedelta(minutes=15, seconds=5)):
            for action in (
                lambda: message_edit(business=business, message_id=message.pk, body="late", customer=customer),
                lambda: message_delete(business=business, message_id=message.pk, customer=customer),
            ):
                with pytest.raises(MessagingError) as refused:
                    action()
                assert refused.value.code == MessagingErrorCode.TOO_LATE
        deleted = message_delete(business=business, message_id=message.pk, customer=customer)
        assert deleted.deleted_at is not None and Message.objects.get(pk=message.pk).body == ""
        # A deleted message takes no edits and no reactions.
        with pytest.raises(MessagingError):
            message_edit(business=business, message_id=message.pk, body="again", customer=customer)
        with pytest.raises(MessagingError):
            reaction_set(business=business, message_id=message.pk, emoji="👍", user=world.agent_a)


def test_reactions_are_one_emoji_per_person(world: World) -> None:
    customer = make_customer("Rea")
    message = _say(world, customer, "Thanks!")
    business = world.business_a
    with tenant_context(business):
        reaction_set(business=business, message_id=message.pk, emoji="👍", user=world.agent_a)
        reaction_set(business=business, message_id=message.pk, emoji="🎉", user=world.agent_a)
        reaction_set(business=business, message_id=message.pk, emoji="👍🏽", user=world.owner_a)
        assert sorted(Reaction.objects.filter(message=message).values_list("emoji", flat=True)) == ["🎉", "👍🏽"]
        reaction_set(business=business, message_id=message.pk, emoji="", user=world.agent_a)
        assert list(Reaction.objects.filter(message=message).values_list("emoji", flat=True)) == ["👍🏽"]
        for bad in ("ok", "<b>", "👍" * 20, 5):
            with pytest.raises(MessagingError):
                reaction_set(business=business, message_id=message.pk, emoji=bad, user=world.agent_a)
        # Internal notes are the agents' alone.
        note = message_send_agent(
            business=business, user=world.agent_a, conversation_id=message.conversation_id, body="VIP", kind="note"
        ).message
        with pytest.raises(MessagingError) as refused:
            reaction_set(business=business, message_id=note.pk, emoji="👍", customer=customer)
        assert refused.value.code == MessagingErrorCode.NOT_FOUND
        # A customer cannot quote a note either.
        with pytest.raises(MessagingError):
            message_send_customer(business=business, customer=customer, body="?", reply_to=note.pk)


def test_a_plain_message_has_no_rich_parts_and_anything_else_is_still_checked() -> None:
    assert check_rich() is None
    assert check_rich(reply_to="", attachment_id=None, interactive="", choice="") is None
    parts = check_rich(reply_to="7")
    assert parts is not None and parts.reply_to_id == 7
    for bad in ({"reply_to": False}, {"attachment_id": []}, {"interactive": {}}, {"choice": 0}):
        with pytest.raises(MessagingError):
            check_rich(**bad)
