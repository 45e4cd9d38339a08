"""Export, erasure and retention, carried out by real Procrastinate workers on committed data."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from psycopg import sql

from accounts.models import Customer
from audit.models import AuditEvent
from billing.models import UsageRecord
from customers import privacy
from customers.models import Block, BusinessContact, ConsentRecord, PrivacyRequest
from customers.services import customer_block, customer_mute_marketing
from directory.models import CustomerThread
from messaging.models import Contact, Conversation, Event, Message
from messaging.services import message_send_template
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from tests.conftest import World, business_client, in_business, unique
from tests.customers.conftest import customer_client, make_customer, talk
from tests.jobs import run_queued_jobs
from verification.phone import phone_display


def run_privacy_jobs() -> None:
    run_queued_jobs(queues=["privacy"])


def _zip_from(client: Any, page_path: str) -> zipfile.ZipFile:
    html = client.get(page_path).content.decode()
    links = re.findall(r'href="([^"]*/download/[^"]+)"', html)
    assert links, "no download link on the page"
    response = client.get(links[0])
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _all_texts(data: dict[str, Any]) -> set[str]:
    return {m["body"] for part in data["businesses"] for m in part["messages"]}


def test_export_contains_every_message_across_two_businesses_and_nothing_of_another_customer(live_db: World) -> None:
    customer, other = make_customer(unique("Kunde")), make_customer(unique("Fremd"))
    mine = talk(live_db.business_a, customer, unique("a1-"), unique("a2-"), reply_by=live_db.agent_a)
    mine += talk(live_db.business_b, customer, unique("b1-"))
    theirs = talk(live_db.business_a, other, unique("secret-"), reply_by=live_db.agent_a)
    customer_mute_marketing(customer=customer, business=live_db.business_b)

    client = customer_client(customer)
    assert client.post("/me/privacy/export/").status_code == 302
    request = PrivacyRequest.objects.get(customer=customer)
    assert sorted(request.schemas) == sorted([live_db.business_a.schema_name, live_db.business_b.schema_name])
    # Before the worker ran: progress, polled by htmx, and no link.
    fragment = client.get(f"/me/privacy/requests/{request.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "/download/" not in fragment
    run_privacy_jobs()
    fragment = client.get(f"/me/privacy/requests/{request.pk}/").content.decode()
    assert "hx-trigger" not in fragment and "/download/" in fragment

    archive = _zip_from(client, "/me/privacy/")
    assert set(archive.namelist()) == {"parley-data.json", "index.html"}
    data = json.loads(archive.read("parley-data.json"))
    assert data["profile"]["phone_number"] == customer.phone_number
    assert _all_texts(data) == set(mine)
    assert [m["business"] for m in data["marketing_mutes"]] == [live_db.business_b.display_name]
    assert data["consents"][0]["opted_in"] is False
    everything = archive.read("parley-data.json").decode() + archive.read("index.html").decode()
    assert other.phone_number not in everything and other.display_name not in everything
    assert not any(text in everything for text in theirs)
    assert mine[0] in archive.read("index.html").decode()

    # The link is for this customer only and it expires.
    token = privacy.download_token(request, owner=f"customer:{customer.pk}")
    assert customer_client(other).get(f"/me/privacy/download/{token}/").status_code == 302
    assert customer_client(other).get(f"/me/privacy/requests/{request.pk}/").status_code == 404
    old = timezone.now() - privacy.DOWNLOAD_LINK_MAX_AGE - timedelta(seconds=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.core.signing.time.time", lambda: old.timestamp())
        stale = privacy.download_token(request, owner=f"customer:{customer.pk}")
    response = client.get(f"/me/privacy/download/{stale}/")
    assert response.status_code == 302 and response["Location"] == "/me/privacy/"


def test_business_exports_one_contact_for_an_access_request(live_db: World) -> None:
    customer = make_customer(unique("Kunde"))
    texts = talk(live_db.business_a, customer, unique("hello-"), reply_by=live_db.agent_a)
    talk(live_db.business_b, customer, unique("elsewhere-"))
    with in_business(live_db.business_a):
        contact = Contact.objects.get(customer=customer)
    owner = business_client(live_db.business_a, live_db.owner_a)
    assert owner.get("/contacts/").content.decode().count(f"/privacy/contacts/{contact.pk}/export/") == 1
    assert owner.post(f"/privacy/contacts/{contact.pk}/export/").status_code == 302
    assert owner.post("/privacy/contacts/99999999/export/").status_code == 302  # a message, not a 500
    # An agent of the business may not; the other business cannot see the request.
    assert (
        business_client(live_db.business_a, live_db.agent_a).post(f"/privacy/contacts/{contact.pk}/export/").status_code
        == 403
    )
    run_privacy_jobs()
    request = PrivacyRequest.objects.get(business=live_db.business_a, customer=customer)
    assert request.status == "done"
    assert (
        business_client(live_db.business_b, live_db.owner_b).get(f"/privacy/requests/{request.pk}/").status_code == 404
    )
    data = json.loads(_zip_from(owner, "/privacy/").read("parley-data.json"))
    assert _all_texts(data) == set(texts)
    assert [part["business"]["name"] for part in data["businesses"]] == [live_db.business_a.display_name]


# --- erasure ------------------------------------------------------------------------------------


def _traces(needles: list[str]) -> list[tuple[str, str, str]]:
    """Every (schema, table, column) of any schema whose text holds one of the needles: raw SQL
    over all text, character and JSON columns of the whole database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('text', 'character varying', 'jsonb', 'json') "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_name IN (SELECT table_name FROM information_schema.tables t "
            "WHERE t.table_schema = columns.table_schema AND t.table_type = 'BASE TABLE')"
        )
        columns = cursor.fetchall()
        found = []
        for schema, table, column in columns:
            query = sql.SQL("SELECT 1 FROM {}.{} WHERE {}::text LIKE ANY(%s) LIMIT 1").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
            )
            cursor.execute(query, [[f"%{needle}%" for needle in needles]])
            if cursor.fetchone():
                found.append((schema, table, column))
    return found


def _billing(customer: Customer) -> tuple[int, Decimal]:
    rows = UsageRecord.objects.filter(customer_id=customer.pk)
    return rows.count(), rows.aggregate(total=Sum("unit_price"))["total"] or Decimal(0)


def _customer_with_history(world: World) -> tuple[Customer, list[str]]:
    customer = make_customer(unique("Erika"))
    texts = talk(world.business_a, customer, unique("flight-"), reply_by=world.agent_a)
    texts += talk(world.business_b, customer, unique("bread-"), reply_by=world.agent_b)
    with in_business(world.business_a):
        template = unique("gate-change-")
        message_send_template(
            business=world.business_a,
            customer=customer,
            template_name="gate",
            body=template,
            category="utility",
            author_key="api:test",
        )
    texts.append(template)
    with in_business(world.business_b):
        # What the notifications API keeps: the request naming the number, and a webhook payload.
        note = unique("api-text-")
        Notification.objects.create(to=customer.phone_number, category="utility", text=note)
        endpoint = WebhookEndpoint.objects.create(url="https://example.test/hook", secret="s", event_types=[])
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_type="message.received",
            body=json.dumps({"data": {"phone": customer.phone_number}}),
            created_at=timezone.now(),
        )
    texts.append(note)
    customer_block(customer=customer, business=world.business_b)
    ConsentRecord.objects.create(
        customer=customer, business=world.business_a, category="marketing", granted=True, source="chat"
    )
    return customer, texts


def test_account_deletion_removes_every_trace_from_every_schema_and_keeps_billing(
    live_db: World, export_root: Any
) -> None:
    customer, texts = _customer_with_history(live_db)
    phone = customer.phone_number
    customer.phone_formatted = phone_display(phone)  # as signing in stores it
    customer.save(update_fields=["phone_formatted"])
    assert _traces([phone]) and _traces(texts)  # the check finds them while they exist
    billing_before = _billing(customer)
    assert billing_before[0] >= 2

    client = customer_client(customer)
    assert client.post("/me/privacy/export/").status_code == 302  # an export made before: it goes too
    run_privacy_jobs()
    export = PrivacyRequest.objects.get(customer=customer, kind="export")
    assert privacy.export_path(export) is not None
    assert client.get("/me/privacy/").status_code == 200
    assert client.post("/me/privacy/delete/").status_code == 302  # no confirmation: nothing happens
    assert client.get("/me/privacy/").status_code == 200
    response = client.post("/me/privacy/delete/", {"confirm": "yes"})
    assert response.status_code == 302
    # The session ends at once, before any job ran; so does any other session of the customer.
    assert client.get("/me/privacy/").status_code == 302
    assert customer_client(customer).get("/me/privacy/").status_code == 302
    request = PrivacyRequest.objects.get(kind="delete_account", customer=customer)
    # The number is free at once, in both its forms (the jobs then erase the row).
    assert Customer.objects.filter(pk=customer.pk, phone_formatted="").exists()

    run_privacy_jobs()
    request.refresh_from_db()
    assert request.status == "done" and request.customer_id is None
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert _traces([phone, customer.phone_formatted]) == []
    assert _traces(texts) == []
    for business in (live_db.business_a, live_db.business_b):
        with in_business(business):
            assert not Contact.objects.filter(customer_id=customer.pk).exists()
    assert not CustomerThread.objects.filter(customer_id=customer.pk).exists()
    assert not Block.objects.filter(customer_id=customer.pk).exists()
    assert _billing(customer) == billing_before  # the ledger keeps its rows and amounts
    assert not list(export_root.glob("*.zip"))
    done = AuditEvent.objects.get(action="privacy.account_deleted", data__customer_id=customer.pk)
    assert phone not in json.dumps(done.data)
    # The number can sign up afresh as a new, empty customer.
    assert not Customer.objects.filter(phone_number=phone).exists()


def test_erasure_survives_a_worker_dying_midway(live_db: World, monkeypatch: pytest.MonkeyPatch) -> None:
    customer, texts = _customer_with_history(live_db)
    phone = customer.phone_number
    billing_before = _billing(customer)
    request = privacy.customer_account_delete(customer=customer)
    assert len(request.schemas) == 2

    def die(req: PrivacyRequest, schema_name: str) -> None:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(privacy, "after_step", die)
    run_privacy_jobs()  # the first schema commits, then the worker "dies"; the second job too
    request.refresh_from_db()
    assert request.status == "running" and 1 <= len(request.done_schemas) <= 2
    assert Customer.objects.filter(pk=customer.pk).exists()  # the public part has not run
    first = request.done_schemas[0]
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {}.messaging_contact WHERE customer_id = %s").format(sql.Identifier(first)),
            [customer.pk],
        )
        assert cursor.fetchone() == (0,)

    # A chat socket opened before the deletion still writes, to a business already erased.
    late = unique("late-")
    talk(live_db.business_a, customer, late)
    texts.append(late)

    monkeypatch.setattr(privacy, "after_step", lambda req, schema_name: None)
    privacy.privacy_request_resume(request_id=request.pk)
    privacy.privacy_request_resume(request_id=request.pk)  # twice: still one job per schema
    run_privacy_jobs()
    request.refresh_from_db()
    assert request.status == "done"
    assert sorted(request.done_schemas) == sorted(request.schemas)
    assert _traces([phone]) == [] and _traces(texts) == []
    assert _billing(customer) == billing_before
    # Exactly one erasure record per business, whatever was repeated.
    assert (
        AuditEvent.objects.filter(action="privacy.erased_at_business", target=f"privacy_request:{request.pk}").count()
        == 2
    )
    # Running a finished request again changes nothing.
    privacy.privacy_request_step(request_id=request.pk, schema_name=first)
    privacy.privacy_request_finish(request_id=request.pk)


def test_erasure_at_one_business_leaves_the_other(live_db: World) -> None:
    customer, texts = _customer_with_history(live_db)
    b_texts = [t for t in texts if "bread-" in t or "api-text-" in t]  # the API notification is at B
    a_texts = [t for t in texts if t not in b_texts]
    client = customer_client(customer)
    response = client.post(f"/me/privacy/businesses/{live_db.business_a.pk}/erase/", {"confirm": "yes"})
    assert response.status_code == 302
    erasure = PrivacyRequest.objects.get(customer=customer, kind=PrivacyRequest.Kind.ERASE_BUSINESS)
    polled = client.get(f"/me/privacy/requests/{erasure.pk}/", HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 2s"' in polled.content.decode() and "HX-Refresh" not in polled
    run_privacy_jobs()
    # The poll that sees it done shows the whole page again, with the business's message count
    # at 0 (a "Done" beside the old row and its count looked like a failure). Its row stays for
    # the customer's consent choices, without the erase button.
    polled = client.get(f"/me/privacy/requests/{erasure.pk}/", HTTP_HX_REQUEST="true")
    assert polled["HX-Refresh"] == "true"
    page = client.get("/me/privacy/").content.decode()
    rows = dict(re.findall(r'data-business="(\d+)">.*?class="message-count">(\d+)<', page, re.S))
    assert rows[str(live_db.business_a.pk)] == "0" and rows[str(live_db.business_b.pk)] != "0"
    assert _traces(a_texts) == []
    assert {schema for schema, _t, _c in _traces(b_texts)} == {live_db.business_b.schema_name}
    with in_business(live_db.business_a):
        assert not Contact.objects.filter(customer_id=customer.pk).exists()
        assert not Event.objects.filter(frame__contains=customer.phone_number).exists()
    assert not BusinessContact.objects.filter(customer=customer, business=live_db.business_a).exists()
    assert BusinessContact.objects.filter(customer=customer, business=live_db.business_b).exists()
    # The customer keeps their account and their own choices.
    assert client.get("/me/privacy/").status_code == 200
    assert ConsentRecord.objects.filter(customer=customer, business=live_db.business_a).exists()


# --- retention ------------------------------------------------------------------------------------


def test_retention_deletes_only_old_resolved_conversations(live_db: World) -> None:
    business = live_db.business_a
    old_resolved, new_resolved, old_open = make_customer(), make_customer(), make_customer()
    for customer in (old_resolved, new_resolved, old_open):
        talk(business, customer, unique("hi-"))
    long_ago = timezone.now() - timedelta(days=45)
    with in_business(business):
        conversations = {
            c: Conversation.objects.get(contact__customer=c) for c in (old_resolved, new_resolved, old_open)
        }
        Conversation.objects.filter(pk=conversations[old_resolved].pk).update(
            status="resolved", updated_at=long_ago, last_message_at=long_ago
        )
        Conversation.objects.filter(pk=conversations[new_resolved].pk).update(status="resolved")
        Conversation.objects.filter(pk=conversations[old_open].pk).update(updated_at=long_ago, last_message_at=long_ago)
    owner = business_client(business, live_db.owner_a)
    assert owner.post("/privacy/", {"days": "10"}).status_code == 400  # below the minimum
    assert owner.post("/privacy/", {"days": "30"}).status_code == 302
    business.refresh_from_db()
    assert business.conversation_retention_days == 30
    try:
        from customers.jobs import retention_apply_all

        retention_apply_all.defer(timestamp=0)
        run_privacy_jobs()
        with in_business(business):
            remaining = set(Conversation.objects.values_list("pk", flat=True))
            assert conversations[old_resolved].pk not in remaining
            assert not Message.objects.filter(conversation_id=conversations[old_resolved].pk).exists()
            assert not Event.objects.filter(conversation_id=conversations[old_resolved].pk).exists()
            assert {conversations[new_resolved].pk, conversations[old_open].pk} <= remaining
        assert not CustomerThread.objects.filter(customer=old_resolved, business=business).exists()
        assert CustomerThread.objects.filter(customer=new_resolved, business=business).exists()
    finally:
        type(business).objects.filter(pk=business.pk).update(conversation_retention_days=730)
