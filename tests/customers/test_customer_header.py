"""A signed-in customer sees who they are in the header, and how to sign out; never the business
sign-up buttons."""

from __future__ import annotations

from django.test import Client

from customers.session import SESSION_KEY
from tests.conftest import World, business_client, public_client
from tests.messaging.conftest import make_customer
from verification.phone import phone_display


def _customer_client(client: Client, customer_id: int) -> Client:
    session = client.session
    session[SESSION_KEY] = customer_id
    session.save()
    return client


def test_signed_in_customer_sees_who_they_are_and_sign_out(world: World) -> None:
    customer = make_customer("Greta")
    client = _customer_client(public_client(), customer.pk)
    html = client.get("/me/").content.decode()
    header = html.split("</header>")[0]
    assert f"Signed in as {phone_display(customer.phone_number)}" in header
    assert "Sign out" in header and "/me/sign-out/" in header
    assert "Log in" not in header and "Start free" not in header

    # On a business's chat page the header still says who is signed in.
    chat = _customer_client(business_client(world.business_a), customer.pk).get("/chat/").content.decode()
    assert f"Signed in as {phone_display(customer.phone_number)}" in chat.split("</header>")[0]


def test_visitors_find_the_customer_page_from_the_header(world: World) -> None:
    header = public_client().get("/pricing/").content.decode().split("</header>")[0]
    assert "/me/" in header and "Log in" in header


def test_pages_say_badge_never_seal(world: World) -> None:
    customer = make_customer("Hans")
    pages = [
        public_client().get("/").content.decode(),
        public_client().get("/businesses/").content.decode(),
        _customer_client(public_client(), customer.pk).get("/me/").content.decode(),
    ]
    for html in pages:
        assert "seal" not in html.lower()
