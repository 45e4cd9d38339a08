"""Who may open what: membership, roles, staff-only admin, one login across hosts."""

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.conf import settings
from django.test import override_settings

from accounts.models import Membership, User
from accounts.services import seat_add, seat_remove
from audit.models import AuditEvent
from tenancy.models import Business
from tests.conftest import PASSWORD, World, business_client, host_client, public_client

MEMBER_PAGES = ["/", "/inbox/", "/contacts/"]
MANAGER_PAGES = ["/team/", "/verification/", "/billing/", "/templates/", "/developers/"]


@pytest.mark.parametrize("path", MEMBER_PAGES + MANAGER_PAGES)
def test_agent_of_one_business_gets_no_page_of_another(world: World, path: str) -> None:
    response = business_client(world.business_b, world.agent_a).get(path)
    # "/" falls back to the public chat page for non-members, which shows nothing private.
    if path == "/":
        assert response.status_code == 302
        assert response["Location"] == "/chat/"
    else:
        assert response.status_code == 403
        assert b"seat in this business" in response.content


@pytest.mark.parametrize("path", MEMBER_PAGES + MANAGER_PAGES)
def test_owner_of_other_business_is_refused_too(world: World, path: str) -> None:
    response = business_client(world.business_b, world.owner_a).get(path)
    assert response.status_code in {302, 403}
    assert world.business_b.display_name.encode() not in response.content or path == "/"


@pytest.mark.parametrize("path", MEMBER_PAGES)
def test_agent_opens_member_pages(world: World, path: str) -> None:
    response = business_client(world.business_a, world.agent_a).get(path)
    assert response.status_code == 200


@pytest.mark.parametrize("path", MANAGER_PAGES)
def test_agent_cannot_open_manager_pages(world: World, path: str) -> None:
    response = business_client(world.business_a, world.agent_a).get(path)
    assert response.status_code == 403
    assert b"owners and admins" in response.content


@pytest.mark.parametrize("path", MANAGER_PAGES)
def test_owner_opens_manager_pages(world: World, path: str) -> None:
    response = business_client(world.business_a, world.owner_a).get(path)
    assert response.status_code == 200


def test_agent_navigation_hides_manager_sections(world: World) -> None:
    html = business_client(world.business_a, world.agent_a).get("/inbox/").content.decode()
    assert 'href="/inbox/"' in html
    assert 'href="/team/"' not in html
    assert 'href="/billing/"' not in html
    owner_html = business_client(world.business_a, world.owner_a).get("/inbox/").content.decode()
    assert 'href="/team/"' in owner_html and 'href="/billing/"' in owner_html


def test_anonymous_visitor_is_sent_to_login_on_the_public_host(world: World) -> None:
    response = business_client(world.business_a).get("/inbox/")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{settings.PARLEY_PUBLIC_URL}/accounts/login/?next=")
    assert "alpha.parley.localhost" in response["Location"]


@pytest.mark.parametrize("port", ["", "8000"])
def test_signing_in_returns_to_the_business_page_asked_for(world: World, port: str) -> None:
    """/inbox/ on a business's host sends a stranger to the public host's login; signed in, the
    agent lands on the inbox they asked for (on a port as well: `make demo` serves on :8000)."""
    on_port = f":{port}" if port else ""
    public = f"http://{settings.PARLEY_DOMAIN}{on_port}"
    with override_settings(PARLEY_PORT=port, PARLEY_SCHEME="http", PARLEY_PUBLIC_URL=public):
        # The browser's Host header names the port, and so does the `next` made of it.
        asked = host_client(world.business_a.host + on_port).get("/inbox/")["Location"]
        (inbox,) = parse_qs(urlsplit(asked).query)["next"]
        assert inbox == f"http://{world.business_a.host}{on_port}/inbox/"
        login = asked.removeprefix(public)
        response = host_client(settings.PARLEY_DOMAIN + on_port).post(
            login, {"login": world.agent_a.email, "password": PASSWORD}
        )
    assert response.status_code == 302
    assert response["Location"] == inbox


@pytest.mark.parametrize(
    "elsewhere",
    [
        "http://evil.example/inbox/",
        "http://alpha.parley.localhost:9999/inbox/",  # another port of the same host
        "http://alpha.parley.localhost:8000\\@evil.example/",
        "http://alpha.parley.localhost:99999/",
    ],
)
def test_signing_in_never_returns_elsewhere(world: World, elsewhere: str) -> None:
    response = public_client().post(
        f"/accounts/login/?next={quote(elsewhere)}", {"login": world.agent_a.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert "evil.example" not in response["Location"] and ":9999" not in response["Location"], response["Location"]


def test_unknown_business_host_is_a_friendly_404(world: World) -> None:
    response = host_client("nobody-here.parley.localhost").get("/")
    assert response.status_code == 404
    assert b"no business at this address" in response.content


def test_one_login_works_on_public_site_and_business_subdomain(world: World) -> None:
    client = public_client()
    response = client.post("/accounts/login/", {"login": world.owner_a.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["domain"] == ".parley.localhost"
    # The same cookie jar, now on the business's host.
    response = client.get("/", HTTP_HOST=world.business_a.host)
    assert response.status_code == 200
    assert b"Welcome to" in response.content


def test_admin_refuses_non_staff(world: World) -> None:
    response = public_client(world.owner_a).get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    response = public_client(world.owner_a).get("/admin/tenancy/business/")
    assert response.status_code == 302


def test_admin_is_not_served_on_business_hosts(world: World) -> None:
    response = business_client(world.business_a, world.staff).get("/admin/")
    assert response.status_code == 404


def test_staff_lists_searches_and_suspends_businesses(world: World) -> None:
    client = public_client(world.staff)
    response = client.get("/admin/tenancy/business/", {"q": "alpha"})
    assert response.status_code == 200
    assert b"alpha" in response.content
    assert b"beta" not in response.content.split(b"result_list")[-1]

    response = client.post(
        "/admin/tenancy/business/",
        {"action": "suspend", "_selected_action": [world.business_a.pk]},
    )
    assert response.status_code == 302
    world.business_a.refresh_from_db()
    assert world.business_a.status == Business.Status.SUSPENDED
    assert AuditEvent.objects.filter(action="business.suspended", business=world.business_a, actor=world.staff).exists()
    # The owner sees why.
    html = business_client(world.business_a, world.owner_a).get("/").content
    assert b"suspended" in html

    client.post("/admin/tenancy/business/", {"action": "reactivate", "_selected_action": [world.business_a.pk]})
    world.business_a.refresh_from_db()
    assert world.business_a.status == Business.Status.ACTIVE


def test_staff_reads_users_memberships_and_audit_log(world: World) -> None:
    client = public_client(world.staff)
    for url in ("/admin/accounts/user/", "/admin/accounts/membership/", "/admin/audit/auditevent/"):
        assert client.get(url).status_code == 200, url


def test_owner_adds_and_removes_an_agent_seat(
    world: World, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    client = business_client(world.business_a, world.owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/team/", {"email": "New.Agent@Alpha.test", "full_name": "New Agent", "role": "agent"})
    assert response.status_code == 302
    seat = Membership.objects.get(business=world.business_a, user__email="new.agent@alpha.test")
    assert seat.role == "agent"
    assert not seat.user.has_usable_password()
    assert len(mailoutbox) == 1 and world.business_a.absolute_url("/join/") in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="seat.added", target="new.agent@alpha.test").exists()

    response = client.post(f"/team/{seat.pk}/remove/")
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=seat.pk).exists()


def test_duplicate_seat_gets_a_form_error(world: World) -> None:
    response = business_client(world.business_a, world.owner_a).post(
        "/team/", {"email": world.agent_a.email, "full_name": "Agent Alpha", "role": "agent"}
    )
    assert response.status_code == 200
    assert b"already has a seat" in response.content


def test_agent_cannot_add_seats_and_admin_cannot_add_owner(world: World) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        seat_add(business=world.business_a, actor=world.agent_a, email="x@alpha.test", role="agent")
    admin = User.objects.create_user("admin@alpha.test", PASSWORD)
    Membership.objects.create(user=admin, business=world.business_a, role="admin")
    with pytest.raises(ValidationError):
        seat_add(business=world.business_a, actor=admin, email="y@alpha.test", role="owner")


def test_last_owner_cannot_be_removed(world: World) -> None:
    from django.core.exceptions import ValidationError

    seat = Membership.objects.get(business=world.business_a, user=world.owner_a)
    with pytest.raises(ValidationError, match="at least one owner"):
        seat_remove(membership=seat, actor=world.owner_a)


def test_signup_and_password_change_are_audited(world: World) -> None:
    client = public_client()
    response = client.post(
        "/accounts/signup/",
        {"email": "fresh@example.com", "full_name": "Fresh Owner", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"  # mandatory email verification
    user = User.objects.get(email="fresh@example.com")
    assert AuditEvent.objects.filter(action="user.signed_up", actor=user).exists()

    client.force_login(user)  # as after following the confirmation link (tests/accounts/test_enumeration.py)

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": PASSWORD + "!x", "password2": PASSWORD + "!x"},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="user.password_changed", actor=user).exists()


def test_mfa_pages_are_reachable_from_a_business_host(world: World) -> None:
    response = business_client(world.business_a, world.owner_a).get("/accounts/2fa/")
    assert response.status_code == 200
    assert b"Authenticator" in response.content


def test_dashboard_overview_shows_badge_decisions_to_managers_only(world: World) -> None:
    from verification.models import BusinessNotice

    BusinessNotice.objects.create(
        business=world.business_a, level="info", title="Your green badge was approved", body="Congratulations."
    )
    owner_html = business_client(world.business_a, world.owner_a).get("/").content.decode()
    assert "Your green badge was approved" in owner_html
    assert 'href="/verification/"' in owner_html
    agent_html = business_client(world.business_a, world.agent_a).get("/").content.decode()
    assert "Your green badge was approved" not in agent_html
    other_html = business_client(world.business_b, world.owner_b).get("/").content.decode()
    assert "Your green badge was approved" not in other_html
