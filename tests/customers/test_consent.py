"""The privacy page's list of businesses, the consent ledger, STOP replies and the send check."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import formats, timezone

from audit.models import AuditEvent
from billing.models import UsageRecord
from customers.models import ConsentRecord, MarketingMute
from customers.selectors import consent_allows_send, customer_privacy_rows
from customers.services import consent_handle_keyword
from messaging.models import Message
from messaging.services import MessagingError, message_send_customer, message_send_template
from tests.conftest import World, business_client, in_business, public_client
from tests.customers.conftest import customer_client, make_customer, talk
from tests.jobs import run_queued_jobs


def test_privacy_page_lists_exactly_the_businesses_the_customer_talked_to(world: World) -> None:
    both, only_b, stranger = make_customer("Both"), make_customer("Only B"), make_customer("Nobody")
    talk(world.business_a, both, "Hallo A", "Noch eine Frage", reply_by=world.agent_a)
    talk(world.business_b, both, "Hallo B")
    talk(world.business_b, only_b, "Guten Tag")

    rows = {row.business.pk: row for row in customer_privacy_rows(customer=both)}
    assert set(rows) == {world.business_a.pk, world.business_b.pk}
    assert rows[world.business_a.pk].messages == 4  # two in, two replies
    assert rows[world.business_b.pk].messages == 1
    assert rows[world.business_a.pk].since is not None
    assert [row.business.pk for row in customer_privacy_rows(customer=only_b)] == [world.business_b.pk]
    assert customer_privacy_rows(customer=stranger) == []

    page = customer_client(only_b).get("/me/privacy/")
    assert page.status_code == 200
    html = page.content.decode()
    assert world.business_b.display_name in html and world.business_a.display_name not in html
    # Signed out: the sign-in page, nothing about anyone.
    assert public_client().get("/me/privacy/").status_code == 302


def test_privacy_page_shows_block_mute_and_consent(world: World) -> None:
    customer = make_customer()
    talk(world.business_a, customer, "Hallo")
    client = customer_client(customer)
    response = client.post(
        f"/me/privacy/businesses/{world.business_a.pk}/consent/", {"category": "marketing", "granted": "0"}
    )
    assert response.status_code == 302 and response["Location"] == "/me/privacy/"
    assert MarketingMute.objects.filter(customer=customer, business=world.business_a).exists()
    record = ConsentRecord.objects.get(customer=customer, business=world.business_a)
    assert (record.category, record.granted, record.source) == ("marketing", False, "me")
    html = client.get("/me/privacy/").content.decode()
    assert "Allow marketing" in html and "Privacy page" in html
    # One date format on the page: "in touch since" and the choice's date read alike.
    shown = formats.date_format(timezone.localtime(record.created_at), "DATE_FORMAT")
    assert f"Privacy page, {shown}" in html and f">{shown}</time>" in html, html
    # A repeated choice adds no row; a change does, and the mute follows the ledger.
    client.post(f"/me/privacy/businesses/{world.business_a.pk}/consent/", {"category": "marketing", "granted": "0"})
    assert ConsentRecord.objects.filter(customer=customer).count() == 1
    client.post(f"/me/privacy/businesses/{world.business_a.pk}/consent/", {"category": "marketing", "granted": "1"})
    assert not MarketingMute.objects.filter(customer=customer, business=world.business_a).exists()
    assert list(ConsentRecord.objects.filter(customer=customer).order_by("id").values_list("granted", flat=True)) == [
        False,
        True,
    ]
    # Bad input is a clear message, not a 500.
    response = client.post(f"/me/privacy/businesses/{world.business_a.pk}/consent/", {"category": "spam"})
    assert response.status_code == 302
    assert client.post("/me/privacy/businesses/999999/consent/", {"category": "marketing"}).status_code == 404


def test_consent_selector_reads_ledger_and_mute(world: World) -> None:
    customer = make_customer()
    ids = {"customer_id": customer.pk, "business_id": world.business_a.pk}
    assert consent_allows_send(**ids, category="marketing")
    MarketingMute.objects.create(customer=customer, business=world.business_a)  # the older mute alone
    assert not consent_allows_send(**ids, category="marketing")
    assert consent_allows_send(**ids, category="utility") and consent_allows_send(**ids, category="service")
    ConsentRecord.objects.create(
        customer=customer, business=world.business_a, category="utility", granted=False, source="api"
    )
    assert not consent_allows_send(**ids, category="utility")
    assert consent_allows_send(**ids, category="authentication")
    # Another business is not affected.
    assert consent_allows_send(customer_id=customer.pk, business_id=world.business_b.pk, category="marketing")


@pytest.mark.parametrize("text", ["STOP", " stop ", "Stopp!", "ABMELDEN", "abmelden."])
def test_stop_keywords(world: World, text: str) -> None:
    customer = make_customer()
    assert consent_handle_keyword(business=world.business_a, customer=customer, body=text)
    assert MarketingMute.objects.filter(customer=customer, business=world.business_a).exists()
    assert ConsentRecord.objects.get(customer=customer).source == "stop"


@pytest.mark.parametrize("text", ["stop the flight please", "Bitte nicht abmelden", "STOPPER", ""])
def test_other_texts_are_not_stop(world: World, text: str) -> None:
    customer = make_customer()
    assert not consent_handle_keyword(business=world.business_a, customer=customer, body=text)
    assert not MarketingMute.objects.filter(customer=customer).exists()


def _ledger(business_id: int) -> tuple[int, Decimal]:
    rows = UsageRecord.objects.filter(business_id=business_id)
    return rows.count(), rows.aggregate(total=Sum("unit_price"))["total"] or Decimal(0)


def test_stop_mutes_marketing_confirms_and_a_later_marketing_send_fails_unbilled(live_db: World) -> None:
    business = live_db.business_a
    customer = make_customer()
    with in_business(business):
        message_send_customer(business=business, customer=customer, body="STOP")
    assert MarketingMute.objects.filter(customer=customer, business=business).exists()
    run_queued_jobs(queues=["privacy"])
    with in_business(business):
        confirmation = Message.objects.get(conversation__contact__customer=customer, author_kind="system")
        assert "no longer receive marketing" in confirmation.body
        assert confirmation.direction == Message.Direction.OUTBOUND

    before = _ledger(business.pk)
    kwargs = {"customer": customer, "template_name": "offer", "author_key": "api:test"}
    with in_business(business), pytest.raises(MessagingError) as refused:
        message_send_template(business=business, body="50% off!", category="marketing", **kwargs)
    assert refused.value.code == "opted_out"
    assert _ledger(business.pk) == before  # nothing billed
    with in_business(business):
        assert not Message.objects.filter(conversation__contact__customer=customer, body="50% off!").exists()
        # Utility (a delivery update) still goes out.
        message_send_template(business=business, body="Your parcel arrives today", category="utility", **kwargs)
    assert AuditEvent.objects.filter(action="customer.marketing_muted", data__customer_id=customer.pk).exists()
    assert ConsentRecord.objects.get(customer=customer, business=business).source == "stop"


def test_business_exports_its_proof_of_consent(world: World) -> None:
    mine, theirs = make_customer(), make_customer()
    ConsentRecord.objects.create(
        customer=mine, business=world.business_a, category="marketing", granted=True, source="chat"
    )
    ConsentRecord.objects.create(
        customer=mine, business=world.business_a, category="marketing", granted=False, source="stop"
    )
    ConsentRecord.objects.create(
        customer=theirs, business=world.business_b, category="marketing", granted=True, source="api"
    )
    response = business_client(world.business_a, world.owner_a).get("/privacy/consents.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["time_utc", "phone_number", "category", "choice", "source"]
    # (Committed tests leave other customers' consents at this business; only ours are checked.)
    assert [(r[1], r[3], r[4]) for r in rows[1:] if r[1] == mine.phone_number] == [
        (mine.phone_number, "opt-in", "chat"),
        (mine.phone_number, "opt-out", "stop"),
    ]
    # Agents cannot download it; the other business's customers are not in it.
    assert business_client(world.business_a, world.agent_a).get("/privacy/consents.csv").status_code == 403
    assert theirs.phone_number not in response.content.decode()


def test_chat_page_records_marketing_consent_with_its_source(world: World) -> None:
    customer = make_customer()
    client = customer_client(customer)
    client.defaults["HTTP_HOST"] = world.business_a.host
    page = client.get("/chat/").content.decode()
    assert "may send you offers." in page and "Stop offers" in page
    response = client.post("/chat/consent/", {"granted": "0"})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    record = ConsentRecord.objects.get(customer=customer, business=world.business_a)
    assert (record.category, record.granted, record.source) == ("marketing", False, "chat")
    assert not consent_allows_send(customer_id=customer.pk, business_id=world.business_a.pk, category="marketing")
    assert "Receive offers" in client.get("/chat/").content.decode()
    client.post("/chat/consent/", {"granted": "1"})
    assert consent_allows_send(customer_id=customer.pk, business_id=world.business_a.pk, category="marketing")
    # Signed out: nothing is recorded; GET is not allowed.
    anonymous = business_client(world.business_a)
    assert anonymous.post("/chat/consent/", {"granted": "0"}).status_code == 302
    assert anonymous.get("/chat/consent/").status_code == 405
    assert ConsentRecord.objects.filter(customer=customer).count() == 2


def test_every_send_path_asks_the_consent_ledger_batch_writes_too(live_db: World) -> None:
    """The consent rule lives in the send core, so the API's batch path (which calls the writer
    directly) refuses an opted-out customer like a single send does — per customer, unbilled."""
    from messaging.sending import check_template_send, do_send_messages

    business = live_db.business_a
    opted_out, willing = make_customer(), make_customer()
    ConsentRecord.objects.create(customer=opted_out, business=business, category="utility", granted=False, source="api")
    MarketingMute.objects.create(customer=opted_out, business=business)
    before = _ledger(business.pk)
    requests = [
        check_template_send(
            customer=customer,
            template_name="parcel",
            body=f"Your parcel arrives today ({category})",
            category=category,
            author_key="api:batch",
        )
        for customer in (opted_out, willing)
        for category in ("utility", "marketing")
    ]
    with in_business(business):
        outcomes = do_send_messages(business=business, requests=requests)
    codes = [getattr(outcome, "code", "sent") for outcome in outcomes]
    assert codes == ["opted_out", "opted_out", "sent", "sent"]
    with in_business(business):
        assert not Message.objects.filter(conversation__contact__customer=opted_out).exists()
        assert Message.objects.filter(conversation__contact__customer=willing).count() == 2
    # Only the willing customer's messages opened a billable conversation; the refused ones none.
    assert not UsageRecord.objects.filter(business_id=business.pk, customer_id=opted_out.pk).exists()
    assert UsageRecord.objects.filter(business_id=business.pk, customer_id=willing.pk).exists()
    assert _ledger(business.pk)[0] > before[0]


def test_chat_page_of_a_blocked_business_offers_the_unblock_instead_of_the_composer(world: World) -> None:
    """Blocked, the business can neither write nor be written to: the chat page had the composer
    (a send then failed "You blocked this business…") and "may send you offers. Stop offers"."""
    import json

    from customers.models import Block
    from customers.services import customer_block

    business = world.business_a
    customer = make_customer()
    talk(business, customer, "Hello")
    chat = customer_client(customer)
    chat.defaults["HTTP_HOST"] = business.host
    customer_block(customer=customer, business=business)

    page = chat.get("/chat/").content.decode()
    assert 'id="composer" hidden' in page
    assert "may send you offers." not in page and "Stop offers" not in page and "Receive offers" not in page
    assert 'data-testid="chat-blocked"' in page and "You blocked this business." in page
    assert '<form method="post" action="/chat/unblock/">' in page
    config = json.loads(page.split('<script id="chat-config" type="application/json">', 1)[1].split("</script>")[0])
    assert config["blocked"] is True  # quick-reply buttons are not offered either (chat.js)

    # Signed out, or by GET, nothing is unblocked.
    stranger = business_client(business)
    assert stranger.post("/chat/unblock/")["Location"] == "/chat/"
    assert chat.get("/chat/unblock/").status_code == 405
    assert Block.objects.filter(customer=customer, business=business).exists()
    # The chat page's unblock, as /me/'s: audited, and the page is writable again.
    response = chat.post("/chat/unblock/")
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert not Block.objects.filter(customer=customer, business=business).exists()
    assert AuditEvent.objects.filter(action="customer.unblocked", target=f"customer:{customer.pk}").exists()
    page = chat.get("/chat/").content.decode()
    assert f"You unblocked {business.display_name}." in page
    assert 'id="composer">' in page and "may send you offers." in page and "chat-blocked" not in page
