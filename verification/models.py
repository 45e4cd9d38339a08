"""Verification data, all in the public schema: codes, the SMS outbox, badge applications and
the notices that tell a business what staff decided."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class PhoneChallenge(models.Model):
    """One one-time code sent to one number for one purpose. The code itself is never stored:
    only an HMAC of it (keyed with settings.OTP_HASH_KEY, salted per row, bound to purpose,
    subject and number), so a copy of this table does not let anyone sign in."""

    class Purpose(models.TextChoices):
        BUSINESS_PHONE = "business_phone", _("Business phone number")
        CUSTOMER_SIGN_IN = "customer_sign_in", _("Customer sign-in")

    purpose = models.CharField(_("purpose"), max_length=32, choices=Purpose.choices)
    # Who the code is for within the purpose: "business:<id>" or "" for customer sign-in, so a
    # code sent for one business cannot verify another.
    subject = models.CharField(_("subject"), max_length=64, blank=True)
    phone_number = models.CharField(_("phone number"), max_length=20, db_index=True)
    salt = models.CharField(max_length=32)
    code_hash = models.CharField(max_length=64)
    # What the per-IP limit counts (verification.otp.rate_limit_address): IPv6 as its /64 network.
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(_("sent"), db_index=True)
    expires_at = models.DateTimeField(_("expires"))
    checks = models.PositiveSmallIntegerField(_("checks"), default=0)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)
    # A newer code for the same number and purpose replaces this one.
    superseded_at = models.DateTimeField(_("superseded"), null=True, blank=True)

    class Meta:
        verbose_name = _("phone challenge")
        verbose_name_plural = _("phone challenges")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["purpose", "subject", "phone_number", "-created_at"], name="challenge_lookup")]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} · {self.phone_number} · {self.created_at:%Y-%m-%d %H:%M}"


class SmsMessage(models.Model):
    """The development outbox: what the `outbox` SMS backend "sent". Read it at /dev/outbox/."""

    to = models.CharField(_("to"), max_length=20, db_index=True)
    body = models.TextField(_("text"))
    created_at = models.DateTimeField(_("sent"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("SMS in the outbox")
        verbose_name_plural = _("SMS outbox")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.to}: {self.body[:40]}"


class SmsDispatch(models.Model):
    """One text the job queue was asked to send, by its reference (e.g. `otp:<challenge id>`):
    recorded before the provider is called, so a job retried after its worker died mid-call
    never sends the same text twice (verification.sms.sms_dispatch_begin)."""

    class Status(models.TextChoices):
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        RETRY = "retry", _("Not sent yet (provider busy)")
        FAILED = "failed", _("Refused by the provider")
        UNKNOWN = "unknown", _("Outcome unknown (not sent again)")

    reference = models.CharField(_("reference"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.SENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    provider_id = models.CharField(_("provider id"), max_length=64, blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("SMS dispatch")
        verbose_name_plural = _("SMS dispatches")

    def __str__(self) -> str:
        return f"{self.reference}: {self.status}"


class BadgeApplication(models.Model):
    """One application for the green badge. A business has many over time (a rejected one stays
    as history); `Business.badge_status` mirrors the newest."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SUBMITTED = "submitted", _("In review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        REVOKED = "revoked", _("Revoked")

    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="badge_applications")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    website = models.URLField(_("official website"), max_length=300, blank=True)
    press_links = models.TextField(_("press links"), blank=True, help_text=_("One address per line."))
    registration_number = models.CharField(_("company registration number"), max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("submitted by"),
    )
    # Set when an approved badge went back to review (display name or number changed).
    returned_at = models.DateTimeField(_("returned to review"), null=True, blank=True)
    returned_reason = models.CharField(_("why it returned to review"), max_length=300, blank=True)
    reviewed_at = models.DateTimeField(_("decided"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("reviewer"),
    )
    decision_reason = models.TextField(_("reason"), blank=True)

    class Meta:
        verbose_name = _("badge application")
        verbose_name_plural = _("badge applications")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.business} · {self.get_status_display()}"

    @property
    def press_link_list(self) -> list[str]:
        return [line.strip() for line in self.press_links.splitlines() if line.strip()]


def notice_text(msgid: str, params: dict[str, Any]) -> str:
    """`msgid` in the reader's language with `params` put in; a param that is itself
    {"msgid": ..., "params": ...} is translated the same way (a reason inside a sentence)."""
    text = gettext(msgid) if msgid else ""
    if not params:
        return text
    values = {
        key: notice_text(value.get("msgid", ""), value.get("params") or {}) if isinstance(value, dict) else value
        for key, value in params.items()
    }
    try:
        return text % values
    except (KeyError, TypeError, ValueError):  # a translation that lost a placeholder: the source
        return msgid % values


class BusinessNotice(models.Model):
    """A message to a business's managers shown in its dashboard until dismissed.

    `title` and `body` hold the English source texts (msgids) with `params` to put in, and are
    translated when shown: the staff member who decides reads English, the business may read
    German. `note` is a reviewer's own words, shown after the body as written. Notices written
    before `params` existed hold finished text: shown as stored (translated if it is a msgid)."""

    class Level(models.TextChoices):
        INFO = "info", _("Information")
        SUCCESS = "success", _("Good news")
        WARNING = "warning", _("Needs attention")

    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="notices")
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("text"), blank=True)
    params = models.JSONField(_("text parameters"), default=dict, blank=True)
    note = models.TextField(_("reviewer's note"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    dismissed_at = models.DateTimeField(_("dismissed"), null=True, blank=True)

    class Meta:
        verbose_name = _("business notice")
        verbose_name_plural = _("business notices")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    @property
    def shown_title(self) -> str:
        return notice_text(self.title, self.params)

    @property
    def shown_body(self) -> str:
        return " ".join(part for part in (notice_text(self.body, self.params), self.note.strip()) if part)
