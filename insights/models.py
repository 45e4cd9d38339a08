"""Insights of one business's inbox, in its own schema.

A `Cycle` is one round of service: it starts with a customer message when the conversation has
no open cycle, records the first agent reply (first response) and ends when the conversation is
resolved. Reports, SLA warnings and the CSAT survey read cycles instead of scanning messages.
Cycles are kept by database triggers (migration 0002) so every writer of messages and statuses
— the send core's multi-row INSERTs, the API, jobs, bulk loads — keeps them right without
knowing about them.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from tenancy.public_references import optional_user_reference


class Cycle(models.Model):
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_responder = optional_user_reference()
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The assignee when it was resolved: whose resolution it counts as.
    resolver = optional_user_reference()

    class Meta:
        verbose_name = _("service cycle")
        verbose_name_plural = _("service cycles")
        constraints = [
            # At most one open cycle per conversation (the triggers rely on it).
            models.UniqueConstraint(
                fields=["conversation"], condition=Q(resolved_at__isnull=True), name="cycle_one_open"
            )
        ]
        indexes = [
            # Covering: each of the Reports page's passes is an index-only range scan
            # (insights.selectors.report), never a visit to the table's rows.
            models.Index(
                fields=["started_at"],
                include=["first_response_at", "resolved_at", "conversation"],
                name="cycle_started_cover",
            ),
            models.Index(fields=["resolved_at"], include=["started_at", "resolver"], name="cycle_resolved_cover"),
            models.Index(
                fields=["first_response_at"],
                include=["started_at", "first_responder"],
                name="cycle_first_response_cover",
            ),
            models.Index(fields=["conversation", "-started_at"], name="cycle_conv_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id} @ {self.started_at:%Y-%m-%d %H:%M}"


class InsightSettings(models.Model):
    """One row per business: SLA targets and whether customers get the CSAT survey."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    first_response_minutes = models.PositiveIntegerField(
        _("first response target (minutes)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 14)],
        help_text=_("Leave empty for no target."),
    )
    resolution_hours = models.PositiveIntegerField(
        _("resolution target (hours)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 90)],
        help_text=_("Leave empty for no target."),
    )
    csat_enabled = models.BooleanField(_("ask customers to rate the conversation after it is resolved"), default=False)

    class Meta:
        verbose_name = _("insight settings")
        verbose_name_plural = _("insight settings")

    def __str__(self) -> str:
        return "settings"


class CsatResponse(models.Model):
    """A customer's 1–5 rating of one resolved cycle (at most one each)."""

    cycle = models.OneToOneField(Cycle, on_delete=models.CASCADE, related_name="csat")
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    score = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    comment = models.TextField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("satisfaction rating")
        verbose_name_plural = _("satisfaction ratings")
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=5), name="csat_score_1_to_5"),
        ]
        indexes = [models.Index(fields=["created_at"], name="csat_created")]

    def __str__(self) -> str:
        return f"{self.score}/5"
