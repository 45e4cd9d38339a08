"""Helpers for the privacy-centre tests: customers who talk to businesses, signed-in clients."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts.models import Customer, User
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging.models import Conversation
from messaging.services import message_send_agent, message_send_customer
from tenancy.models import Business
from tests.conftest import in_business, public_client


def make_customer(name: str = "") -> Customer:
    phone = "+49152" + "".join(random.choice("0123456789") for _ in range(8))
    return Customer.objects.create(phone_number=phone, display_name=name, country_code="DE", verified_at=timezone.now())


def talk(business: Business, customer: Customer, *texts: str, reply_by: User | None = None) -> list[str]:
    """The customer writes each text to the business; with `reply_by`, an agent answers each."""
    sent: list[str] = []
    with in_business(business):
        for text in texts:
            message_send_customer(business=business, customer=customer, body=text)
            sent.append(text)
            if reply_by is not None:
                conversation_id = Conversation.objects.get(contact__customer=customer).pk
                answer = f"Re: {text}"
                message_send_agent(business=business, user=reply_by, conversation_id=conversation_id, body=answer)
                sent.append(answer)
    return sent


def customer_client(customer: Customer) -> Client:
    client = public_client()
    session = client.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return client


@pytest.fixture(autouse=True)
def export_root(tmp_path: Path, settings: Any) -> Path:
    """Exports of a test go to its own folder."""
    settings.PARLEY_EXPORT_ROOT = str(tmp_path / "exports")
    return tmp_path / "exports"
