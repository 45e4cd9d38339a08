"""The directory explains itself: browsing lists every business, a search by name finds only
businesses with the badge."""

from __future__ import annotations

from tests.conftest import World, public_client


def test_directory_explains_browse_versus_search(world: World) -> None:
    browse = public_client().get("/businesses/").content.decode()
    assert "Browse every business" in browse
    assert "A search by name finds only businesses with the green badge" in browse
    assert "All businesses" in browse
    # business_b has no badge: listed when browsing, not found by name.
    assert world.business_b.display_name in browse
    search = public_client().get("/businesses/", {"q": world.business_b.display_name}).content.decode()
    assert "Businesses with the green badge matching" in search
    assert world.business_b.display_name not in search.split("</h2>", 2)[-1].split("</section>")[0]
