"""Attachments' use cases: upload (idempotent by upload key), removing a file (a deleted message,
an expired one), the retention setting and the daily expiry. Each runs in the business's schema."""

from __future__ import annotations

import hashlib
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from attachments import content
from attachments.errors import AttachmentError, AttachmentErrorCode
from attachments.models import Attachment, RetentionPolicy
from attachments.selectors import retention_days
from attachments.storage import new_path, remove, store
from messaging.send_limits import send_take
from tenancy.models import Business

logger = logging.getLogger("parley.attachments")

MAX_UPLOAD_KEY = 64
MAX_RETENTION_DAYS = 3650
# Uploads per uploader (a customer, an agent, an API key) in one business, across processes: a
# burst of 10, then one every 6 s. Each upload is stored and images are re-encoded, so a script
# looping on the upload URL would otherwise fill the business's storage and hold a server thread.
UPLOAD_BURST = 10
UPLOAD_RATE = 10 / 60


def clean_upload_key(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > MAX_UPLOAD_KEY or not value.isprintable():
        raise AttachmentError(AttachmentErrorCode.INVALID, _("upload_key must be a string of at most 64 characters."))
    return value


def _existing(uploader_key: str, upload_key: str) -> Attachment | None:
    if not upload_key:
        return None
    return Attachment.objects.filter(uploader_key=uploader_key, upload_key=upload_key).first()


def _take_upload(business: Business, uploader_key: str) -> None:
    """One upload from the uploader's bucket, or a refusal saying when to try again. A retry of an
    upload already stored (same upload key) takes nothing: it is answered before this."""
    verdict = send_take(
        schema_name=business.schema_name,
        author_key=uploader_key,
        rate=UPLOAD_RATE,
        burst=UPLOAD_BURST,
        action="upload",
    )
    if not verdict.allowed:
        raise AttachmentError(
            AttachmentErrorCode.RATE_LIMITED,
            _("You are uploading too fast. Please wait %(seconds)s seconds.")
            % {"seconds": max(1, math.ceil(verdict.retry_after))},
            retry_after=verdict.retry_after,
        )


def attachment_upload(
    *,
    business: Business,
    uploader_key: str,
    file: UploadedFile | None,
    upload_key: Any = "",
    conversation_id: int | None = None,
) -> tuple[Attachment, bool]:
    """Check, clean and store one file. Returns (attachment, created): a retry with the same
    upload key (the first try's answer was lost) gets the first attachment, not a second copy."""
    upload_key = clean_upload_key(upload_key)
    existing = _existing(uploader_key, upload_key)
    if existing is not None:
        return existing, False
    if file is None:
        raise AttachmentError(AttachmentErrorCode.EMPTY, _("Choose a file to send."))
    _take_upload(business, uploader_key)
    biggest = max(content.size_limit(kind) for kind in Attachment.Kind.values)
    if file.size is not None and file.size > biggest:
        # Refused before reading: the largest allowed file of any kind is smaller.
        raise AttachmentError(
            AttachmentErrorCode.TOO_LARGE,
            _("This file is too large: files can be at most %(mb)s MB.") % {"mb": biggest // (1024 * 1024)},
        )
    data = file.read(biggest + 1)
    sniffed = content.sniff(data)
    content.check_size(sniffed.kind, len(data))
    thumbnail = b""
    width = height = None
    if sniffed.kind == Attachment.Kind.IMAGE:
        image = content.clean_image(data, sniffed.content_type)
        data, thumbnail, width, height = image.data, image.thumbnail, image.width, image.height
    path = store(new_path(schema_name=business.schema_name, extension=sniffed.extension), data)
    thumbnail_path = (
        store(new_path(schema_name=business.schema_name, extension="webp", suffix="-thumb"), thumbnail)
        if thumbnail
        else ""
    )
    try:
        with transaction.atomic():
            attachment = Attachment.objects.create(
                uploader_key=uploader_key,
                upload_key=upload_key,
                conversation_id=conversation_id,
                kind=sniffed.kind,
                content_type=sniffed.content_type,
                name=content.clean_name(file.name or "", sniffed.extension),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                path=path,
                thumbnail_path=thumbnail_path,
                width=width,
                height=height,
            )
    except IntegrityError:
        # The same upload key raced in from another request: keep theirs, drop our copy.
        remove(path, thumbnail_path)
        found = _existing(uploader_key, upload_key)
        if found is None:
            raise
        return found, False
    return attachment, True


def attachment_remove_file(*, attachment: Attachment, reason: str) -> None:
    """Take the file out of storage for good; the row stays, so the message can say why."""
    if attachment.removed_at is not None:
        return
    attachment.removed_at = timezone.now()
    attachment.removed_reason = reason
    attachment.save(update_fields=["removed_at", "removed_reason"])
    paths = (attachment.path, attachment.thumbnail_path)
    # After commit: a rolled-back removal must still find its file.
    transaction.on_commit(lambda: remove(*paths))


def retention_set(*, business: Business, user: User, days: Any) -> RetentionPolicy:
    """Owners and admins choose how long attachments are kept (1 day to 10 years)."""
    allowed = Membership.objects.filter(
        business_id=business.pk, user_id=user.pk, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()
    if not allowed:
        raise AttachmentError(AttachmentErrorCode.NOT_FOUND, _("Only owners and admins can change this."))
    try:
        value = int(days)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= MAX_RETENTION_DAYS:
        raise AttachmentError(
            AttachmentErrorCode.INVALID,
            _("Choose between 1 and %(max)d days.") % {"max": MAX_RETENTION_DAYS},
        )
    policy, _created = RetentionPolicy.objects.update_or_create(pk=1, defaults={"attachment_days": value})
    return policy


def attachments_expire(*, now: datetime | None = None, batch: int = 500) -> int:
    """Remove the files older than the business's retention (the rows stay, shown as "file
    expired"). Uploads never sent are removed after a day."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=retention_days())
    removed = 0
    stale = Attachment.objects.filter(removed_at__isnull=True).filter(
        Q(created_at__lt=cutoff) | Q(message__isnull=True, created_at__lt=now - timedelta(days=1))
    )
    while True:
        rows = list(stale.order_by("id")[:batch])
        if not rows:
            return removed
        for attachment in rows:
            with transaction.atomic():
                attachment_remove_file(attachment=attachment, reason="expired")
            removed += 1
