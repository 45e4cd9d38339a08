"""The dashboard's verification page: phone number, profile, access and tenant isolation."""

from __future__ import annotations

import re

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit.models import AuditEvent
from tenancy.models import Business
from tests.conftest import World, business_client
from tests.verification.conftest import PNG, fresh_mobile
from verification.models import PhoneChallenge
from verification.phone import phone_display


def test_page_is_for_owners_and_admins(world: World) -> None:
    assert business_client(world.business_a, world.owner_a).get("/verification/").status_code == 200
    assert business_client(world.business_a, world.agent_a).get("/verification/").status_code == 403
    assert business_client(world.business_a, world.owner_b).get("/verification/").status_code == 403
    anonymous = business_client(world.business_a).get("/verification/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    # Posting is guarded the same way.
    response = business_client(world.business_a, world.owner_b).post("/verification/phone/", {"phone": "030 1234567"})
    assert response.status_code == 403


def test_verify_business_number(world: World, fixed_code: str) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post("/verification/phone/", {"region": "DE", "phone": "+49 (0)151 2345-6789"})
    assert response.status_code == 302
    page = client.get("/verification/").content.decode()
    assert "Enter the code we sent to <strong>+49 1512 3456789</strong>" in page

    wrong = client.post("/verification/phone/confirm/", {"code": "000000"})
    assert wrong.status_code == 400
    assert "That code didn" in wrong.content.decode()

    ok = client.post("/verification/phone/confirm/", {"code": fixed_code})
    assert ok.status_code == 302
    business = Business.objects.get(pk=world.business_a.pk)
    assert business.phone_number == "+4915123456789"
    assert business.phone_verified_at is not None
    page = client.get("/verification/").content.decode()
    assert 'id="verified-number">+49 1512 3456789<' in page
    assert "Verified on" in page
    assert AuditEvent.objects.filter(business=business, action="business.phone_verified").exists()


def test_code_form_errors_are_clear(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    client.post("/verification/phone/", {"region": "DE", "phone": fresh_mobile()})
    response = client.post("/verification/phone/confirm/", {"code": "12ab"})
    assert response.status_code == 400
    assert "The code has 6 digits." in response.content.decode()


def test_confirm_without_pending_code_is_an_error_not_a_crash(world: World) -> None:
    response = business_client(world.business_a, world.owner_a).post("/verification/phone/confirm/", {"code": "123456"})
    assert response.status_code == 400


def test_send_limit_shows_as_429_with_message(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    number = fresh_mobile()
    for _ in range(5):
        assert client.post("/verification/phone/", {"region": "DE", "phone": number}).status_code == 302
    response = client.post("/verification/phone/", {"region": "DE", "phone": number})
    assert response.status_code == 429
    assert "Too many codes were requested for this number" in response.content.decode()


def test_code_for_one_business_cannot_verify_another(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    business_client(world.business_a, world.owner_a).post("/verification/phone/", {"region": "DE", "phone": number})
    # Beta's owner sends nothing; Alpha's code is useless on Beta's page.
    response = business_client(world.business_b, world.owner_b).post(
        "/verification/phone/confirm/", {"code": fixed_code}
    )
    assert response.status_code == 400
    assert Business.objects.get(pk=world.business_b.pk).phone_number == ""
    # Beta's page does not show Alpha's pending number.
    assert number[-7:] not in business_client(world.business_b, world.owner_b).get("/verification/").content.decode()
    challenge = PhoneChallenge.objects.get(phone_number=number)
    assert challenge.subject == f"business:{world.business_a.pk}"


def test_changing_number_keeps_old_one_until_verified(world: World, fixed_code: str) -> None:
    client = business_client(world.business_a, world.owner_a)
    client.post("/verification/phone/", {"region": "DE", "phone": "0151 23456789"})
    client.post("/verification/phone/confirm/", {"code": fixed_code})
    new = fresh_mobile()
    client.post("/verification/phone/", {"region": "DE", "phone": new})
    assert Business.objects.get(pk=world.business_a.pk).phone_number == "+4915123456789"
    client.post("/verification/phone/confirm/", {"code": fixed_code})
    assert Business.objects.get(pk=world.business_a.pk).phone_number == new


def test_profile_form_and_completeness(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    page = client.get("/verification/").content.decode()
    assert "Missing: Description" in page
    response = client.post(
        "/verification/profile/",
        {
            "display_name": "Alpha Shop",
            "description": "We sell hand-made furniture from our workshop in Leipzig.",
            "category": "retail",
            "website": "alpha.example",
            "email": "hello@alpha.example",
            "address": "Markt 1, 04109 Leipzig",
            "logo": SimpleUploadedFile("logo.png", PNG, content_type="image/png"),
        },
    )
    assert response.status_code == 302, response.content.decode()
    business = Business.objects.get(pk=world.business_a.pk)
    assert business.display_name == "Alpha Shop"
    assert business.website == "https://alpha.example"
    assert business.logo.name.startswith(f"logos/{business.schema_name}/") and business.logo.name.endswith(".png")
    page = client.get("/verification/").content.decode()
    assert "Profile 100% complete" in page


def test_profile_rejects_bad_input_clearly(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post(
        "/verification/profile/",
        {
            "display_name": "",
            "email": "not-an-email",
            "website": "not a url",
            "logo": SimpleUploadedFile("logo.png", b"<svg onload=alert(1)>", content_type="image/png"),
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required." in page
    assert "Enter a valid email address." in page
    assert "Enter a valid URL." in page
    assert "This file is not the image its name says it is." in page
    svg = client.post(
        "/verification/profile/",
        {"display_name": "Alpha", "logo": SimpleUploadedFile("logo.svg", b"<svg/>", content_type="image/svg+xml")},
    )
    assert "Please upload a PNG, JPEG, WebP or GIF image." in svg.content.decode()
    big = client.post(
        "/verification/profile/",
        {"display_name": "Alpha", "logo": SimpleUploadedFile("logo.png", PNG + b"0" * 1024 * 1024)},
    )
    assert "larger than 1 MB" in big.content.decode()


def test_logo_signature_must_match_the_whole_format(world: World) -> None:
    """A WebP is RIFF with "WEBP" at byte 8; a WAV or AVI file (also RIFF) is not a logo."""
    client = business_client(world.business_a, world.owner_a)
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32
    response = client.post(
        "/verification/profile/",
        {"display_name": "Alpha", "logo": SimpleUploadedFile("logo.webp", wav, content_type="image/webp")},
    )
    assert response.status_code == 400
    assert "This file is not the image its name says it is." in response.content.decode()
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
    ok = client.post(
        "/verification/profile/",
        {"display_name": "Alpha", "logo": SimpleUploadedFile("logo.webp", webp, content_type="image/webp")},
    )
    assert ok.status_code == 302
    assert Business.objects.get(pk=world.business_a.pk).logo.name.endswith(".webp")


def test_number_owned_elsewhere_gets_the_same_answer(world: World) -> None:
    """Whether another business already verified a number is nobody else's business."""
    taken = fresh_mobile()
    Business.objects.filter(pk=world.business_b.pk).update(phone_number=taken, phone_verified_at=timezone.now())
    answers = []
    for number in (taken, fresh_mobile()):
        client = business_client(world.business_a, world.owner_a)
        sent = client.post("/verification/phone/", {"region": "DE", "phone": number}, follow=True)
        html = sent.content.decode().replace(phone_display(number), "NUMBER")
        html = html.split('<main id="main"', 1)[1]
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        answers.append((sent.status_code, html))
    assert answers[0] == answers[1]


def test_each_dismiss_button_names_its_notice(world: World) -> None:
    """Several notices mean several "Dismiss" buttons; a screen reader hears which is which."""
    from verification.models import BusinessNotice

    BusinessNotice.objects.create(business=world.business_a, title="First <notice>")
    BusinessNotice.objects.create(business=world.business_a, title="Second")
    page = business_client(world.business_a, world.owner_a).get("/verification/").content.decode()
    assert 'aria-label="Dismiss: First &lt;notice&gt;"' in page
    assert 'aria-label="Dismiss: Second"' in page
