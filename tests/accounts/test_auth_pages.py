"""allauth's pages are Parley pages: one wording, the product's layout and buttons, "Sie" in German."""

from __future__ import annotations

import re

from allauth.account.models import EmailAddress
from django.conf import settings
from django.test import Client

from tests.conftest import World, business_client, public_client

DU_FORMS = re.compile(r"\b(du|dein\w*|dich|dir)\b", re.IGNORECASE)


def _main(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def test_login_page_says_log_in_and_keeps_remember_me_beside_its_checkbox(world: World) -> None:
    html = public_client().get("/accounts/login/").content.decode()
    assert "parley/parley.css" in html and "parley/accounts.css" in html
    main = _main(html)
    assert "Sign In" not in html and "Sign in" not in html
    assert "<h1>Log in</h1>" in main and ">Log in</button>" in main
    assert "Remember Me:" not in main
    # The checkbox comes first and its label follows on the same row.
    assert re.search(r'class="field choice">\s*<input type="checkbox" name="remember"[^>]*>\s*<label', main)


def test_signup_page_uses_the_product_wording(world: World) -> None:
    main = _main(public_client().get("/accounts/signup/").content.decode())
    assert "<h1>Create your account</h1>" in main and ">Create account</button>" in main
    assert "Sign Up" not in main and "Password:" not in main


def test_email_page_has_one_primary_action_and_no_resend_for_a_verified_address(world: World) -> None:
    client = public_client(world.owner_a)
    main = _main(client.get("/accounts/email/").content.decode())
    assert EmailAddress.objects.get(user=world.owner_a).verified
    assert 'name="action_send"' not in main  # nothing to re-send for a confirmed address
    assert 'name="action_remove"' not in main  # the only address cannot be removed

    EmailAddress.objects.create(user=world.owner_a, email="second@alpha.test", verified=False)
    main = _main(client.get("/accounts/email/").content.decode())
    assert re.search(r'name="action_send" class="button"', main)
    assert re.search(r'name="action_remove" class="button danger"', main)
    assert re.search(r'name="action_primary" class="button secondary"', main)
    assert 'class="pill warn">Not verified yet' in main


def test_two_factor_pages_keep_the_dashboard_header_on_a_business_host(world: World) -> None:
    html = business_client(world.business_a, world.owner_a).get("/accounts/2fa/").content.decode()
    header = html[html.index('<header class="topbar">') : html.index("</header>")]
    assert world.business_a.display_name in header
    assert 'href="/accounts/profile/"' in header
    assert 'aria-current="page"' in _main(html) or 'aria-current="page"' in html


def test_german_account_pages_say_sie(world: World) -> None:
    anonymous = Client(HTTP_HOST=settings.PARLEY_DOMAIN, HTTP_ACCEPT_LANGUAGE="de")
    signed_in = Client(HTTP_HOST=settings.PARLEY_DOMAIN, HTTP_ACCEPT_LANGUAGE="de")
    signed_in.force_login(world.owner_a)
    pages = {
        "/accounts/login/": anonymous,
        "/accounts/signup/": anonymous,
        "/accounts/password/reset/": anonymous,
        "/accounts/confirm-email/": anonymous,
        "/accounts/email/": signed_in,
        "/accounts/password/change/": signed_in,
        "/accounts/2fa/": signed_in,
        "/accounts/profile/": signed_in,
    }
    for path, client in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert '<html lang="de">' in html, path
        text = re.sub(r"<[^>]+>", " ", _main(html))
        assert not DU_FORMS.search(text), (path, DU_FORMS.findall(text))
    login = anonymous.post("/accounts/login/", {"login": world.owner_a.email, "password": "wrong"}).content.decode()
    assert "Anmelden" in login and not DU_FORMS.search(re.sub(r"<[^>]+>", " ", _main(login)))


def test_confirmation_mail_names_parley_and_says_sie_in_german(world: World, mailoutbox: list) -> None:
    from tests.conftest import PASSWORD, unique

    client = Client(HTTP_HOST=settings.PARLEY_DOMAIN, HTTP_ACCEPT_LANGUAGE="de")
    email = f"{unique('neu')}@example.com"
    response = client.post(
        "/accounts/signup/", {"email": email, "full_name": "Nora Neu", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    mail = mailoutbox[-1]
    assert mail.to == [email]
    assert mail.subject.startswith("Parley: ")
    assert "Hallo von Parley!" in mail.body and settings.PARLEY_PUBLIC_URL in mail.body
    assert not DU_FORMS.search(mail.subject + mail.body), DU_FORMS.findall(mail.subject + mail.body)
