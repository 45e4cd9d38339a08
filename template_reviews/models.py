"""Public schema: one review per submitted template revision (staff see every business's queue
in one admin list), and the sending limits staff set per business."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

DEFAULT_MESSAGES_PER_SECOND = 80


class TemplateReview(models.Model):
    """A snapshot of one template revision as submitted, and the staff decision on it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("In review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        SUPERSEDED = "superseded", _("Replaced by a newer revision")

    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="template_reviews")
    # The template's id in the business's schema (no foreign key across schemas into a tenant).
    template_id = models.BigIntegerField()
    revision = models.PositiveIntegerField()
    name = models.CharField(_("name"), max_length=60)
    language = models.CharField(_("language"), max_length=8)
    category = models.CharField(_("category"), max_length=16)
    header = models.CharField(_("header"), max_length=60, blank=True)
    body = models.TextField(_("body"))
    footer = models.CharField(_("footer"), max_length=60, blank=True)
    buttons = ArrayField(models.CharField(max_length=25), default=list, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    submitted_at = models.DateTimeField(_("submitted"), auto_now_add=True, db_index=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    # The business saw the decision on its dashboard and dismissed it.
    notice_dismissed = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("template review")
        verbose_name_plural = _("template reviews")
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["business", "template_id", "revision"], name="template_review_unique_revision"
            )
        ]

    def __str__(self) -> str:
        return f"{self.business}: {self.name} ({self.language}) r{self.revision}"


class SendingLimits(models.Model):
    """Per-business limits staff may raise; a business without a row gets the defaults."""

    business = models.OneToOneField("tenancy.Business", on_delete=models.CASCADE, related_name="sending_limits")
    messages_per_second = models.PositiveIntegerField(_("messages per second"), default=DEFAULT_MESSAGES_PER_SECOND)
    tier_override = models.PositiveIntegerField(
        _("unique customers per 24 hours"),
        null=True,
        blank=True,
        help_text=_("Leave empty for the tier the business earned (250 / 2,000 / 10,000)."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("sending limits")
        verbose_name_plural = _("sending limits")

    def __str__(self) -> str:
        return str(self.business)
