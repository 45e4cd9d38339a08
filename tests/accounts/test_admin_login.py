"""The Django admin is reached only through allauth's login: two-factor and rate limits apply."""

from __future__ import annotations

import secrets
import time

from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.conf import settings
from django.http import HttpResponse
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD, World, unique


def _staff_with_totp() -> tuple[User, str]:
    from allauth.account.models import EmailAddress

    email = f"{unique('staff')}@parley.test"
    user = User.objects.create_user(email, PASSWORD, is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def _fresh_ip() -> str:
    """Rate limits live in the shared cache across runs: every test attempt comes from its own address."""
    return "10." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


def _client(ip: str) -> Client:
    return Client(HTTP_HOST=settings.PARLEY_DOMAIN, REMOTE_ADDR=ip)


def _in_admin(client: Client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 200 and b"Platform administration" in response.content


def test_admin_login_form_with_password_alone_does_not_let_a_totp_user_in(world: World) -> None:
    user, secret = _staff_with_totp()
    client = _client(_fresh_ip())

    # The admin's own form no longer authenticates: it hands over to allauth's login.
    response = client.post("/admin/login/?next=/admin/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert not _in_admin(client)

    # allauth's login with the right password stops at the second factor.
    response = client.post("/accounts/login/?next=/admin/", {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/authenticate/"
    assert not _in_admin(client)

    # Only the code finishes the login, and then the admin opens.
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _in_admin(client)


def test_admin_login_page_redirects_anonymous_visitors_to_allauth(world: World) -> None:
    response = _client(_fresh_ip()).get("/admin/login/?next=/admin/billing/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Fbilling%2F"


def _limited(response: HttpResponse) -> bool:
    # allauth answers a limited login with the form and its "too many" error, or, for the
    # per-IP limit on any login attempt, with HTTP 429.
    return response.status_code == 429 or "Too many failed login attempts" in response.content.decode()


def test_twelve_wrong_passwords_for_the_admin_get_limited(world: World) -> None:
    user, _secret = _staff_with_totp()
    client = _client(_fresh_ip())
    pages = [
        client.post("/accounts/login/?next=/admin/", {"login": user.email, "password": f"wrong-{attempt}"})
        for attempt in range(12)
    ]
    assert pages[0].status_code == 200 and not _limited(pages[0])  # the form again, with its error
    assert all(page.status_code in {200, 429} for page in pages)  # never a way in
    assert _limited(pages[-1])
    # Once limited, even the right password is refused for now.
    response = client.post("/accounts/login/?next=/admin/", {"login": user.email, "password": PASSWORD})
    assert _limited(response)
    assert not _in_admin(client)


def test_non_staff_after_login_cannot_open_the_admin(world: World) -> None:
    client = _client(_fresh_ip())
    client.force_login(world.owner_a)
    assert client.get("/admin/login/").status_code == 403
    assert not _in_admin(client)


def test_staff_without_two_factor_are_sent_to_set_it_up(world: World) -> None:
    """Staff grant the green badge and suspend businesses: a password alone never opens the
    admin, on any of its pages; with an authenticator app on, it opens."""
    from allauth.account.models import EmailAddress

    email = f"{unique('staff')}@parley.test"
    user = User.objects.create_user(email, PASSWORD, is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    client = _client(_fresh_ip())
    response = client.post("/accounts/login/?next=/admin/", {"login": email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"  # no second factor to ask for
    for path in ("/admin/", "/admin/tenancy/business/", "/admin/login/"):
        refused = client.get(path)
        assert refused.status_code == 302 and refused["Location"] == "/accounts/2fa/totp/activate/", path
    page = client.get("/accounts/2fa/totp/activate/", follow=True).content.decode()
    assert "need two-factor authentication to open the admin" in page
    assert not _in_admin(client)
    TOTP.activate(user, generate_totp_secret())
    assert _in_admin(client)
