"""A business's logo where customers see it: the directory, their list of conversations and the
chat page show it as an <img> (sized like the letter tile), served to anyone under /logos/ on
the page's own host (the CSP's img-src 'self'); without a logo the letter tile stays."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone

from accounts.models import Customer
from customers.session import SESSION_KEY
from directory.models import CustomerThread
from tenancy.models import Business
from tests.conftest import World, business_client, fresh_mobile, public_client

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def logo_on_a(world: World, settings: Any, tmp_path: Path) -> Iterator[Business]:
    """business_a with a logo for this test only (the world is shared by the whole run)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    business = Business.objects.get(pk=world.business_a.pk)
    business.logo.save("logo.png", ContentFile(PNG), save=True)
    yield business
    Business.objects.filter(pk=business.pk).update(logo="")


@pytest.fixture
def customer_with_threads(world: World) -> Client:
    """A signed-in customer with a conversation with each of the two businesses."""
    customer = Customer.objects.create(phone_number=fresh_mobile(), country_code="DE", verified_at=timezone.now())
    for business in (world.business_a, world.business_b):
        CustomerThread.objects.create(customer=customer, business=business, last_activity_at=timezone.now())
    client = public_client()
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()
    return client


def logo_img(business: Business) -> str:
    name = html.escape(business.display_name)
    return f'<img class="brand-mark" src="{business.logo_url}" alt="Logo of {name}" width="28" height="28">'


def letter_tile(business: Business) -> str:
    return f'<span class="brand-mark" aria-hidden="true">{business.display_name[:1].upper()}</span>'


def test_logo_url_is_a_same_origin_path(logo_on_a: Business) -> None:
    assert logo_on_a.logo_url == f"/{logo_on_a.logo.name}"
    assert logo_on_a.logo_url.startswith(f"/logos/{logo_on_a.schema_name}/") and logo_on_a.logo_url.endswith(".png")
    assert Business(display_name="No logo").logo_url == ""


def test_directory_shows_the_logo_and_the_letter_tile_without_one(world: World, logo_on_a: Business) -> None:
    page = public_client().get("/businesses/").content.decode()
    assert logo_img(logo_on_a) in page
    assert letter_tile(world.business_b) in page and "Logo of " + world.business_b.display_name not in page


def test_customers_list_of_conversations_shows_the_logo(
    world: World, logo_on_a: Business, customer_with_threads: Client
) -> None:
    page = customer_with_threads.get("/me/conversations/").content.decode()
    assert logo_img(logo_on_a) in page
    assert letter_tile(world.business_b) in page


def test_chat_header_shows_the_logo(world: World, logo_on_a: Business, customer_with_threads: Client) -> None:
    page = business_client(logo_on_a).get("/chat/").content.decode()
    assert logo_img(logo_on_a) in page and letter_tile(logo_on_a) not in page
    other = business_client(world.business_b).get("/chat/").content.decode()
    assert letter_tile(world.business_b) in other and '<img class="brand-mark"' not in other


@pytest.mark.parametrize("host", ["public", "business_a", "business_b"])
def test_logo_is_served_to_anyone_on_every_host(world: World, logo_on_a: Business, host: str) -> None:
    client = public_client() if host == "public" else business_client(getattr(world, host))
    response = client.get(logo_on_a.logo_url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG  # type: ignore[attr-defined]
    # The page that shows it allows same-origin images only; the logo needs nothing more.
    assert (
        "img-src 'self' data:"
        in client.get("/businesses/" if host == "public" else "/chat/")["Content-Security-Policy"]
    )


def test_only_current_logos_are_served(world: World, logo_on_a: Business, settings: Any) -> None:
    client = public_client()
    old_url = logo_on_a.logo_url
    # Another file under MEDIA_ROOT/logos/ that is nobody's logo (e.g. a replaced one): not served.
    Business.objects.filter(pk=logo_on_a.pk).update(logo="")
    assert client.get(old_url).status_code == 404
    assert client.get(f"/logos/{logo_on_a.schema_name}/missing.png").status_code == 404
    assert client.get(f"/logos/{world.business_b.schema_name}/{Path(old_url).name}").status_code == 404
