"""The retention hook: a per-business setting (default one year) and the daily job that removes
expired files, leaving a "file expired" placeholder."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tenants.utils import tenant_context

from attachments.errors import AttachmentError
from attachments.jobs import expire_all_attachments, expire_attachments
from attachments.models import Attachment, RetentionPolicy
from attachments.services import attachment_upload, retention_days, retention_set
from messaging.selectors import messages_page
from messaging.services import message_send_customer
from tests.attachments.files import PDF, png
from tests.conftest import World
from tests.messaging.conftest import make_customer


def test_the_setting_defaults_to_a_year_and_only_managers_change_it(world: World) -> None:
    business = world.business_a
    with tenant_context(business):
        RetentionPolicy.objects.filter(pk=1).delete()
        assert retention_days() == 365
        with pytest.raises(AttachmentError):
            retention_set(business=business, user=world.agent_a, days=30)
        with pytest.raises(AttachmentError):
            retention_set(business=business, user=world.owner_b, days=30)  # another business's owner
        for bad in (0, "x", 99999):
            with pytest.raises(AttachmentError):
                retention_set(business=business, user=world.owner_a, days=bad)
        retention_set(business=business, user=world.owner_a, days=30)
        assert retention_days() == 30
    with tenant_context(world.business_b):
        assert retention_days() == 365  # business B keeps its own setting


@pytest.mark.real_clock
def test_the_daily_job_removes_expired_files_and_leaves_a_placeholder(live_db: World) -> None:
    business = live_db.business_a
    customer = make_customer("Old")
    storage = storages["attachments"]
    with tenant_context(business):
        retention_set(business=business, user=live_db.owner_a, days=30)
        with time_machine.travel(timezone.now() - timedelta(days=31)):
            old, _ = attachment_upload(
                business=business, uploader_key=f"customer:{customer.pk}", file=SimpleUploadedFile("o.pdf", PDF)
            )
            message = message_send_customer(business=business, customer=customer, body="", attachment_id=old.pk).message
        recent, _ = attachment_upload(
            business=business, uploader_key=f"customer:{customer.pk}", file=SimpleUploadedFile("n.png", png())
        )
        message_send_customer(business=business, customer=customer, body="new", attachment_id=recent.pk)
        # Another business's old file is not this business's job.
        assert storage.exists(old.path)
    with tenant_context(live_db.business_b), time_machine.travel(timezone.now() - timedelta(days=400)):
        b_file, _ = attachment_upload(
            business=live_db.business_b, uploader_key="customer:1", file=SimpleUploadedFile("b.pdf", PDF)
        )
    try:
        assert expire_attachments(schema_name=business.schema_name) >= 1
        with tenant_context(business):
            old.refresh_from_db()
            recent.refresh_from_db()
            assert old.removed_at is not None and old.removed_reason == "expired"
            assert recent.removed_at is None and storage.exists(recent.path)
            assert not storage.exists(old.path)
            page = messages_page(conversation=message.conversation, include_notes=False)
            shown = next(m for m in page["messages"] if m["id"] == message.pk)
            assert shown["attachments"][0]["removed"] == "expired" and shown["attachments"][0]["url"] is None
        with tenant_context(live_db.business_b):
            assert Attachment.objects.get(pk=b_file.pk).removed_at is None  # B's own job, B's own setting
        # The periodic task queues one job per business.
        expire_all_attachments(timestamp=0)
    finally:
        with tenant_context(business):
            RetentionPolicy.objects.filter(pk=1).delete()
        with tenant_context(live_db.business_b):
            Attachment.objects.filter(pk=b_file.pk).delete()


def test_owners_set_it_on_the_privacy_page(world: World) -> None:
    from tests.conftest import business_client

    owner = business_client(world.business_a, world.owner_a)
    page = owner.get("/privacy/").content.decode()
    assert 'action="/attachments/retention/"' in page and 'value="365"' in page
    assert owner.post("/attachments/retention/", {"days": "90"}).status_code == 302
    assert 'value="90"' in owner.get("/privacy/").content.decode()
    assert (
        business_client(world.business_a, world.agent_a).post("/attachments/retention/", {"days": "1"}).status_code
        == 403
    )
    assert (
        business_client(world.business_a, world.owner_b).post("/attachments/retention/", {"days": "1"}).status_code
        == 403
    )
    with tenant_context(world.business_a):
        assert retention_days() == 90
    owner.post("/attachments/retention/", {"days": "0"})
    with tenant_context(world.business_a):
        assert retention_days() == 90  # refused with a message, nothing changed
