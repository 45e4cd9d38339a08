"""The public business directory at /businesses/."""

from __future__ import annotations

from tenancy.models import Business
from tests.conftest import World, public_client


def test_directory_finds_only_badge_holders_and_lists_them_first(world: World) -> None:
    Business.objects.filter(pk=world.business_b.pk).update(badge_status=Business.BadgeStatus.APPROVED)
    Business.objects.filter(pk=world.business_a.pk).update(badge_status=Business.BadgeStatus.NONE)
    client = public_client()
    listing = client.get("/businesses/").content.decode()
    assert listing.index(world.business_b.display_name) < listing.index(world.business_a.display_name)
    assert world.business_b.display_name in client.get("/businesses/?q=beta").content.decode()
    assert "/chat/" in client.get("/businesses/?q=beta").content.decode()
    assert world.business_a.display_name not in client.get("/businesses/?q=alpha").content.decode()
