"""Ledger versus Stripe for one month: what we recorded as chargeable against what the meters hold."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum

from billing import stripe_gateway
from billing.models import PRICE_UNIT, BillingAccount, UsageRecord
from billing.selectors import period_end
from billing.services import CATEGORIES


@dataclass(frozen=True)
class Line:
    text: str
    difference: bool


@dataclass
class Reconciliation:
    lines: list[Line] = field(default_factory=list)
    differences: int = 0

    def add(self, text: str, *, difference: bool = False) -> None:
        self.lines.append(Line(text, difference))
        self.differences += int(difference)


def reconcile_period(*, start: datetime) -> Reconciliation:
    end = period_end(start)
    report = Reconciliation()
    chargeable = UsageRecord.objects.filter(opened_at__gte=start, opened_at__lt=end, free=False, voided_at__isnull=True)
    by_business: dict[int, dict[str, Any]] = defaultdict(dict)
    for totals in chargeable.values("business_id", "category").annotate(
        total=Sum("unit_price"),
        n=Count("pk"),
        waiting=Count("pk", filter=Q(report_state="pending")),
        refused=Count("pk", filter=Q(report_state="failed")),
    ):
        by_business[totals["business_id"]][totals["category"]] = totals
    accounts = {a.business_id: a for a in BillingAccount.objects.select_related("business")}
    business_ids = set(by_business) | {bid for bid, a in accounts.items() if a.stripe_customer_id}
    meters: dict[str, stripe_gateway.Meter] | None = None  # listed once, and only if Stripe is asked at all
    for business_id in sorted(business_ids):
        account = accounts.get(business_id)
        rows = by_business.get(business_id, {})
        slug = account.business.slug if account else str(business_id)
        if account is None or not account.stripe_customer_id:
            n = sum(r["n"] for r in rows.values())
            report.add(f"{slug}: {n} chargeable conversation(s) but no Stripe customer yet", difference=n > 0)
            continue
        if meters is None:
            meters = stripe_gateway.meters()
        stripe_totals = stripe_gateway.meter_totals(
            customer_id=account.stripe_customer_id, start=start, end=end, known_meters=meters
        )
        for category in CATEGORIES:
            row = rows.get(category)
            ledger = int((Decimal(row["total"]) / PRICE_UNIT).to_integral_value()) if row else 0
            in_stripe = stripe_totals.get(category, 0)
            if not ledger and not in_stripe:
                continue
            note = ""
            if row and (row["waiting"] or row["refused"]):
                note = f" ({row['waiting']} waiting to be reported, {row['refused']} refused by Stripe)"
            diff = ledger - in_stripe
            report.add(
                f"{slug} {category}: ledger {ledger} ({row['n'] if row else 0} conversations), "
                f"Stripe {in_stripe}, difference {diff:+d}{note}",
                difference=diff != 0,
            )
    return report
