"""Notifications data, in each business's own schema: templates, API keys, API sends and the
answers stored for idempotent retries. Staff review templates through `template_reviews`
(public schema), which mirrors each submitted revision."""

from __future__ import annotations

import re

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from tenancy.public_references import optional_user_reference

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]{0,39})\s*\}\}")
MAX_BUTTONS = 3


class Template(models.Model):
    """A reviewed message a business may send outside the 24-hour service window."""

    class Category(models.TextChoices):
        UTILITY = "utility", _("Utility")
        MARKETING = "marketing", _("Marketing")
        AUTHENTICATION = "authentication", _("Authentication")

    class Status(models.TextChoices):
        PENDING = "pending", _("In review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        PAUSED = "paused", _("Paused")

    name = models.CharField(_("name"), max_length=60)
    language = models.CharField(_("language"), max_length=8)
    category = models.CharField(_("category"), max_length=16, choices=Category.choices)
    header = models.CharField(_("header"), max_length=60, blank=True)
    body = models.TextField(_("body"), max_length=1024)
    footer = models.CharField(_("footer"), max_length=60, blank=True)
    buttons = ArrayField(models.CharField(max_length=25), size=MAX_BUTTONS, default=list, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    rejection_reason = models.CharField(_("reason"), max_length=500, blank=True)
    # Bumped by every content change; a staff decision applies only to the revision it reviewed.
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("template")
        verbose_name_plural = _("templates")
        ordering = ["name", "language"]
        constraints = [models.UniqueConstraint(fields=["name", "language"], name="template_unique_name_language")]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"

    @property
    def placeholders(self) -> list[str]:
        """Named placeholders in order of first appearance (header and body)."""
        seen: list[str] = []
        for match in PLACEHOLDER.finditer(f"{self.header}\n{self.body}"):
            if match.group(1) not in seen:
                seen.append(match.group(1))
        return seen


class ApiKey(models.Model):
    """A secret a business's systems send as `Authorization: Bearer <key>`. Only a hash is kept;
    the prefix is shown so people can tell keys apart."""

    class Scope(models.TextChoices):
        SEND = "send", _("Send messages")
        READ = "read", _("Read messages and events")

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=8, choices=Scope.choices), default=list)
    created_by = optional_user_reference()
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiRequest(models.Model):
    """Every authenticated API call: the audit trail of each key's use and the dashboard's log."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="requests")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=200)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=40, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("API request")
        verbose_name_plural = _("API requests")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status_code}"


class Notification(models.Model):
    """One business-initiated message asked for through the API: accepted first, then sent (a
    `Message` exists) or failed with a reason (nothing sent, nothing billed)."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", _("Accepted")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")

    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    to = models.CharField(_("to"), max_length=20)
    template = models.ForeignKey(Template, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    template_name = models.CharField(max_length=60, blank=True)
    category = models.CharField(max_length=16)
    parameters = models.JSONField(default=dict, blank=True)
    text = models.TextField(max_length=4096, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    failure_code = models.CharField(max_length=40, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    message = models.OneToOneField(
        "messaging.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="notification"
    )
    price = models.DecimalField(max_digits=8, decimal_places=4, default=0)
    currency = models.CharField(max_length=3, default="EUR")
    # How the price was charged: "conversation" (this message opened a billable conversation, or
    # joined one: price 0) or "message" (per-message pricing); "" when nothing was billed.
    charged_per = models.CharField(max_length=16, blank=True)
    batch_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.template_name or 'text'} → {self.to}"


class IdempotentAnswer(models.Model):
    """The answer given to a POST with an Idempotency-Key, replayed for 24 hours."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotent_unique_key")]

    def __str__(self) -> str:
        return self.key


class WebhookEndpoint(models.Model):
    """Where the business wants to hear about events, signed with its own secret."""

    class EventType(models.TextChoices):
        MESSAGE_RECEIVED = "message.received", _("Message received")
        MESSAGE_STATUS = "message.status", _("Message status")
        TEMPLATE_STATUS = "template.status", _("Template status")
        CONVERSATION_UPDATED = "conversation.updated", _("Conversation changed")

    url = models.URLField(_("URL"), max_length=500)
    secret = models.CharField(max_length=80)
    event_types = ArrayField(models.CharField(max_length=32, choices=EventType.choices), default=list)
    is_active = models.BooleanField(_("active"), default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # Deliveries that gave up in a row; enough of them disable the endpoint.
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint, with its attempts: the dashboard's delivery log."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Retrying")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Gave up")

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=32)
    body = models.TextField()  # the exact JSON that is signed and sent, the same on every attempt
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # An attempt in flight: claimed (committed) before the HTTP request, so no lock or transaction
    # spans the network; another attempt finds it claimed and leaves it. Cleared with the result: a
    # lease found run out (its worker died mid-request) means the endpoint may have the delivery,
    # and it is not sent again (webhooks._claim).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id}"


class WebhookCursor(models.Model):
    """How far the business's event stream has been turned into webhook deliveries."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return str(self.last_event_id)
