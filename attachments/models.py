"""Files exchanged in conversations, in each business's own schema.

The bytes live in the `attachments` storage (a private folder by default, an S3 bucket when
configured: see attachments.storage); rows keep what clients need to show them without opening
the file. A file is private: it is served only through a short-lived signed URL
(attachments.signing) to the conversation's customer and the business's members.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

DEFAULT_RETENTION_DAYS = 365


class Attachment(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        DOCUMENT = "document", _("Document")
        AUDIO = "audio", _("Audio")

    # "customer:<id>", "user:<id>" or "api:<key id>": who uploaded it, and whose upload keys it uses.
    uploader_key = models.CharField(max_length=64)
    # The client's idempotency key: a retried upload with the same key returns the first one.
    upload_key = models.CharField(max_length=64, blank=True)
    # Set for agents' uploads (the conversation they upload into) and once the message is sent.
    conversation = models.ForeignKey(
        "messaging.Conversation", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message = models.ForeignKey(
        "messaging.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="attachments"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=300)
    thumbnail_path = models.CharField(max_length=300, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The file left storage: past the business's retention, or its message was deleted.
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_reason = models.CharField(max_length=10, blank=True)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["uploader_key", "upload_key"], condition=~Q(upload_key=""), name="attachment_unique_upload_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class RetentionPolicy(models.Model):
    """One row per business: how long attachments' files are kept (the daily job removes older
    ones and leaves a "file expired" placeholder)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    attachment_days = models.PositiveIntegerField(_("keep attachments for (days)"), default=DEFAULT_RETENTION_DAYS)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("retention policy")

    def __str__(self) -> str:
        return f"{self.attachment_days} days"
