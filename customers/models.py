"""What a customer decides about a business, kept in the public schema so every path can check
it, whichever business's schema it runs in."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from tenancy.models import Business


class Block(models.Model):
    """A customer blocked a business: no business-to-customer message goes out, by any path."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="blocks")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="blocked_by")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="block_unique_pair")]

    def __str__(self) -> str:
        return f"{self.customer} blocked {self.business}"


class MarketingMute(models.Model):
    """A customer muted a business's marketing messages (service and utility still arrive)."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="marketing_mutes")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("marketing mute")
        verbose_name_plural = _("marketing mutes")
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="mute_unique_pair")]

    def __str__(self) -> str:
        return f"{self.customer} muted marketing from {self.business}"


class BusinessContact(models.Model):
    """A business has been in touch with a customer: what the customer's privacy page lists.

    Kept in the public schema (one row per pair, no message content) so /me/ needs no query in
    any business's schema. Messaging records it through customers.services.customer_contact_record.
    """

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="business_contacts")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    first_contact_at = models.DateTimeField(_("first contact"))
    last_contact_at = models.DateTimeField(_("last contact"))

    class Meta:
        verbose_name = _("business contact")
        verbose_name_plural = _("business contacts")
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="contact_unique_pair")]

    def __str__(self) -> str:
        return f"{self.business} ↔ {self.customer}"


class Report(models.Model):
    """A customer reported a business to platform staff."""

    class Reason(models.TextChoices):
        SPAM = "spam", _("Spam or unwanted messages")
        SCAM = "scam", _("Scam or fraud")
        IMPERSONATION = "impersonation", _("Pretends to be someone else")
        ABUSIVE = "abusive", _("Abusive or offensive")
        OTHER = "other", _("Something else")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        REVIEWED = "reviewed", _("Reviewed")

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="reports")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    details = models.TextField(_("details"), max_length=2000, blank=True)
    also_blocked = models.BooleanField(_("also blocked"), default=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(_("reported"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("report")
        verbose_name_plural = _("reports")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.business}: {self.get_reason_display()}"


class ReportedBusiness(Business):
    """Admin view of businesses with their report counts (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("reported business")
        verbose_name_plural = _("reports per business")
