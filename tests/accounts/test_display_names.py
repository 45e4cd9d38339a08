"""Customers see a name each person chose, not their email's local part."""

from __future__ import annotations

from typing import Any

from accounts.models import Membership, User
from tests.conftest import PASSWORD, World, business_client, public_client, unique


def test_signup_asks_for_a_display_name(world: World) -> None:
    email = f"{unique('owner')}@example.com"
    client = public_client()
    form = client.get("/accounts/signup/").content.decode()
    assert 'name="full_name"' in form and "Display name" in form

    missing = client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    assert missing.status_code == 200
    assert not User.objects.filter(email=email).exists()

    response = client.post(
        "/accounts/signup/",
        {"email": email, "full_name": "  Anna   Berg ", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    user = User.objects.get(email=email)
    assert user.full_name == "Anna Berg"
    assert user.get_short_name() == "Anna Berg"


def test_message_author_is_the_display_name_not_the_email() -> None:
    assert User(email="journey-9998da@example.com", full_name="Anna from Support").get_short_name() == (
        "Anna from Support"
    )


def test_team_invite_asks_for_the_new_persons_name(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    client = business_client(world.business_a, world.owner_a)
    email = f"{unique('agent')}@alpha.test"
    response = client.post("/team/", {"email": email, "role": "agent"})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert not User.objects.filter(email=email).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/team/", {"email": email, "full_name": "Ben from Billing", "role": "agent"})
    assert response.status_code == 302
    seat = Membership.objects.get(business=world.business_a, user__email=email)
    assert seat.user.get_short_name() == "Ben from Billing"


def test_each_agent_edits_their_display_name_on_either_host(world: World) -> None:
    for client in (public_client(world.agent_a), business_client(world.business_a, world.agent_a)):
        page = client.get("/accounts/profile/")
        assert page.status_code == 200 and 'name="full_name"' in page.content.decode()
        response = client.post("/accounts/profile/", {"full_name": "Clara (Alpha support)"})
        assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
        world.agent_a.refresh_from_db()
        assert world.agent_a.get_short_name() == "Clara (Alpha support)"
        blank = client.post("/accounts/profile/", {"full_name": "   "})
        assert blank.status_code == 200 and "This field is required" in blank.content.decode()


def test_profile_page_needs_a_login(world: World) -> None:
    response = public_client().get("/accounts/profile/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_invited_agent_sets_a_password_through_the_invitation_and_can_log_in(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    from allauth.account.models import EmailAddress

    email = f"{unique('invited')}@alpha.test"
    with django_capture_on_commit_callbacks(execute=True):
        business_client(world.business_a, world.owner_a).post(
            "/team/", {"email": email, "full_name": "Ida Invited", "role": "agent"}
        )
    assert not EmailAddress.objects.get(email=email).verified
    # The invitation leads to Parley's own join page on the business's host (tests/accounts/test_join.py).
    link = next(word for word in mailoutbox[-1].body.split() if "/join/" in word)
    assert link.startswith(world.business_a.absolute_url("/join/"))
    client = business_client(world.business_a)
    new_password = PASSWORD + "-ida"
    response = client.post(
        link.removeprefix(world.business_a.absolute_url("")),
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert response.status_code == 302
    # Following the link proved the address: mandatory verification does not stop the login.
    assert EmailAddress.objects.get(email=email).verified
    client = public_client()
    response = client.post("/accounts/login/", {"login": email, "password": new_password})
    assert response.status_code == 302 and response["Location"] == "/home/"
