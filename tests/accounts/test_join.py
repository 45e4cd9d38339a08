"""A team invitation: the mail names who invited whom where and with which role, its one link
opens "Join <business>" on the business's host, and setting a password there signs the person
in on the business's dashboard. Someone who already has an account is told they were added."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.utils import translation

from accounts.models import Membership, User
from audit.models import AuditEvent
from tenancy.models import Business
from tests.conftest import PASSWORD, World, business_client, unique

URL = re.compile(r"https?://\S+")
NEW_PASSWORD = PASSWORD + "-joined"


@pytest.fixture(autouse=True)
def _back_to_the_default_language() -> Iterator[None]:
    yield
    translation.deactivate()


def invite(world: World, capture: Any, *, role: str = "agent", email: str = "") -> tuple[str, Any]:
    """The owner of Alpha adds a seat on /team/; returns the address and the mail sent."""
    email = email or f"{unique('joiner')}@alpha.test"
    owner = business_client(world.business_a, world.owner_a)
    with capture(execute=True):
        response = owner.post("/team/", {"email": email, "full_name": "Jo Joiner", "role": role})
    assert response.status_code == 302
    from django.core import mail

    return email, mail.outbox[-1]


def join_path(mail: Any, business: Business) -> str:
    links = URL.findall(mail.body)
    assert len(links) == 1, links
    assert links[0].startswith(business.absolute_url("/join/"))
    return links[0].removeprefix(business.absolute_url(""))


def test_invitation_mail_names_the_inviter_the_business_the_role_and_one_link(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    world.owner_a.full_name = "Olga Owner"
    world.owner_a.save(update_fields=["full_name"])
    email, mail = invite(world, django_capture_on_commit_callbacks, role="admin")
    assert mail.to == [email]
    business = world.business_a.display_name
    assert mail.subject == f"Olga Owner ({world.owner_a.email}) invited you to {business} on Parley"
    assert f"Olga Owner ({world.owner_a.email}) invited you to join {business} on Parley" in mail.body
    assert "with the role Admin" in mail.body
    assert f"You will log in as {email}." in mail.body
    assert "works once and expires in 3 days" in mail.body
    join_path(mail, world.business_a)  # exactly one link, to the join page on Alpha's host
    assert "/accounts/password/reset/" not in mail.body
    assert Membership.objects.get(user__email=email, business=world.business_a).added_by == world.owner_a


def test_join_page_says_which_business_who_invited_and_the_role(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    page = business_client(world.business_a).get(join_path(mail, world.business_a))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"<h1>Join {world.business_a.display_name}</h1>" in html
    assert f"<p>{world.owner_a.email} invited you to join {world.business_a.display_name} on Parley" in html
    assert "with the role <strong>Agent</strong>" in html
    assert email in html
    assert 'name="new_password1"' in html and 'name="new_password2"' in html
    assert "Set password and join" in html
    assert "Change Password" not in html


def test_join_page_in_german(world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any) -> None:
    world.owner_a.full_name = "Olga Owner"
    world.owner_a.save(update_fields=["full_name"])
    _, mail = invite(world, django_capture_on_commit_callbacks)
    page = business_client(world.business_a).get(join_path(mail, world.business_a), HTTP_ACCEPT_LANGUAGE="de")
    html = page.content.decode()
    assert f"<h1>{world.business_a.display_name} beitreten</h1>" in html
    assert (
        f"Olga Owner ({world.owner_a.email}) hat Sie eingeladen, {world.business_a.display_name} auf Parley "
        "mit der Rolle <strong>Agent</strong> beizutreten." in html
    )
    assert "Passwort festlegen und beitreten" in html


def test_setting_the_password_signs_in_and_lands_on_the_dashboard(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    client = business_client(world.business_a)
    response = client.post(
        join_path(mail, world.business_a), {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email=email)
    assert user.check_password(NEW_PASSWORD)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert EmailAddress.objects.get(user=user, email=email).verified  # the link reached the address
    assert AuditEvent.objects.filter(action="seat.invitation_accepted", actor=user, business=world.business_a).exists()
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert f"Welcome to {world.business_a.display_name}" in dashboard.content.decode()


def test_a_used_link_is_refused_with_a_clear_message(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    path = join_path(mail, world.business_a)
    first = business_client(world.business_a).post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert first.status_code == 302

    stranger = business_client(world.business_a)
    for response in (
        stranger.get(path),
        stranger.post(path, {"new_password1": "another-" + NEW_PASSWORD, "new_password2": "another-" + NEW_PASSWORD}),
    ):
        assert response.status_code == 400
        html = response.content.decode()
        assert "This invitation link is no longer valid" in html
        assert 'href="/accounts/login/"' in html and 'href="/accounts/password/reset/"' in html
    assert User.objects.get(email=email).check_password(NEW_PASSWORD)
    assert "_auth_user_id" not in stranger.session


def test_bad_links_are_refused(world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    path = join_path(mail, world.business_a)
    uid, _, token = path.removeprefix("/join/").removesuffix("/").partition("-")
    client = business_client(world.business_a)
    for bad in (
        f"/join/{uid}-{token[:-2]}xx/",  # forged token
        f"/join/{uid}/",  # no token
        "/join/zzzzzzzzzzzzz-abc-def/",  # a user id beyond any
        "/join/!!-abc/",
        f"/join/{'1' * 300}-{token}/",
    ):
        response = client.get(bad)
        assert response.status_code == 400, bad
        assert "This invitation link is no longer valid" in response.content.decode()
    # Another business's host: the seat is not there, so the same link opens nothing.
    response = business_client(world.business_b).get(path)
    assert response.status_code == 400
    assert world.business_b.display_name not in response.content.decode().split("<h1>", 1)[1]
    assert not User.objects.get(email=email).has_usable_password()


def test_a_removed_seat_voids_the_invitation(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    Membership.objects.filter(user__email=email, business=world.business_a).delete()
    response = business_client(world.business_a).get(join_path(mail, world.business_a))
    assert response.status_code == 400


def test_mismatched_passwords_stay_on_the_page(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    client = business_client(world.business_a)
    path = join_path(mail, world.business_a)
    response = client.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD + "x"})
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode() or "didn't match" in response.content.decode()
    weak = client.post(path, {"new_password1": "12345678", "new_password2": "12345678"})
    assert weak.status_code == 200 and "too common" in weak.content.decode()
    assert not User.objects.get(email=email).has_usable_password()
    # The link still works after a mistake.
    assert client.get(path).status_code == 200


def test_an_account_with_a_second_factor_is_not_signed_in_by_the_link(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    from allauth.mfa.models import Authenticator

    email, mail = invite(world, django_capture_on_commit_callbacks)
    user = User.objects.get(email=email)
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    client = business_client(world.business_a)
    response = client.post(
        join_path(mail, world.business_a), {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"
    assert "_auth_user_id" not in client.session
    assert User.objects.get(email=email).check_password(NEW_PASSWORD)


def test_an_existing_account_added_to_a_business_is_told_who_added_it_where(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    victim = world.agent_b  # an agent of Beta, added to Alpha by Alpha's owner
    owner = business_client(world.business_a, world.owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post("/team/", {"email": victim.email, "full_name": "Whoever", "role": "admin"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    business = world.business_a.display_name
    assert mail.to == [victim.email]
    assert mail.subject == f"You were added to {business} on Parley"
    assert f"{world.owner_a.email} added you to {business} on Parley with the role Admin." in mail.body
    assert URL.findall(mail.body) == [world.business_a.absolute_url("/")]
    assert f"ask {world.owner_a.email} to remove your seat" in mail.body
    # Nothing about their account changed: same password, same name.
    victim.refresh_from_db()
    assert victim.check_password(PASSWORD) and victim.full_name != "Whoever"


def test_a_signed_in_stranger_is_signed_out_before_the_invitee_is_signed_in(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, mail = invite(world, django_capture_on_commit_callbacks)
    client: Client = business_client(world.business_a, world.agent_b)
    response = client.post(
        join_path(mail, world.business_a), {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(email=email).pk)


def test_someone_invited_but_not_joined_yet_gets_an_invitation_from_a_second_business(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email, _ = invite(world, django_capture_on_commit_callbacks)
    owner_b = business_client(world.business_b, world.owner_b)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_b.post("/team/", {"email": email, "full_name": "Jo Joiner", "role": "agent"})
    assert response.status_code == 302
    mail = mailoutbox[-1]
    assert mail.to == [email] and world.business_b.display_name in mail.subject
    # They have no password yet, so "log in" would be a dead end: the mail is an invitation.
    path = join_path(mail, world.business_b)
    client = business_client(world.business_b)
    response = client.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
