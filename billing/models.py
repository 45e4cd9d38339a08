"""Billing data, all in the public schema: staff read every business's usage in one place, and the
Stripe reporter never has to enter a tenant schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import Func, Q
from django.utils.translation import gettext_lazy as _

# One Stripe meter unit is a ten-thousandth of a euro: meter values are prices, so one meter per
# category can carry every country's rate and invoices still show one line per category.
PRICE_UNIT = Decimal("0.0001")
FREE_SERVICE_CONVERSATIONS_PER_MONTH = 1000


class Category(models.TextChoices):
    SERVICE = "service", _("Service")
    UTILITY = "utility", _("Utility")
    MARKETING = "marketing", _("Marketing")
    AUTHENTICATION = "authentication", _("Authentication")


# The categories in display order: the order of pages, CSV, Checkout line items and Stripe objects.
CATEGORIES: tuple[str, ...] = tuple(Category.values)


# What a platform without an active rate card bills: the published launch prices. A data
# migration (0004) makes the first active card from them at setup.
LAUNCH_CARD_NAME = "Parley rate card 2026"
LAUNCH_PRICES: dict[str, Decimal] = {
    Category.SERVICE: Decimal("0.0300"),
    Category.UTILITY: Decimal("0.0400"),
    Category.MARKETING: Decimal("0.0700"),
    Category.AUTHENTICATION: Decimal("0.0350"),
}


def month_start(moment: datetime) -> datetime:
    """Free tier and billing periods are calendar months in UTC."""
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class PricingModel(models.TextChoices):
    """How a rate card charges (staff choose per card). Per conversation: WhatsApp's 2023 model,
    the first business message in 24 hours opens a billable conversation. Per message: its July
    2025 model, each delivered template message is billed by category and country; service
    replies are free, and so are utility templates inside an open customer service window."""

    CONVERSATION = "conversation", _("Per conversation (24-hour window)")
    MESSAGE = "message", _("Per delivered template message")


class RateCard(models.Model):
    """A price list. Exactly one is active; editing it changes prices for new conversations only
    (each usage record keeps the unit price it was opened with)."""

    name = models.CharField(_("name"), max_length=100)
    pricing_model = models.CharField(
        _("pricing model"),
        max_length=16,
        choices=PricingModel.choices,
        default=PricingModel.CONVERSATION,
        help_text=_("Per conversation: one charge per 24-hour window. Per message: one charge per template message."),
    )
    currency = models.CharField(_("currency"), max_length=3, default="EUR", editable=False)
    is_active = models.BooleanField(_("active"), default=False)
    default_service = models.DecimalField(_("default service price"), max_digits=8, decimal_places=4)
    default_utility = models.DecimalField(_("default utility price"), max_digits=8, decimal_places=4)
    default_marketing = models.DecimalField(_("default marketing price"), max_digits=8, decimal_places=4)
    default_authentication = models.DecimalField(_("default authentication price"), max_digits=8, decimal_places=4)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("rate card")
        verbose_name_plural = _("rate cards")
        ordering = ["-is_active", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"],
                condition=Q(is_active=True),
                name="billing_one_active_card",
                violation_error_message=_(
                    "Another rate card is active. Save this one inactive, then use the action "
                    "“Make the selected rate card active”."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def default_for(self, category: str) -> Decimal:
        return Decimal(getattr(self, f"default_{category}"))

    @classmethod
    def launch_fields(cls) -> dict[str, Any]:
        """A card at the launch prices, as field values."""
        return {"name": LAUNCH_CARD_NAME, **{f"default_{category}": price for category, price in LAUNCH_PRICES.items()}}


class Rate(models.Model):
    """A country-specific price on a rate card; countries without a row pay the card's default."""

    rate_card = models.ForeignKey(RateCard, on_delete=models.CASCADE, related_name="rates")
    category = models.CharField(_("category"), max_length=16, choices=Category.choices)
    country = models.CharField(_("country"), max_length=2, help_text=_("ISO 3166 alpha-2, e.g. DE"))
    price = models.DecimalField(_("price (EUR)"), max_digits=8, decimal_places=4)

    class Meta:
        verbose_name = _("rate")
        verbose_name_plural = _("rates")
        ordering = ["country", "category"]
        constraints = [
            models.UniqueConstraint(fields=["rate_card", "category", "country"], name="billing_rate_unique"),
            models.CheckConstraint(condition=Q(price__gte=0), name="billing_rate_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.country} {self.category} €{self.price}"


class TsTzRange(Func):
    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class UsageRecord(models.Model):
    """One charge: a billable conversation (per-conversation pricing) or one template message
    (per-message pricing). Its id is the Stripe meter event identifier."""

    class Unit(models.TextChoices):
        CONVERSATION = "conversation", _("Conversation")
        MESSAGE = "message", _("Message")

    class ReportState(models.TextChoices):
        PENDING = "pending", _("Queued for Stripe")
        REPORTED = "reported", _("Reported to Stripe")
        NOT_BILLED = "not_billed", _("Nothing to report (free or void)")
        FAILED = "failed", _("Stripe refused it")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    business = models.ForeignKey("tenancy.Business", on_delete=models.PROTECT, related_name="usage_records")
    # The conversation lives in the business's schema and the customer may later be erased: the
    # ledger keeps plain ids so it outlives both.
    conversation_id = models.BigIntegerField(_("conversation"))
    customer_id = models.BigIntegerField(_("customer"))
    category = models.CharField(_("category"), max_length=16, choices=Category.choices)
    unit = models.CharField(_("charged per"), max_length=16, choices=Unit.choices, default=Unit.CONVERSATION)
    # Per-message rows: the message it charges (in the business's schema; a plain id, as above).
    message_id = models.BigIntegerField(_("message"), null=True, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True)
    opened_at = models.DateTimeField(_("opened"))
    window_ends_at = models.DateTimeField(_("window ends"))
    unit_price = models.DecimalField(_("unit price (EUR)"), max_digits=8, decimal_places=4)
    currency = models.CharField(max_length=3, default="EUR")
    free = models.BooleanField(_("free tier"), default=False)
    voided_at = models.DateTimeField(_("voided"), null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)
    report_state = models.CharField(
        _("Stripe report"), max_length=16, choices=ReportState.choices, default=ReportState.PENDING
    )
    report_attempts = models.PositiveIntegerField(default=0)
    reported_at = models.DateTimeField(null=True, blank=True)
    report_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage ledger")
        ordering = ["-opened_at"]
        indexes = [
            models.Index(fields=["business", "opened_at"], name="billing_usage_business_time"),
            models.Index(fields=["business", "customer_id", "window_ends_at"], name="billing_usage_window"),
            models.Index(
                fields=["report_state", "created_at"],
                name="billing_usage_unreported",
                condition=Q(report_state="pending"),
            ),
        ]
        constraints = [
            # The database itself refuses two live billable conversations of one business with one
            # customer at the same time, whatever code path or race tries it. (Per-message rows are
            # one per message, so they may overlap anything.)
            ExclusionConstraint(
                name="billing_usage_no_overlapping_conversations",
                expressions=[
                    ("business", RangeOperators.EQUAL),
                    ("customer_id", RangeOperators.EQUAL),
                    (TsTzRange("opened_at", "window_ends_at"), RangeOperators.OVERLAPS),
                ],
                condition=Q(voided_at__isnull=True, unit="conversation"),
            ),
            models.CheckConstraint(condition=Q(window_ends_at__gt=models.F("opened_at")), name="billing_window_order"),
        ]

    def __str__(self) -> str:
        return f"{self.opened_at:%Y-%m-%d %H:%M} {self.category} {self.country or '--'} {self.id}"

    @property
    def chargeable(self) -> bool:
        return not self.free and self.voided_at is None

    @property
    def amount(self) -> Decimal:
        return self.unit_price if self.chargeable else Decimal("0")

    @property
    def meter_value(self) -> int:
        """The price in meter units (see PRICE_UNIT)."""
        return int((self.unit_price / PRICE_UNIT).to_integral_value())


class UsageCounter(models.Model):
    """Live count of a business's service conversations in one calendar month (UTC), so the
    free-tier decision is one row update instead of a count over the ledger."""

    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    category = models.CharField(max_length=16, choices=Category.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business", "month", "category"], name="billing_counter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.business_id} {self.month:%Y-%m} {self.category}: {self.count}"


class BillingAccount(models.Model):
    """A business's Stripe side: customer, subscription and payment state."""

    # Stripe subscription statuses under which the business is billed (and must not subscribe again).
    SUBSCRIBED_STATUSES = frozenset({"active", "trialing", "past_due"})
    # Stripe's words, as the owner reads them on the billing page.
    SUBSCRIPTION_STATUS_LABELS = {
        "active": _("Active"),
        "trialing": _("Trial"),
        "past_due": _("Past due"),
        "unpaid": _("Unpaid"),
        "paused": _("Paused"),
        "incomplete": _("Waiting for the first payment"),
        "incomplete_expired": _("Expired"),
        "canceled": _("Cancelled"),
    }

    business = models.OneToOneField("tenancy.Business", on_delete=models.CASCADE, related_name="billing_account")
    stripe_customer_id = models.CharField(_("Stripe customer"), max_length=64, blank=True, db_index=True)
    subscription_id = models.CharField(_("subscription"), max_length=64, blank=True)
    subscription_status = models.CharField(_("subscription status"), max_length=32, blank=True)
    subscription_event_at = models.DateTimeField(null=True, blank=True, editable=False)
    current_period_end = models.DateTimeField(null=True, blank=True)
    payment_failed_at = models.DateTimeField(_("payment failed"), null=True, blank=True)
    grace_period_ends_at = models.DateTimeField(_("grace period ends"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("billing account")
        verbose_name_plural = _("billing accounts")

    def __str__(self) -> str:
        return f"{self.business} ({self.stripe_customer_id or 'no Stripe customer'})"

    @property
    def subscribed(self) -> bool:
        return self.subscription_status in self.SUBSCRIBED_STATUSES

    @property
    def subscription_status_label(self) -> str:
        return str(self.SUBSCRIPTION_STATUS_LABELS.get(self.subscription_status, self.subscription_status))


class Invoice(models.Model):
    """Our copy of a Stripe invoice, kept current by webhooks, so the dashboard never waits on Stripe."""

    STATUS_LABELS = {
        "draft": _("Draft"),
        "open": _("Open"),
        "paid": _("Paid"),
        "uncollectible": _("Uncollectible"),
        "void": _("Void"),
    }

    id = models.CharField(primary_key=True, max_length=64)
    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="invoices")
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32)
    currency = models.CharField(max_length=3, default="eur")
    amount_due = models.BigIntegerField(default=0, help_text=_("cents"))
    amount_paid = models.BigIntegerField(default=0, help_text=_("cents"))
    hosted_invoice_url = models.URLField(max_length=500, blank=True)
    # Set by a failed payment; the grace period ends when no invoice with it is still owed.
    payment_failed = models.BooleanField(default=False)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.number or self.id

    @property
    def status_label(self) -> str:
        return str(self.STATUS_LABELS.get(self.status, self.status))

    @property
    def amount_due_major(self) -> Decimal:
        return Decimal(self.amount_due) / 100


class StripeEvent(models.Model):
    """Every webhook event, stored before it is processed, processed once."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
