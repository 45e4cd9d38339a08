"""API keys: owner-only, shown once, stored hashed, scoped, revocable, every use recorded."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from notifications import services
from notifications.errors import ErrorCode, NotificationError
from notifications.models import ApiKey, ApiRequest
from tests.conftest import World, business_client, in_business


def test_key_is_stored_hashed_with_a_visible_prefix(world: World) -> None:
    with in_business(world.business_a):
        created = services.api_key_create(
            business=world.business_a, actor=world.owner_a, name="Booking system", scopes=["send", "read"]
        )
        key = ApiKey.objects.get(pk=created.key.pk)
        assert created.secret.startswith(key.prefix + "_")
        assert created.secret not in (key.key_hash, key.prefix)
        assert key.key_hash == services.api_key_hash(created.secret)
        assert services.api_key_authenticate(secret=created.secret) == key
        assert services.api_key_authenticate(secret=created.secret + "x") is None
        assert services.api_key_authenticate(secret="prl_nothing") is None
        assert AuditEvent.objects.filter(action="api_key.create", business=world.business_a).exists()


def test_only_the_owner_manages_keys(world: World) -> None:
    with in_business(world.business_a), pytest.raises(NotificationError) as info:
        services.api_key_create(business=world.business_a, actor=world.agent_a, name="x", scopes=["send"])
    assert info.value.code == ErrorCode.FORBIDDEN


def test_dashboard_shows_the_key_once_and_revokes_it(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post("/developers/", {"name": "Ops", "scopes": ["send"]})
    html = response.content.decode()
    secret = re.search(r'data-testid="new-api-key">([^<]+)<', html)
    assert secret is not None
    # How to send it, with <key> shown as text (unescaped, the browser took it for a tag).
    assert "Authorization: Bearer &lt;key&gt;" in html
    assert response["Cache-Control"] == "no-store"
    again = client.get("/developers/").content.decode()
    assert secret.group(1) not in again and secret.group(1).split("_")[1] in again
    with in_business(world.business_a):
        key = ApiKey.objects.get(name="Ops")
    api = business_client(world.business_a)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret.group(1)}"}
    assert api.get("/api/v1/templates", **auth).status_code == 403  # send-only key: no read scope
    assert client.post(f"/developers/keys/{key.pk}/revoke/").status_code == 302
    revoked = api.get("/api/v1/templates", **auth)
    assert revoked.status_code == 401 and revoked.json()["code"] == "unauthorized"
    with in_business(world.business_a):
        key.refresh_from_db()
        assert key.revoked_at is not None and key.last_used_at is not None
        assert ApiRequest.objects.filter(api_key=key, status_code=403).exists()


def test_agents_cannot_open_the_api_page(world: World) -> None:
    agent = business_client(world.business_a, world.agent_a)
    assert agent.get("/developers/").status_code == 403
