"""Customer sign-in at /me/ with a phone number and a code, and the privacy page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import Customer
from audit.models import AuditEvent
from customers.models import Block, MarketingMute, Report
from customers.services import customer_contact_record
from customers.session import SESSION_KEY
from customers.views import safe_next
from tests.conftest import Concurrently, World, business_client, fresh_mobile, public_client
from verification.models import PhoneChallenge
from verification.phone import phone_display


def sign_in(client: Client, number: str, code: str, **params: str) -> Any:
    client.post("/me/", {"region": "DE", "phone": number, **params})
    return client.post("/me/code/", {"code": code})


def signed_in_customer(number: str, code: str) -> tuple[Client, Customer]:
    client = public_client()
    sign_in(client, number, code)
    return client, Customer.objects.get(phone_number=number)


def test_sign_in_creates_customer_and_session(world: World, fixed_code: str) -> None:
    client = public_client()
    page = client.get("/me/")
    assert page.status_code == 200 and "Sign in with your phone" in page.content.decode()
    number = fresh_mobile()
    local = "0" + number[3:]  # the same number written nationally
    response = client.post("/me/", {"region": "DE", "phone": local})
    assert response.status_code == 302 and response["Location"] == "/me/code/"
    response = client.post("/me/code/", {"code": fixed_code})
    assert response.status_code == 302 and response["Location"] == "/me/"
    customer = Customer.objects.get(phone_number=number)
    assert customer.verified_at is not None and customer.country_code == "DE"
    # Stored as read once, for every message event that names the number.
    assert customer.phone_formatted == customer.phone_display == phone_display(number)
    assert client.session[SESSION_KEY] == customer.pk
    page = client.get("/me/").content.decode()
    assert "Your messages and privacy" in page
    assert 'hx-get="/me/conversations/" hx-trigger="load"' in page


def test_sign_in_gets_a_new_session_key_and_keeps_next(world: World, fixed_code: str) -> None:
    """Against session fixation the key changes at sign-in; what the session held survives it."""
    client = public_client()
    target = world.business_a.absolute_url("/chat/")
    client.get("/me/", {"next": target})
    client.post("/me/", {"region": "DE", "phone": fresh_mobile()})
    before = client.session.session_key
    response = client.post("/me/code/", {"code": fixed_code})
    assert client.session.session_key != before
    assert response["Location"] == target


def test_wrong_code_does_not_sign_in(world: World, fixed_code: str) -> None:
    client = public_client()
    client.post("/me/", {"region": "DE", "phone": fresh_mobile()})
    response = client.post("/me/code/", {"code": "000000"})
    assert response.status_code == 400
    assert "That code didn" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_code_in_other_digit_scripts_works(world: World, fixed_code: str) -> None:
    """Full-width or Arabic-Indic digits from a phone keyboard are the same code."""
    client = public_client()
    client.post("/me/", {"region": "DE", "phone": fresh_mobile()})
    full_width = "".join(chr(0xFF10 + int(d)) for d in fixed_code)
    response = client.post("/me/code/", {"code": full_width})
    assert response.status_code == 302 and SESSION_KEY in client.session
    superscript = public_client()
    superscript.post("/me/", {"region": "DE", "phone": fresh_mobile()})
    refused = superscript.post("/me/code/", {"code": "12345²"})
    assert refused.status_code == 400 and "The code has 6 digits." in refused.content.decode()


def test_empty_posts_say_what_is_missing(world: World, fixed_code: str) -> None:
    """A POST with no fields is a bound form with errors, not a silent 400 with none."""
    client = public_client()
    empty = client.post("/me/", {})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()
    client.post("/me/", {"region": "DE", "phone": fresh_mobile()})
    empty_code = client.post("/me/code/", {})
    assert empty_code.status_code == 400 and "This field is required." in empty_code.content.decode()
    customer_client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    customer_contact_record(customer_id=customer.pk, business_id=world.business_a.pk)
    empty_report = customer_client.post(f"/me/businesses/{world.business_a.pk}/report/", {})
    assert empty_report.status_code == 400 and "This field is required." in empty_report.content.decode()
    assert not Report.objects.filter(customer=customer).exists()


def test_code_step_needs_a_number_first(world: World) -> None:
    response = public_client().post("/me/code/", {"code": "123456"})
    assert response.status_code == 302 and response["Location"] == "/me/"


def _normalised(html: str, number: str) -> str:
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
    html = re.sub(r'"X-CSRFToken": "[^"]+"', "", html)
    return html.replace(phone_display(number), "NUMBER")


def test_answers_are_the_same_for_known_and_unknown_numbers(world: World, fixed_code: str) -> None:
    known = fresh_mobile()
    sign_in(public_client(), known, fixed_code)
    assert Customer.objects.filter(phone_number=known).exists()
    unknown = fresh_mobile()

    pages = {}
    for number in (known, unknown):
        client = public_client()
        sent = client.post("/me/", {"region": "DE", "phone": number})
        assert (sent.status_code, sent["Location"]) == (302, "/me/code/")
        code_page = client.get("/me/code/")
        wrong = client.post("/me/code/", {"code": "000000"})
        pages[number] = (
            code_page.status_code,
            _normalised(code_page.content.decode(), number),
            wrong.status_code,
            _normalised(wrong.content.decode(), number),
        )
    assert pages[known] == pages[unknown]


def test_rate_limit_message_is_the_same_for_any_number(world: World) -> None:
    client = public_client()
    number = fresh_mobile()
    for _ in range(5):
        client.post("/me/", {"region": "DE", "phone": number})
    response = client.post("/me/", {"region": "DE", "phone": number})
    assert response.status_code == 429
    assert "Too many codes were requested for this number" in response.content.decode()
    assert PhoneChallenge.objects.filter(phone_number=number).count() == 5


def test_bad_number_is_a_form_error(world: World) -> None:
    response = public_client().post("/me/", {"region": "DE", "phone": "hello"})
    assert response.status_code == 400
    assert "That doesn&#x27;t look like a phone number." in response.content.decode()


def test_next_redirects_to_a_business_chat_page(world: World, fixed_code: str) -> None:
    client = public_client()
    target = world.business_a.absolute_url("/chat/")
    client.get("/me/", {"next": target})
    response = sign_in(client, fresh_mobile(), fixed_code)
    assert response.status_code == 302 and response["Location"] == target
    # Already signed in: /me/?next=... goes straight there.
    again = client.get("/me/", {"next": target})
    assert again.status_code == 302 and again["Location"] == target


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "//evil.example/",
        "http://parley.localhost.evil.example/",
        "http://evilparley.localhost/",
        "javascript:alert(1)",
        "http://a.parley.localhost\\@evil.example/",
        "http://[parley.localhost/",  # malformed: urlsplit raises, must not become a 500
    ],
)
def test_next_to_other_sites_is_ignored(world: World, fixed_code: str, url: str) -> None:
    assert safe_next(url) is None
    client = public_client()
    client.get("/me/", {"next": url})
    response = sign_in(client, fresh_mobile(), fixed_code)
    assert response["Location"] == "/me/"


def test_safe_next_accepts_platform_hosts() -> None:
    assert safe_next("http://parley.localhost:8000/me/") == "http://parley.localhost:8000/me/"
    assert safe_next("http://alpha.parley.localhost:8000/chat/?x=1") == "http://alpha.parley.localhost:8000/chat/?x=1"
    assert safe_next("/me/") == "/me/"


def test_sign_out(world: World, fixed_code: str) -> None:
    client, _customer = signed_in_customer(fresh_mobile(), fixed_code)
    client.post("/me/sign-out/")
    assert SESSION_KEY not in client.session
    assert "Sign in with your phone" in client.get("/me/").content.decode()


def test_privacy_page_lists_contacted_businesses_with_badge(world: World, fixed_code: str) -> None:
    client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    assert "No business has contacted you yet." in client.get("/me/").content.decode()
    customer_contact_record(customer_id=customer.pk, business_id=world.business_a.pk)
    customer_contact_record(customer_id=customer.pk, business_id=world.business_b.pk)
    world.business_a.badge_status = "approved"
    world.business_a.save()
    page = client.get("/me/").content.decode()
    alpha = page.index(world.business_a.display_name)
    beta = page.index(world.business_b.display_name)
    assert 'aria-label="Verified business"' in page[alpha : alpha + 600]
    assert 'aria-label="Verified business"' not in page[beta : beta + 600]


def test_privacy_page_queries_do_not_grow_with_businesses(world: World, fixed_code: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client, customer = signed_in_customer(fresh_mobile(), fixed_code)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/me/").status_code == 200
        return len(captured)

    customer_contact_record(customer_id=customer.pk, business_id=world.business_a.pk)
    Block.objects.create(customer=customer, business=world.business_a)
    one = queries()
    customer_contact_record(customer_id=customer.pk, business_id=world.business_b.pk)
    MarketingMute.objects.create(customer=customer, business=world.business_b)
    assert queries() == one


def test_block_unblock_mute_unmute(world: World, fixed_code: str) -> None:
    client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    customer_contact_record(customer_id=customer.pk, business_id=world.business_a.pk)
    pk = world.business_a.pk
    assert client.post(f"/me/businesses/{pk}/block/").status_code == 302
    assert Block.objects.filter(customer=customer, business_id=pk).exists()
    assert "Blocked" in client.get("/me/").content.decode()
    client.post(f"/me/businesses/{pk}/block/")  # twice is harmless
    assert Block.objects.filter(customer=customer, business_id=pk).count() == 1
    client.post(f"/me/businesses/{pk}/unblock/")
    assert not Block.objects.filter(customer=customer).exists()
    client.post(f"/me/businesses/{pk}/mute/")
    assert MarketingMute.objects.filter(customer=customer, business_id=pk).exists()
    client.post(f"/me/businesses/{pk}/unmute/")
    assert not MarketingMute.objects.filter(customer=customer).exists()
    actions = set(AuditEvent.objects.filter(target=f"customer:{customer.pk}").values_list("action", flat=True))
    assert actions == {
        "customer.blocked",
        "customer.unblocked",
        "customer.marketing_muted",
        "customer.marketing_unmuted",
    }


def test_actions_need_sign_in_post_and_a_real_business(world: World, fixed_code: str) -> None:
    pk = world.business_a.pk
    anonymous = public_client().post(f"/me/businesses/{pk}/block/")
    assert anonymous.status_code == 302 and anonymous["Location"] == "/me/"
    assert not Block.objects.filter(business_id=pk).exists()
    client, _customer = signed_in_customer(fresh_mobile(), fixed_code)
    assert client.get(f"/me/businesses/{pk}/block/").status_code == 405
    assert client.post("/me/businesses/999999/block/").status_code == 404
    from tenancy.models import PUBLIC_SCHEMA, Business

    public = Business.objects.get(schema_name=PUBLIC_SCHEMA)
    assert client.post(f"/me/businesses/{public.pk}/block/").status_code == 404


def test_one_customers_choices_are_invisible_to_another(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("verification.otp.generate_code", lambda: "111111")
    first, one = signed_in_customer(fresh_mobile(), "111111")
    second, _two = signed_in_customer(fresh_mobile(), "111111")
    customer_contact_record(customer_id=one.pk, business_id=world.business_a.pk)
    first.post(f"/me/businesses/{world.business_a.pk}/block/")
    page = second.get("/me/").content.decode()
    assert world.business_a.display_name not in page
    # Reporting needs a contact: the second customer cannot report a business that never wrote.
    assert second.get(f"/me/businesses/{world.business_a.pk}/report/").status_code == 404


def test_report_with_reason_and_block(world: World, fixed_code: str) -> None:
    client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    customer_contact_record(customer_id=customer.pk, business_id=world.business_a.pk)
    url = f"/me/businesses/{world.business_a.pk}/report/"
    form = client.get(url)
    assert form.status_code == 200 and "Scam or fraud" in form.content.decode()
    missing = client.post(url, {"details": "x"})
    assert missing.status_code == 400 and "This field is required." in missing.content.decode()
    other = client.post(url, {"reason": "other", "details": ""})
    assert other.status_code == 400 and "Please tell us briefly what happened." in other.content.decode()
    ok = client.post(url, {"reason": "scam", "details": "Asked for my bank PIN.", "block": "on"})
    assert ok.status_code == 302
    report = Report.objects.get(customer=customer)
    assert (report.reason, report.details, report.also_blocked) == ("scam", "Asked for my bank PIN.", True)
    assert Block.objects.filter(customer=customer, business=world.business_a).exists()
    again = client.post(url, {"reason": "spam"})
    assert again.status_code == 400 and "already reported this business today" in again.content.decode()


def test_staff_see_reports_per_business(world: World, fixed_code: str) -> None:
    client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    customer_contact_record(customer_id=customer.pk, business_id=world.business_b.pk)
    client.post(f"/me/businesses/{world.business_b.pk}/report/", {"reason": "spam", "details": "Daily adverts."})
    staff = public_client(world.staff)
    summary = staff.get("/admin/customers/reportedbusiness/").content.decode()
    assert world.business_b.display_name in summary
    assert f"?business__id__exact={world.business_b.pk}" in summary
    assert world.business_a.display_name not in summary
    listing = staff.get("/admin/customers/report/", {"business__id__exact": world.business_b.pk}).content.decode()
    assert "Spam or unwanted messages" in listing
    assert public_client(world.owner_b).get("/admin/customers/report/").status_code == 302


def test_customer_session_does_not_open_business_dashboards(world: World, fixed_code: str) -> None:
    client, _customer = signed_in_customer(fresh_mobile(), fixed_code)
    dashboard = business_client(world.business_a)
    dashboard.cookies = client.cookies
    response = dashboard.get("/verification/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_concurrent_reports_file_only_one(
    live_db: World, fixed_code: str, monkeypatch: pytest.MonkeyPatch, concurrently: Concurrently
) -> None:
    """A double-clicked "Send report" (two requests at once) files one report, not two."""
    import contextlib
    import time

    from django.core.exceptions import ValidationError

    from customers.services import customer_report

    _client, customer = signed_in_customer(fresh_mobile(), fixed_code)
    create = Report.objects.create

    def slow_create(**fields: Any) -> Report:
        time.sleep(0.2)  # widen the gap between "count today's reports" and the insert
        return create(**fields)

    monkeypatch.setattr(Report.objects, "create", slow_create)

    def report() -> None:
        with contextlib.suppress(ValidationError):
            customer_report(customer=customer, business=live_db.business_a, reason="spam", details="", block=False)

    try:
        concurrently(6, report)
        assert Report.objects.filter(customer=customer, business=live_db.business_a).count() == 1
    finally:
        Report.objects.filter(customer=customer).delete()  # committed: leave the shared business clean
