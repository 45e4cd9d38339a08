"""Collaboration in one business's inbox: labels, canned replies, macros, and the agents'
notification list (an @mention in an internal note). All in the business's own schema."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from tenancy.public_references import optional_user_reference


class Label(models.Model):
    class Colour(models.TextChoices):
        # No green: green is reserved for verification. Each colour is a CSS class
        # (`label-<colour>`): the Content-Security-Policy forbids style attributes.
        BLUE = "blue", _("Blue")
        PURPLE = "purple", _("Purple")
        PINK = "pink", _("Pink")
        RED = "red", _("Red")
        ORANGE = "orange", _("Orange")
        YELLOW = "yellow", _("Yellow")
        TEAL = "teal", _("Teal")
        GREY = "grey", _("Grey")

    name = models.CharField(_("name"), max_length=40, unique=True)
    colour = models.CharField(_("colour"), max_length=10, choices=Colour.choices, default=Colour.BLUE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("label")
        verbose_name_plural = _("labels")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConversationLabel(models.Model):
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    added_by = optional_user_reference()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("conversation label")
        verbose_name_plural = _("conversation labels")
        constraints = [models.UniqueConstraint(fields=["conversation", "label"], name="conversation_label_once")]
        # The label filter walks from the label to its conversations.
        indexes = [models.Index(fields=["label", "conversation"], name="conv_label_by_label")]

    def __str__(self) -> str:
        return f"{self.conversation_id}: {self.label_id}"


class CannedReply(models.Model):
    """A saved answer, expanded by typing `/shortcut` in the composer. Placeholders:
    {{name}}, {{first_name}} (the contact), {{agent}} (who sends it), {{business}}."""

    shortcut = models.SlugField(_("shortcut"), max_length=40, unique=True)
    title = models.CharField(_("title"), max_length=100)
    body = models.TextField(_("text"), max_length=4096)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")
        ordering = ["shortcut"]

    def __str__(self) -> str:
        return f"/{self.shortcut}"


class Macro(models.Model):
    """One click, several actions, in this order: the canned reply, labels, assignment, status.
    `actions` = {"labels": [label ids], "canned_reply": id | null, "assign": "me" | user id |
    "nobody" | null (leave), "status": "open" | "pending" | "resolved" | null (leave)}."""

    name = models.CharField(_("name"), max_length=60, unique=True)
    actions = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("macro")
        verbose_name_plural = _("macros")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentNotification(models.Model):
    """Something one agent should look at: today an @mention in an internal note."""

    class Kind(models.TextChoices):
        MENTION = "mention", _("Mention")

    # No database constraint into public (a trigger pair per business): messaging.models.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, db_constraint=False, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MENTION)
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey("messaging.Message", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    actor = optional_user_reference()
    excerpt = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("agent notification")
        verbose_name_plural = _("agent notifications")
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["user", "message"], name="notification_once_per_message")]
        indexes = [models.Index(fields=["user", "-id"], name="notification_user_recent")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.user_id}"
