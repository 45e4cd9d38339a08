"""Reads of attachments, scoped by who asks: a business's members see its files; a customer sees
the files of their own conversation (never internal notes') and their own uploads. Missing and
not-yours give the same answer."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from attachments.errors import AttachmentError, AttachmentErrorCode
from attachments.models import DEFAULT_RETENTION_DAYS, Attachment, RetentionPolicy


def _not_found() -> AttachmentError:
    return AttachmentError(AttachmentErrorCode.NOT_FOUND, _("This file does not exist."))


def viewer_key(*, user_id: int | None = None, customer_id: int | None = None) -> str:
    return f"user:{user_id}" if user_id is not None else f"customer:{customer_id}"


def attachment_for_viewer(*, attachment_id: Any, viewer: str) -> Attachment:
    """`viewer`: "user:<id>" for a member of this business (the caller checked the seat) or
    "customer:<id>"."""
    try:
        pk = int(attachment_id)
    except (TypeError, ValueError):
        raise _not_found() from None
    attachment = (
        Attachment.objects.select_related("message__conversation__contact").filter(pk=pk).first()
        if 0 < pk < 2**63
        else None
    )
    if attachment is None:
        raise _not_found()
    if viewer.startswith("user:"):
        return attachment
    if attachment.uploader_key == viewer:
        return attachment
    message = attachment.message
    if (
        message is not None
        and message.direction != "internal"
        and message.deleted_at is None
        and f"customer:{message.conversation.contact.customer_id}" == viewer
    ):
        return attachment
    raise _not_found()


def attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """What clients show of a file; the URLs open it through the access check (attachments.views)."""
    removed = attachment.removed_at is not None
    return {
        "id": attachment.pk,
        "kind": attachment.kind,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "width": attachment.width,
        "height": attachment.height,
        "url": None if removed else f"/attachments/{attachment.pk}/",
        "thumbnail_url": (
            f"/attachments/{attachment.pk}/thumbnail/" if attachment.thumbnail_path and not removed else None
        ),
        "removed": attachment.removed_reason if removed else "",
    }


def retention_days() -> int:
    """How long this business keeps attachments' files (days; a year unless changed)."""
    policy = RetentionPolicy.objects.filter(pk=1).first()
    return policy.attachment_days if policy else DEFAULT_RETENTION_DAYS
