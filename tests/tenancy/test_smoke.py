from tests.conftest import World, business_client, public_client


def test_landing_page(world: World) -> None:
    response = public_client().get("/")
    assert response.status_code == 200
    assert b"Parley" in response.content


def test_owner_sees_dashboard(world: World) -> None:
    response = business_client(world.business_a, world.owner_a).get("/")
    assert response.status_code == 200
    assert world.business_a.display_name.encode() in response.content
