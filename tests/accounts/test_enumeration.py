"""Sign-up and password reset do not reveal which email addresses have an account."""

from __future__ import annotations

from django.conf import settings
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD, World, unique


def _signup(email: str) -> Client:
    client = Client(HTTP_HOST=settings.PARLEY_DOMAIN)
    response = client.post(
        "/accounts/signup/",
        {"email": email, "full_name": "Someone", "password1": PASSWORD, "password2": PASSWORD},
    )
    client.response = response  # type: ignore[attr-defined]
    return client


def test_signup_with_a_registered_email_looks_exactly_like_a_new_one(world: World, mailoutbox: list) -> None:
    # A fresh registered address: allauth sends "you already have an account" once per while.
    registered = User.objects.create_user(f"{unique('registered')}@example.com", PASSWORD, full_name="Reg")
    taken = _signup(registered.email).response  # type: ignore[attr-defined]
    fresh_email = f"{unique('new')}@example.com"
    fresh = _signup(fresh_email).response  # type: ignore[attr-defined]

    assert taken.status_code == fresh.status_code == 302
    assert taken["Location"] == fresh["Location"] == "/accounts/confirm-email/"
    # Both addresses get a mail; only the inbox's owner learns which one it was.
    assert sorted(m.to[0] for m in mailoutbox) == sorted([registered.email, fresh_email])
    assert User.objects.filter(email=registered.email).count() == 1


def test_a_new_account_cannot_log_in_before_confirming_its_address(world: World, mailoutbox: list) -> None:
    email = f"{unique('new')}@example.com"
    client = _signup(email)
    assert "_auth_user_id" not in client.session
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session

    # The link in the mail confirms the address and logs the new owner in, on to /start/.
    link = next(line for line in mailoutbox[-1].body.splitlines() if "/accounts/confirm-email/" in line).strip()
    path = link[link.index("/accounts/confirm-email/") :]
    response = client.post(path)
    assert response.status_code == 302
    assert client.get("/start/").status_code == 200


def test_password_reset_answers_the_same_for_unknown_addresses(world: World) -> None:
    client = Client(HTTP_HOST=settings.PARLEY_DOMAIN)
    known = client.post("/accounts/password/reset/", {"email": world.owner_a.email})
    unknown = client.post("/accounts/password/reset/", {"email": f"{unique('nobody')}@example.com"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
