"""The development mailbox: mails stored by the backend, readable at /dev/mailbox/ with links."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.core.mail import EmailMultiAlternatives, send_mail
from django.test import override_settings

from accounts.models import MailboxMessage, User
from tests.conftest import PASSWORD, World, business_client, public_client, unique

MAILBOX = "accounts.mailbox.MailboxBackend"


@override_settings(EMAIL_BACKEND=MAILBOX)
def test_mailbox_backend_stores_mails_and_the_page_shows_clickable_links(world: World) -> None:
    to = f"{unique('someone')}@example.com"
    send_mail("Confirm your address", "Open http://parley.localhost:8000/accounts/confirm-email/abc/ now.", None, [to])
    html = EmailMultiAlternatives("HTML only too", "plain text", None, [to])
    html.attach_alternative("<p>rich</p>", "text/html")
    html.send()
    assert MailboxMessage.objects.filter(to=to).count() == 2

    with override_settings(DEBUG=True):
        page = public_client().get("/dev/mailbox/", {"to": to}).content.decode()
    assert "Confirm your address" in page and "HTML only too" in page
    assert '<a href="http://parley.localhost:8000/accounts/confirm-email/abc/"' in page


def test_mailbox_is_hidden_outside_development_except_for_staff(world: World) -> None:
    with override_settings(DEBUG=False):
        assert public_client().get("/dev/mailbox/").status_code == 404
        assert public_client(world.owner_a).get("/dev/mailbox/").status_code == 404
        assert public_client(world.staff).get("/dev/mailbox/").status_code == 200
    assert business_client(world.business_a, world.staff).get("/dev/mailbox/").status_code == 404


def test_mailbox_filter_with_a_nul_is_not_an_error(world: World) -> None:
    with override_settings(DEBUG=True):
        assert public_client().get("/dev/mailbox/", {"to": "a\x00b"}).status_code == 200


def test_badge_checklist_lists_the_email_step_with_a_link(world: World) -> None:
    owner = User.objects.create_user(f"{unique('owner')}@example.com", PASSWORD, full_name="Olga Owner")
    from tenancy.services import business_create

    business = business_create(owner=owner, name="Kiosk", slug=unique("kiosk-"))
    address = EmailAddress.objects.create(user=owner, email=owner.email, verified=False, primary=True)
    with override_settings(DEBUG=True, EMAIL_BACKEND=MAILBOX):
        page = business_client(business, owner).get("/verification/").content.decode()
    assert "A confirmed email address on your account" in page
    assert "/accounts/email/" in page and "/dev/mailbox/" in page
    assert 'class="todo"><span class="sr-only">Missing:</span>A confirmed email' in page

    address.verified = True
    address.save()
    page = business_client(business, owner).get("/verification/").content.decode()
    assert 'class="done"><span class="sr-only">Done:</span>A confirmed email' in page
