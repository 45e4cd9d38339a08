"""What a customer decides about a business, kept in the public schema so every path can check
it, whichever business's schema it runs in."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
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


class ConsentRecord(models.Model):
    """One opt-in or opt-out of a customer for one business and one message category.

    Append-only: the latest row per (customer, business, category) is the customer's current
    choice, and the rows before it are the business's proof of what was agreed and when.
    """

    class Category(models.TextChoices):
        MARKETING = "marketing", _("Marketing")
        UTILITY = "utility", _("Utility")

    class Source(models.TextChoices):
        CHAT = "chat", _("Chat page")
        API = "api", _("API")
        STOP = "stop", _("STOP reply")
        ME = "me", _("Privacy page")

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="consents")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    category = models.CharField(_("category"), max_length=16, choices=Category.choices)
    granted = models.BooleanField(_("opted in"))
    source = models.CharField(_("source"), max_length=8, choices=Source.choices)
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent record")
        verbose_name_plural = _("consent ledger")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "business", "category", "-id"], name="consent_latest")]

    def __str__(self) -> str:
        state = "in" if self.granted else "out"
        return f"{self.customer_id} {self.category} opt-{state} {self.business_id}"


def _empty_list() -> list[str]:
    return []


class PrivacyRequest(models.Model):
    """An export or an erasure, carried out by background jobs, one business schema at a time.

    `schemas` are the business schemas the request visits; `done_schemas` grows as each one is
    committed, so a worker that dies midway leaves a record of what is finished and a re-run
    continues with the rest. Holds no personal data of its own beyond the customer link, which
    an account deletion clears.
    """

    class Kind(models.TextChoices):
        EXPORT = "export", _("Data export")
        ERASE_BUSINESS = "erase_business", _("Erasure at one business")
        DELETE_ACCOUNT = "delete_account", _("Account deletion")

    class Requester(models.TextChoices):
        CUSTOMER = "customer", _("The customer")
        BUSINESS = "business", _("The business")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("In progress")
        DONE = "done", _("Done")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    requested_by = models.CharField(_("requested by"), max_length=8, choices=Requester.choices)
    customer = models.ForeignKey(
        "accounts.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="privacy_requests"
    )
    # Only for requests that concern one business (its export of a contact, an erasure there).
    business = models.ForeignKey(
        "tenancy.Business", null=True, blank=True, on_delete=models.CASCADE, related_name="privacy_requests"
    )
    schemas = ArrayField(models.CharField(max_length=63), default=_empty_list, blank=True)
    done_schemas = ArrayField(models.CharField(max_length=63), default=_empty_list, blank=True)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("requested"), auto_now_add=True, db_index=True)
    progressed_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The number as it was when the request was made (an account deletion replaces it on the
    # customer at once): the steps find API notifications and webhook payloads by it. Cleared
    # when an erasure is done.
    phone_number = models.CharField(max_length=20, blank=True)
    # The export's ZIP, relative to the private export folder (never under MEDIA_ROOT).
    file_name = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = _("privacy request")
        verbose_name_plural = _("privacy requests")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id}"

    @property
    def progress_percent(self) -> int:
        total = len(self.schemas) + 1  # the public part is the last step
        done = len(self.done_schemas) + (1 if self.status == self.Status.DONE else 0)
        return int(100 * done / total)


class BusinessConversations(Business):
    """Admin entry for staff to read a business's conversations, every look recorded in the
    audit log and shown to the business's owners (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("business conversations (logged)")
        verbose_name_plural = _("business conversations (every view is logged)")
