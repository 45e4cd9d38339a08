"""Billing reads: a business's usage, cost and invoices; the public rate card."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import stripe_gateway
from billing.models import (
    CATEGORIES,
    BillingAccount,
    Category,
    Invoice,
    PricingModel,
    Rate,
    RateCard,
    UsageRecord,
    month_start,
)
from billing.prices import country_for_phone, price_for
from tenancy.models import Business


def period_parse(value: str | None) -> datetime:
    """'YYYY-MM' → the first instant of that month in UTC; raises ValueError on bad input."""
    if not value:
        return month_start(timezone.now())
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError as error:
        raise ValueError(_("Use the form YYYY-MM for the period, for example 2026-03.")) from error
    if not 2000 <= parsed.year <= 2100:
        raise ValueError(_("Use the form YYYY-MM for the period, for example 2026-03."))
    return parsed.replace(tzinfo=UTC)


def period_end(start: datetime) -> datetime:
    days = calendar.monthrange(start.year, start.month)[1]
    return start + timedelta(days=days)


@dataclass
class CategoryUsage:
    category: str
    label: str
    conversations: int = 0
    free: int = 0
    cost: Decimal = Decimal("0")

    @property
    def charged(self) -> int:
        return self.conversations - self.free


@dataclass
class DayUsage:
    day: date
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def counts_in_order(self) -> list[int]:
        """One count per category, in CATEGORIES order (the columns of the daily table)."""
        return [self.counts.get(category, 0) for category in CATEGORIES]


@dataclass
class UsageSummary:
    start: datetime
    end: datetime
    categories: list[CategoryUsage]
    days: list[DayUsage]
    pending_reports: int
    failed_reports: int

    @property
    def conversations(self) -> int:
        return sum(c.conversations for c in self.categories)

    @property
    def free(self) -> int:
        return sum(c.free for c in self.categories)

    @property
    def charged(self) -> int:
        return self.conversations - self.free

    @property
    def cost(self) -> Decimal:
        return sum((c.cost for c in self.categories), Decimal("0"))


def usage_summary(*, business: Business, start: datetime) -> UsageSummary:
    """This period's conversations by category and by day; cost with the free tier applied (the
    free flag is decided when a conversation opens, so the sum is what Stripe will bill)."""
    end = period_end(start)
    records = UsageRecord.objects.filter(
        business_id=business.pk, opened_at__gte=start, opened_at__lt=end, voided_at__isnull=True
    )
    by_category = {c.value: CategoryUsage(c.value, str(c.label)) for c in Category}
    pending = failed = 0
    for row in records.values("category").annotate(
        n=Count("pk"),
        free_n=Count("pk", filter=Q(free=True)),
        cost=Sum("unit_price", filter=Q(free=False)),
        pending=Count("pk", filter=Q(report_state=UsageRecord.ReportState.PENDING)),
        failed=Count("pk", filter=Q(report_state=UsageRecord.ReportState.FAILED)),
    ):
        usage = by_category[row["category"]]
        usage.conversations, usage.free, usage.cost = row["n"], row["free_n"], row["cost"] or Decimal("0")
        pending, failed = pending + row["pending"], failed + row["failed"]

    days = {
        start.date() + timedelta(days=i): DayUsage(start.date() + timedelta(days=i)) for i in range((end - start).days)
    }
    daily = (
        records.annotate(day=TruncDate("opened_at", tzinfo=UTC)).values_list("day", "category").annotate(n=Count("pk"))
    )
    for day, category, n in daily:
        if day in days:
            days[day].counts[category] = n

    return UsageSummary(
        start=start,
        end=end,
        categories=[by_category[c] for c in CATEGORIES],
        days=list(days.values()),
        pending_reports=pending,
        failed_reports=failed,
    )


@dataclass
class PaymentState:
    account: BillingAccount | None
    ledger_only: bool
    subscribed: bool
    in_grace_period: bool
    blocked: bool

    @property
    def grace_period_ends_at(self) -> datetime | None:
        return self.account.grace_period_ends_at if self.account else None


def payment_state(*, business: Business) -> PaymentState:
    account = BillingAccount.objects.filter(business_id=business.pk).first()
    now = timezone.now()
    ends = account.grace_period_ends_at if account else None
    return PaymentState(
        account=account,
        ledger_only=not stripe_gateway.is_configured(),
        subscribed=bool(account and account.subscribed),
        in_grace_period=bool(ends and now < ends),
        blocked=bool(ends and now >= ends),
    )


def recent_charges(*, business: Business, limit: int = 10) -> list[UsageRecord]:
    """The business's latest ledger rows (conversations opened, template messages charged), so an
    owner sees what the last sends cost without downloading the ledger."""
    return list(UsageRecord.objects.filter(business_id=business.pk).order_by("-opened_at", "-pk")[:limit])


def pricing_model() -> str:
    """How the active rate card charges: per conversation or per template message."""
    model = RateCard.objects.filter(is_active=True).values_list("pricing_model", flat=True).first()
    return model or PricingModel.CONVERSATION


@dataclass(frozen=True)
class PriceQuote:
    """What sending one business message now would cost (shown before an agent sends)."""

    amount: Decimal
    per: str  # "conversation" or "message"
    opens: bool  # under per-conversation pricing: this message would open a billable conversation


def price_quote(
    *, business: Business, customer_id: int, customer_phone: str, category: str, service_window_open: bool
) -> PriceQuote:
    """The price `billing.services.charges_for_messages` would charge for this message now,
    under the active card's model: per conversation, nothing if a billable conversation with the
    customer is open, else the category's price for their country; per message, the price unless
    it is free (service replies, utility templates inside an open service window)."""
    model = pricing_model()
    if model == PricingModel.MESSAGE:
        if category == Category.SERVICE or (category == Category.UTILITY and service_window_open):
            return PriceQuote(Decimal("0"), model, opens=False)
        return PriceQuote(price_for(category=category, country=country_for_phone(customer_phone)), model, opens=False)
    now = timezone.now()
    open_now = UsageRecord.objects.filter(
        business_id=business.pk,
        customer_id=customer_id,
        unit=UsageRecord.Unit.CONVERSATION,
        voided_at__isnull=True,
        opened_at__lte=now,
        window_ends_at__gt=now,
    ).exists()
    if open_now:
        return PriceQuote(Decimal("0"), model, opens=False)
    return PriceQuote(price_for(category=category, country=country_for_phone(customer_phone)), model, opens=True)


def invoices_for(*, business: Business, limit: int = 24) -> list[Invoice]:
    return list(Invoice.objects.filter(account__business_id=business.pk).order_by("-created")[:limit])


def ledger_page(
    *, business: Business, start: datetime, end: datetime, after: tuple[datetime, Any] | None = None, size: int = 2000
) -> list[UsageRecord]:
    """One page of a month's ledger in (opened_at, id) order; pass the last row's key for the next."""
    records = UsageRecord.objects.filter(business_id=business.pk, opened_at__gte=start, opened_at__lt=end)
    if after is not None:
        records = records.filter(Q(opened_at__gt=after[0]) | Q(opened_at=after[0], pk__gt=after[1]))
    return list(records.order_by("opened_at", "pk")[:size])


def ledger_rows(*, business: Business, start: datetime, end: datetime) -> Iterator[UsageRecord]:
    after = None
    while page := ledger_page(business=business, start=start, end=end, after=after):
        yield from page
        after = (page[-1].opened_at, page[-1].pk)


@dataclass
class RateRow:
    country: str
    prices: dict[str, Decimal]


def public_rate_card() -> tuple[RateCard, list[Decimal], list[RateRow]]:
    """The active card's defaults (in category order) and one row per country it names. With no
    active card (staff retired it) the launch prices apply, as they do to sends: shown from an
    unsaved card, since a page view writes nothing."""
    card = RateCard.objects.filter(is_active=True).first() or RateCard(is_active=True, **RateCard.launch_fields())
    defaults = [card.default_for(c) for c in CATEGORIES]
    rows: dict[str, RateRow] = {}
    for rate in Rate.objects.filter(rate_card=card).order_by("country") if card.pk else []:
        row = rows.setdefault(rate.country, RateRow(rate.country, {}))
        row.prices[rate.category] = rate.price
    for row in rows.values():
        for category, default in zip(CATEGORIES, defaults, strict=True):
            row.prices.setdefault(category, default)
    return card, defaults, list(rows.values())
