"""Logging in without `next=` lands somewhere that exists on the host the user is on."""

from django.conf import settings

from tests.conftest import PASSWORD, World, business_client, public_client


def test_login_on_a_business_host_without_next_lands_on_its_dashboard(world: World) -> None:
    client = business_client(world.business_a)
    response = client.post("/accounts/login/", {"login": world.owner_a.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    dashboard = client.get(response["Location"])
    assert dashboard.status_code == 200
    assert b"Welcome to" in dashboard.content


def test_login_on_the_public_host_without_next_lands_on_home(world: World) -> None:
    client = public_client()
    response = client.post("/accounts/login/", {"login": world.owner_a.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/home/"
    # One business: home sends the owner on to its dashboard.
    home = client.get("/home/")
    assert home.status_code == 302 and home["Location"].startswith(world.business_a.absolute_url("/"))


def test_signup_redirect_on_a_business_host_points_at_the_public_host(world: World) -> None:
    from django.test import RequestFactory

    from accounts.adapter import ParleyAccountAdapter

    request = RequestFactory().get("/", HTTP_HOST=world.business_a.host)
    request.tenant = world.business_a  # type: ignore[attr-defined]
    assert ParleyAccountAdapter(request).get_signup_redirect_url(request) == f"{settings.PARLEY_PUBLIC_URL}/start/"
