"""Labels, canned replies, macros and @mentions, through the services and the inbox's API."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from collab import selectors, services
from collab.errors import CollabError
from collab.models import AgentNotification, CannedReply, ConversationLabel, Label
from insights.models import Cycle
from messaging.models import Conversation, Message
from tests.collab.helpers import agent_writes, customer_writes
from tests.conftest import World, business_client, in_business


def test_labels_are_managed_by_managers_and_set_by_any_member(world: World) -> None:
    with in_business(world.business_a):
        with pytest.raises(CollabError) as refused:
            services.label_create(business=world.business_a, user=world.agent_a, name="Baggage", colour="blue")
        assert refused.value.code == "forbidden"
        baggage = services.label_create(business=world.business_a, user=world.owner_a, name="Baggage", colour="blue")
        refund = services.label_create(business=world.business_a, user=world.owner_a, name="Refund", colour="red")
        with pytest.raises(CollabError) as twice:
            services.label_create(business=world.business_a, user=world.owner_a, name="baggage", colour="teal")
        assert twice.value.code == "duplicate"
        with pytest.raises(CollabError):
            services.label_create(business=world.business_a, user=world.owner_a, name="Green", colour="green")
        conversation = customer_writes(world.business_a, "My bag is lost")
        labels = services.conversation_labels_set(
            business=world.business_a,
            user=world.agent_a,
            conversation_id=conversation.pk,
            label_ids=[baggage.pk, refund.pk],
        )
        assert [label.name for label in labels] == ["Baggage", "Refund"]
        services.conversation_labels_set(
            business=world.business_a, user=world.agent_a, conversation_id=conversation.pk, label_ids=[refund.pk]
        )
        assert selectors.labels_for_conversations(conversation_ids=[conversation.pk]) == {
            conversation.pk: [{"id": refund.pk, "name": "Refund", "colour": "red"}]
        }
        with pytest.raises(CollabError) as unknown:
            services.conversation_labels_set(
                business=world.business_a, user=world.agent_a, conversation_id=conversation.pk, label_ids=[10**12]
            )
        assert unknown.value.code == "invalid"
        # nothing half-written: the refused change left the label that was there
        assert list(ConversationLabel.objects.filter(conversation=conversation).values_list("label_id", flat=True)) == [
            refund.pk
        ]


def test_canned_reply_placeholders_and_shortcut_rules(world: World) -> None:
    text = selectors.canned_reply_text(
        body="Hello {{first_name}} ({{ name }}), {{agent}} from {{business}} here. {{unknown}}",
        contact_name="Sophie Hartmann",
        agent_name="Jonas",
        business_name="Aurora Air",
    )
    assert text == "Hello Sophie (Sophie Hartmann), Jonas from Aurora Air here. {{unknown}}"
    # A contact without a name is shown by their number: no greeting uses it ("Hello +49, …").
    for shown in ("+49 157 90060399", "+4915790060399", ""):
        nameless = selectors.canned_reply_text(
            body="Hello {{first_name}}, thanks for writing to {{business}}!",
            contact_name=shown,
            agent_name="Jonas",
            business_name="Aurora Air",
        )
        assert nameless == "Hello, thanks for writing to Aurora Air!", shown
    with in_business(world.business_a):
        reply = services.canned_reply_save(
            business=world.business_a, user=world.owner_a, shortcut="/bag", title="Lost bag", body="Hi {{first_name}}"
        )
        assert reply.shortcut == "bag"
        for bad in ("two words", "", "ä/ö"):
            with pytest.raises(CollabError):
                services.canned_reply_save(
                    business=world.business_a, user=world.owner_a, shortcut=bad, title="x", body="y"
                )
        with pytest.raises(CollabError) as taken:
            services.canned_reply_save(
                business=world.business_a, user=world.owner_a, shortcut="bag", title="x", body="y"
            )
        assert taken.value.code == "duplicate"


def _macro(world: World, **actions: Any) -> Any:
    return services.macro_save(business=world.business_a, user=world.owner_a, name="Lost bag", actions=actions)


def test_a_macro_labels_replies_assigns_and_resolves_in_one_click(world: World) -> None:
    with in_business(world.business_a):
        label = services.label_create(business=world.business_a, user=world.owner_a, name="Baggage", colour="orange")
        reply = services.canned_reply_save(
            business=world.business_a,
            user=world.owner_a,
            shortcut="bag",
            title="Lost bag",
            body="Sorry {{first_name}}, we are tracing your bag. – {{agent}}",
        )
        macro = _macro(world, labels=[label.pk], canned_reply=reply.pk, assign="me", status="resolved")
        conversation = customer_writes(world.business_a, "My suitcase did not arrive", name="Sophie Hartmann")
        outcome = services.macro_apply(
            business=world.business_a, user=world.agent_a, macro_id=macro.pk, conversation_id=conversation.pk
        )
        assert outcome.done == ["reply", "labels", "assign", "status"]
        conversation.refresh_from_db()
        assert conversation.status == "resolved" and conversation.assignee_id == world.agent_a.pk
        sent = Message.objects.filter(conversation=conversation, direction="out").get()
        assert sent.body == f"Sorry Sophie, we are tracing your bag. – {world.agent_a.get_short_name()}"
        assert ConversationLabel.objects.filter(conversation=conversation, label=label).exists()
        # the reply counted as the first response and the resolve closed the cycle
        cycle = Cycle.objects.get(conversation=conversation)
        assert cycle.first_response_at == sent.created_at and cycle.first_responder_id == world.agent_a.pk
        assert cycle.resolved_at is not None and cycle.resolver_id == world.agent_a.pk


def test_a_macro_whose_reply_cannot_be_sent_changes_nothing(world: World) -> None:
    with in_business(world.business_a):
        label = services.label_create(business=world.business_a, user=world.owner_a, name="Late", colour="yellow")
        reply = services.canned_reply_save(
            business=world.business_a, user=world.owner_a, shortcut="late", title="Late", body="Sorry!"
        )
        macro = _macro(world, labels=[label.pk], canned_reply=reply.pk, status="resolved")
        conversation = customer_writes(world.business_a, "Hello?")
        Conversation.objects.filter(pk=conversation.pk).update(window_expires_at=timezone.now() - timedelta(minutes=1))
        with pytest.raises(CollabError) as refused:
            services.macro_apply(
                business=world.business_a, user=world.agent_a, macro_id=macro.pk, conversation_id=conversation.pk
            )
        assert refused.value.code == "refused"
        conversation.refresh_from_db()
        assert conversation.status == "open"
        assert not ConversationLabel.objects.filter(conversation=conversation).exists()
        assert not Message.objects.filter(conversation=conversation, direction="out").exists()


def test_macro_actions_are_validated(world: World) -> None:
    with in_business(world.business_a):
        for actions in (
            {},
            {"status": "closed"},
            {"assign": world.agent_b.pk},
            {"labels": [10**9]},
            {"canned_reply": 10**9},
        ):
            with pytest.raises(CollabError):
                _macro(world, **actions)
        with pytest.raises(CollabError) as forbidden:
            services.macro_save(business=world.business_a, user=world.agent_a, name="x", actions={"status": "pending"})
        assert forbidden.value.code == "forbidden"


def test_a_note_mentioning_an_agent_notifies_only_them(world: World, django_capture_on_commit_callbacks: Any) -> None:
    # A copy of the row: the session's World objects are shared by every test, and a name set on
    # them would outlive this test's rolled-back transaction.
    mia = User.objects.get(pk=world.agent_a.pk)
    mia.full_name = "Mia Schulz"
    mia.save(update_fields=["full_name"])
    with in_business(world.business_a):
        conversation = customer_writes(world.business_a, "Can I change my seat?", name="Lukas Meier")
        note = agent_writes(
            world.business_a,
            world.owner_a,
            conversation,
            "@Mia can you check seat 14A? cc @miami (nobody)",
            kind="note",
        )
        notification = AgentNotification.objects.get()
        assert notification.user_id == world.agent_a.pk and notification.message_id == note.pk
        assert notification.actor_id == world.owner_a.pk
        # a text reply with a mention, the author naming themselves, and a resend notify nobody
        agent_writes(world.business_a, world.owner_a, conversation, "@Mia is on it")
        assert selectors.mentioned_user_ids(business=world.business_a, body="@mia.") == [world.agent_a.pk]
        assert selectors.mentioned_user_ids(business=world.business_a, body="email mia@x.de") == []
        listed = selectors.notifications_for_user(user=world.agent_a)
        assert [n["excerpt"] for n in listed] == [note.body] and listed[0]["contact_name"] == "Lukas Meier"
        assert selectors.notifications_for_user(user=world.owner_a) == []
        assert selectors.notifications_unread(user_id=world.agent_a.pk) == 1
        assert services.notifications_mark_read(business=world.business_a, user=world.agent_a) == 1
        assert selectors.notifications_unread(user_id=world.agent_a.pk) == 0


def test_inbox_api_labels_macros_notifications(world: World) -> None:
    client = business_client(world.business_a, world.agent_a)
    with in_business(world.business_a):
        label = services.label_create(business=world.business_a, user=world.owner_a, name="VIP", colour="purple")
        macro = _macro(world, labels=[label.pk], status="pending")
        conversation = customer_writes(world.business_a, "Hi")
    setup = client.get("/inbox/api/collab/").json()
    assert setup["labels"] == [{"id": label.pk, "name": "VIP", "colour": "purple"}]
    assert setup["macros"] == [{"id": macro.pk, "name": "Lost bag"}]
    posted = client.post(
        "/inbox/api/labels/",
        json.dumps({"conversation_id": conversation.pk, "label_ids": [label.pk]}),
        content_type="application/json",
    )
    assert posted.status_code == 200, posted.content
    got = client.get(f"/inbox/api/labels/?conversations={conversation.pk},x,-1").json()
    assert got["labels"] == {str(conversation.pk): [{"id": label.pk, "name": "VIP", "colour": "purple"}]}
    applied = client.post(
        f"/inbox/api/macros/{macro.pk}/apply/", {"conversation_id": conversation.pk}, content_type="application/json"
    )
    assert applied.status_code == 200 and applied.json()["conversation"]["status"] == "pending"
    # bad input: a clear 4xx with a code, never a 500
    not_json = client.post("/inbox/api/labels/", "{", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid"
    bad = client.post("/inbox/api/labels/", {"conversation_id": "x"}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    missing = client.post(
        "/inbox/api/macros/999999/apply/", {"conversation_id": conversation.pk}, content_type="application/json"
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.post("/inbox/api/notifications/", {}, content_type="application/json").status_code == 400
    assert client.post("/inbox/api/notifications/", {"all": True}, content_type="application/json").json() == {
        "unread": 0
    }


def test_setup_page_lists_and_manages(world: World) -> None:
    owner = business_client(world.business_a, world.owner_a)
    assert owner.post("/inbox/setup/", {"action": "label_create", "name": "Refund", "colour": "red"}).status_code == 302
    assert (
        owner.post(
            "/inbox/setup/", {"action": "canned_save", "shortcut": "hi", "title": "Hi", "body": "Hi {{name}}"}
        ).status_code
        == 302
    )
    with in_business(world.business_a):
        label_id = Label.objects.get(name="Refund").pk
        reply_id = CannedReply.objects.get(shortcut="hi").pk
    owner.post(
        "/inbox/setup/",
        {
            "action": "macro_save",
            "name": "Refund asked",
            "labels": [label_id],
            "canned_reply": reply_id,
            "assign": "me",
            "status": "pending",
        },
    )
    page = owner.get("/inbox/setup/")
    text = page.content.decode()
    assert page.status_code == 200 and "Refund asked" in text and "/hi" in text and "label-red" in text
    agent = business_client(world.business_a, world.agent_a)
    assert agent.get("/inbox/setup/").status_code == 200
    agent.post("/inbox/setup/", {"action": "label_create", "name": "Sneaky", "colour": "red"})
    with in_business(world.business_a):
        assert not Label.objects.filter(name="Sneaky").exists()


def test_business_b_never_sees_business_a(world: World) -> None:
    with in_business(world.business_a):
        label = services.label_create(business=world.business_a, user=world.owner_a, name="Secret", colour="grey")
        macro = _macro(world, labels=[label.pk], status="resolved")
        conversation = customer_writes(world.business_a, "Private matter about my passport")
        services.conversation_labels_set(
            business=world.business_a, user=world.agent_a, conversation_id=conversation.pk, label_ids=[label.pk]
        )
        agent_writes(world.business_a, world.owner_a, conversation, "@agent look at the passport", kind="note")
        assert AgentNotification.objects.count() == 1
    # A's agent on B's host: no seat there
    stranger = business_client(world.business_b, world.agent_a)
    for url in (
        "/inbox/api/collab/",
        "/inbox/api/notifications/",
        "/inbox/api/search/?q=passport",
        f"/inbox/api/labels/?conversations={conversation.pk}",
    ):
        assert stranger.get(url).status_code == 403, url
    # B's own agent on B's host: A's labels, macro, conversation and notification do not exist there
    b = business_client(world.business_b, world.agent_b)
    setup = b.get("/inbox/api/collab/").json()
    assert setup["labels"] == [] and setup["macros"] == [] and setup["notifications"] == []
    assert b.get("/inbox/api/search/?q=passport").json()["conversations"] == []
    assert b.get(f"/inbox/api/labels/?conversations={conversation.pk}").json()["labels"] == {str(conversation.pk): []}
    applied = b.post(
        f"/inbox/api/macros/{macro.pk}/apply/", {"conversation_id": conversation.pk}, content_type="application/json"
    )
    assert applied.status_code == 404
    set_labels = b.post(
        "/inbox/api/labels/",
        {"conversation_id": conversation.pk, "label_ids": [label.pk]},
        content_type="application/json",
    )
    assert set_labels.status_code in (400, 404)
    with in_business(world.business_a):
        assert Conversation.objects.get(pk=conversation.pk).status == "open"
    anonymous = business_client(world.business_a)
    assert anonymous.get("/inbox/api/collab/").status_code == 403
