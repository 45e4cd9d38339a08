"""Uploads are limited per uploader: a script looping on the upload URL (as a customer, an agent or
an API key) gets a clear 429 with Retry-After after a burst, stores nothing more, and nobody else
is slowed down. The bucket lives in the shared cache (Redis), so it holds across sessions and
server processes."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from accounts.models import Membership, User
from attachments import services
from attachments.models import Attachment
from messaging import send_limits
from messaging.services import message_send_customer
from notifications.services import api_key_create
from tests.attachments.files import png
from tests.attachments.test_access import customer_client, upload
from tests.conftest import World, business_client, unique
from tests.messaging.conftest import make_customer


def full_bucket(world: World, uploader_key: str) -> None:
    """A new uploader starts with a full bucket. Primary keys repeat from one test database to the
    next while Redis keeps its keys, so forget what an earlier run's namesake used."""
    caches["default"].delete(send_limits._key(world.business_a.schema_name, uploader_key, "upload"))


def stored_by(world: World, uploader_key: str) -> int:
    with tenant_context(world.business_a):
        return Attachment.objects.filter(uploader_key=uploader_key).count()


def test_a_customer_looping_on_uploads_is_refused_with_retry_after(world: World) -> None:
    customer = make_customer("Loop")
    uploader = f"customer:{customer.pk}"
    full_bucket(world, uploader)
    client = customer_client(world, customer)
    answers = [
        upload(client, "/chat/attachments/", f"p{i}.png", png(), upload_key=f"k{i}")
        for i in range(services.UPLOAD_BURST + 2)
    ]
    assert [a["status"] for a in answers[: services.UPLOAD_BURST]] == [201] * services.UPLOAD_BURST
    refused = answers[services.UPLOAD_BURST]
    assert refused["status"] == 429 and refused["error"]["code"] == "rate_limited", refused
    assert refused["error"]["retry_after"] > 0 and "too fast" in refused["error"]["message"]
    raw = client.post("/chat/attachments/", {"file": SimpleUploadedFile("x.png", png())})
    assert raw.status_code == 429 and int(raw["Retry-After"]) >= 1
    assert stored_by(world, uploader) == services.UPLOAD_BURST  # nothing half-written
    # A retry of an upload that was stored (its answer lost) still gets its attachment.
    again = upload(client, "/chat/attachments/", "p0.png", png(), upload_key="k0")
    assert again["status"] == 200 and again["attachment"]["id"] == answers[0]["attachment"]["id"]
    # The limit is the customer's, not the session's: a second session shares it ...
    assert upload(customer_client(world, customer), "/chat/attachments/", "y.png", png())["status"] == 429
    # ... and another customer is not slowed down.
    other = make_customer("Calm")
    full_bucket(world, f"customer:{other.pk}")
    assert upload(customer_client(world, other), "/chat/attachments/", "z.png", png())["status"] == 201


def test_an_agent_looping_on_uploads_is_refused(world: World) -> None:
    agent = User.objects.create_user(email=f"{unique('upload-agent')}@alpha.test", password="x" * 16)
    Membership.objects.create(user=agent, business=world.business_a, role="agent")
    full_bucket(world, f"user:{agent.pk}")
    customer = make_customer("Uploads")
    with tenant_context(world.business_a):
        conversation_id = message_send_customer(
            business=world.business_a, customer=customer, body="send me the form"
        ).message.conversation_id
    client = business_client(world.business_a, agent)
    statuses = [
        upload(client, "/inbox/api/attachments/", f"f{i}.png", png(), conversation_id=str(conversation_id))["status"]
        for i in range(services.UPLOAD_BURST + 1)
    ]
    assert statuses == [201] * services.UPLOAD_BURST + [429]
    assert stored_by(world, f"user:{agent.pk}") == services.UPLOAD_BURST


def test_an_api_key_looping_on_uploads_gets_a_429_problem(world: World) -> None:
    with tenant_context(world.business_a):
        created = api_key_create(business=world.business_a, actor=world.owner_a, name="uploads", scopes=["send"])
    client = business_client(world.business_a)
    full_bucket(world, f"api:{created.key.pk}")

    def post(i: int) -> Any:
        return client.post(
            "/api/v1/media",
            {"file": SimpleUploadedFile(f"m{i}.png", png())},
            headers={"Authorization": f"Bearer {created.secret}"},
        )

    answers = [post(i) for i in range(services.UPLOAD_BURST + 1)]
    assert [a.status_code for a in answers] == [201] * services.UPLOAD_BURST + [429]
    problem = answers[-1].json()
    assert problem["code"] == "rate_limited" and problem["status"] == 429
    assert int(answers[-1]["Retry-After"]) >= 1
