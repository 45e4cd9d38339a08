"""The send core's writer: many sends, many conversations, one transaction, one outcome each."""

from __future__ import annotations

import pytest
from django.utils import translation
from django_tenants.utils import tenant_context

from billing.models import UsageRecord
from customers.models import Block
from messaging.errors import MessagingError
from messaging.models import Contact, Conversation, Event, Message
from messaging.sending import SendResult, check_agent_send, check_customer_send, check_template_send, do_send_messages
from tests.conftest import World
from tests.messaging.conftest import make_customer


def test_one_group_writes_many_conversations_with_one_outcome_each(world: World) -> None:
    business = world.business_a
    ann, bob, blocker = make_customer("Ann"), make_customer("Bob"), make_customer("Blocker")
    Block.objects.create(customer=blocker, business=business)
    with tenant_context(business):
        start = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        opened = do_send_messages(business=business, requests=[check_customer_send(customer=ann, body="open")])
        assert isinstance(opened[0], SendResult)
        ann_conversation = opened[0].message.conversation_id
        requests = [
            check_customer_send(customer=ann, body="one", client_msg_id="x"),
            check_customer_send(customer=bob, body="two", client_msg_id="x"),  # another author: not a duplicate
            check_customer_send(customer=ann, body="one again", client_msg_id="x"),  # same author and id
            check_agent_send(
                business=business, user=world.agent_a, conversation_id=ann_conversation, body="reply", client_msg_id="r"
            ),
            check_customer_send(customer=blocker, body="let me in"),
            check_template_send(
                customer=blocker, template_name="t", body="news", category="utility", author_key="api:k"
            ),
            check_agent_send(business=business, user=world.agent_a, conversation_id=10**12, body="nobody"),
            check_customer_send(customer=ann, body="after the reply"),
        ]
        outcomes = do_send_messages(business=business, requests=requests)

        one, two, again, reply, blocked, blocked_template, missing, after = outcomes
        assert isinstance(one, SendResult) and isinstance(two, SendResult) and not one.duplicate
        assert isinstance(again, SendResult) and again.duplicate and again.message is one.message
        assert isinstance(blocked, MessagingError) and blocked.code == "blocked"
        assert isinstance(blocked_template, MessagingError) and blocked_template.code == "blocked"
        assert isinstance(missing, MessagingError) and missing.code == "not_found"
        # A refused send writes nothing: no contact, no conversation, no bill for the blocker.
        assert not Contact.objects.filter(customer_id=blocker.pk).exists()
        assert not UsageRecord.objects.filter(customer_id=blocker.pk).exists()

        # The reply read what came before it in the same group, not what came after.
        assert isinstance(reply, SendResult) and isinstance(after, SendResult)
        statuses = dict(Message.objects.filter(conversation_id=ann_conversation).values_list("body", "status"))
        assert statuses == {"open": "read", "one": "read", "reply": "sent", "after the reply": "sent"}
        conversation = Conversation.objects.get(pk=ann_conversation)
        assert conversation.unread_count == 1 and conversation.assignee_id == world.agent_a.pk
        assert UsageRecord.objects.filter(customer_id=ann.pk, category="service").count() == 1

        # One event id each, dense, in request order; each names its conversation's previous one.
        rows = list(Event.objects.filter(id__gt=start).order_by("id"))
        assert [e.id for e in rows] == list(range(start + 1, start + 1 + len(rows)))
        created = [e for e in rows if e.type == "message.created"]
        assert [e.id for e in created] == sorted(
            r.message.event_id for r in (opened[0], one, two, reply, after) if isinstance(r, SendResult)
        )
        types = [e.type for e in rows if e.conversation_id == ann_conversation]
        assert types == [
            "message.created",
            "conversation.updated",  # open
            "message.created",
            "conversation.updated",  # one
            "message.status",
            "message.created",
            "conversation.updated",  # reply: read up to "one" first
            "message.created",
            "conversation.updated",  # after the reply
        ]
        ann_events = [e.id for e in rows if e.conversation_id == ann_conversation]
        assert conversation.last_event_id == ann_events[-1]


def test_a_template_needs_an_active_business(world: World) -> None:
    business = world.business_b
    customer = make_customer()
    business.status = business.Status.SUSPENDED
    business.save(update_fields=["status"])
    with tenant_context(business):
        outcomes = do_send_messages(
            business=business,
            requests=[
                check_template_send(customer=customer, template_name="t", body="b", category="utility", author_key="a"),
                check_customer_send(customer=customer, body="the customer may still write"),
            ],
        )
    refused, written = outcomes
    assert isinstance(refused, MessagingError) and refused.code == "suspended"
    assert isinstance(written, SendResult)


def test_checks_refuse_before_anything_is_queued(world: World) -> None:
    customer = make_customer()
    with pytest.raises(MessagingError) as empty:
        check_customer_send(customer=customer, body="   ")
    assert empty.value.code == "empty"
    with pytest.raises(MessagingError) as member:
        check_agent_send(business=world.business_a, user=world.agent_b, conversation_id=1, body="x")
    assert member.value.code == "not_found"
    with pytest.raises(ValueError):
        check_template_send(customer=customer, template_name="t", body="b", category="nope", author_key="a")


def test_each_refusal_in_a_group_is_worded_in_its_senders_language(world: World) -> None:
    """A group holds several sockets' sends; the writer runs in the first sender's context,
    and each refusal must still be in the language of the page that sent it."""
    business = world.business_a
    german, english = make_customer("Greta"), make_customer("Emma")
    for customer in (german, english):
        Block.objects.create(customer=customer, business=business)
    with translation.override("de"):
        from_german = check_customer_send(customer=german, body="Hallo")
    with translation.override("en"):
        from_english = check_customer_send(customer=english, body="Hello")
    with tenant_context(business), translation.override("de"):  # the group's leader: German
        refused_de, refused_en = do_send_messages(business=business, requests=[from_german, from_english])
    assert isinstance(refused_de, MessagingError) and isinstance(refused_en, MessagingError)
    assert refused_de.code == refused_en.code == "blocked"
    assert refused_de.message.startswith("Sie haben dieses Unternehmen blockiert.")
    assert refused_en.message == "You blocked this business. Unblock it on your Parley page to chat."
