"""Conversations for collaboration and insights tests, written through the real services."""

from __future__ import annotations

from datetime import datetime

import time_machine

from accounts.models import Customer, User
from messaging.models import Conversation, Message
from messaging.services import message_send_agent, message_send_customer
from tenancy.models import Business
from tests.messaging.conftest import make_customer


def customer_writes(
    business: Business, body: str, *, customer: Customer | None = None, name: str = "Test Kunde"
) -> Conversation:
    customer = customer or make_customer(name)
    result = message_send_customer(business=business, customer=customer, body=body)
    return Conversation.objects.select_related("contact__customer").get(pk=result.message.conversation_id)


def agent_writes(
    business: Business, user: User, conversation: Conversation, body: str, *, kind: str = "text"
) -> Message:
    return message_send_agent(
        business=business, user=user, conversation_id=conversation.pk, body=body, kind=kind
    ).message


def at(when: datetime) -> time_machine.travel:
    """Everything inside happens at `when` (the application's clock; the triggers use the
    timestamps the application writes)."""
    return time_machine.travel(when, tick=False)
