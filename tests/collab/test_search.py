"""Inbox search: PostgreSQL full-text search with English and German stemming over message
text, contact names and phone numbers, filters, and one business only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from collab import services
from collab.search import SearchFilters, search_conversations
from messaging.models import Contact
from tests.collab.helpers import agent_writes, at, customer_writes
from tests.conftest import World, business_client, in_business, unique


def _ids(user_id: int, **filters: Any) -> list[int]:
    return [
        row["id"] for row in search_conversations(user_id=user_id, filters=SearchFilters(**filters))["conversations"]
    ]


def test_english_and_german_stemming(world: World) -> None:
    with in_business(world.business_a):
        english = customer_writes(world.business_a, "Both of my flights were delayed yesterday")
        german = customer_writes(world.business_a, "Alle Flüge nach Wien wurden gestrichen")
        other = customer_writes(world.business_a, "Can I bring a bicycle?")
        uid = world.agent_a.pk
        assert _ids(uid, query="flight delay") == [english.pk]
        assert _ids(uid, query="delays") == [english.pk]
        assert _ids(uid, query="Flug") == [german.pk]
        assert _ids(uid, query="gestrichene Flüge") == [german.pk]
        assert _ids(uid, query="bicycles") == [other.pk]
        assert _ids(uid, query="umbrella") == []
        # the newest matching message is shown with each result
        found = search_conversations(user_id=uid, filters=SearchFilters(query="Wien"))["conversations"][0]
        assert found["match"]["body"].startswith("Alle Flüge")


def test_notes_names_and_phone_numbers_match(world: World) -> None:
    with in_business(world.business_a):
        surname = unique("Zander")
        conversation = customer_writes(world.business_a, "Hello", name=f"Greta {surname}")
        Contact.objects.filter(pk=conversation.contact_id).update(name=f"Greta {surname}")
        agent_writes(world.business_a, world.agent_a, conversation, "Rebooking requested via phone", kind="note")
        uid = world.agent_a.pk
        assert _ids(uid, query="rebook") == [conversation.pk]
        assert _ids(uid, query=surname[:6].lower()) == [conversation.pk]  # a name prefix
        phone = conversation.contact.customer.phone_number
        assert _ids(uid, query=phone[-7:]) == [conversation.pk]
        assert _ids(uid, query=f"+{phone[1:4]} {phone[4:]}") == [conversation.pk]


@pytest.mark.parametrize("probe", [5000, 1], ids=["rare-words-plan", "common-words-plan"])
def test_filters_status_label_assignee_and_dates(world: World, probe: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collab.search.PROBE", probe)  # 1: every query takes the walking plan
    now = timezone.now()
    with in_business(world.business_a):
        label = services.label_create(business=world.business_a, user=world.owner_a, name="Refund", colour="red")
        with at(now - timedelta(days=10)):
            old = customer_writes(world.business_a, "refund for my ticket please")
        mine = customer_writes(world.business_a, "refund of the seat fee")
        services.conversation_labels_set(
            business=world.business_a, user=world.agent_a, conversation_id=mine.pk, label_ids=[label.pk]
        )
        from messaging.services import conversation_assign, conversation_set_status

        conversation_assign(
            business=world.business_a, user=world.agent_a, conversation_id=mine.pk, assignee_id=world.agent_a.pk
        )
        conversation_set_status(
            business=world.business_a, user=world.agent_a, conversation_id=old.pk, status="resolved"
        )
        uid = world.agent_a.pk
        assert _ids(uid, query="refunds") == [mine.pk, old.pk]
        assert _ids(uid, query="refund", status="resolved") == [old.pk]
        assert _ids(uid, query="refund", label_id=label.pk) == [mine.pk]
        assert _ids(uid, label_id=label.pk) == [mine.pk]  # a filter alone, no query
        assert _ids(uid, query="refund", assignee="me") == [mine.pk]
        assert _ids(uid, query="refund", assignee="none") == [old.pk]
        today = timezone.localdate()
        assert _ids(uid, query="refund", date_from=today - timedelta(days=1)) == [mine.pk]
        assert _ids(uid, query="refund", date_to=today - timedelta(days=5)) == [old.pk]


def test_search_api_validates_and_pages(world: World) -> None:
    with in_business(world.business_a):
        for n in range(32):
            customer_writes(world.business_a, f"Question about parking number {n}")
    client = business_client(world.business_a, world.agent_a)
    first = client.get("/inbox/api/search/?q=parking").json()
    assert len(first["conversations"]) == 30 and first["has_more"] is True
    second = client.get("/inbox/api/search/?q=parking&page=2").json()
    assert len(second["conversations"]) == 2 and second["has_more"] is False
    assert {c["id"] for c in first["conversations"]}.isdisjoint({c["id"] for c in second["conversations"]})
    for bad in (
        "status=closed",
        "from=2026-13-01",
        "assignee=everyone",
        "label=x",
        "page=0",
        "from=2026-03-02&to=2026-03-01",
    ):
        response = client.get(f"/inbox/api/search/?q=x&{bad}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid", bad
    # odd input is searched for, never a 500
    for odd in ("%27%22)(*&", "-", "or", "a:*|!", "%E2%80%8B", "%25_%5C"):
        assert client.get(f"/inbox/api/search/?q={odd}").status_code == 200, odd
    nul = client.get("/inbox/api/search/?q=a%00b")  # text PostgreSQL cannot hold: refused, not a 500
    assert nul.status_code == 400 and nul.json()["error"]["code"] == "invalid"


def test_search_is_scoped_to_the_business(world: World) -> None:
    word = unique("quokka")
    with in_business(world.business_a):
        a = customer_writes(world.business_a, f"The {word} ate my boarding pass")
    with in_business(world.business_b):
        b = customer_writes(world.business_b, f"My {word} is fine")
        assert _ids(world.agent_b.pk, query=word) == [b.pk]
    with in_business(world.business_a):
        assert _ids(world.agent_a.pk, query=word) == [a.pk]
    assert [
        c["id"]
        for c in business_client(world.business_b, world.agent_b)
        .get(f"/inbox/api/search/?q={word}")
        .json()["conversations"]
    ] == [b.pk]
