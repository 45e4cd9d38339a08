from __future__ import annotations

import csv
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing import selectors, services, stripe_gateway
from billing.models import Category, PricingModel, UsageRecord
from billing.services import CATEGORIES
from tenancy.access import member_required

logger = logging.getLogger("parley.billing")

# Who starts a conversation of each category, for the public pricing page.
STARTED_BY = {
    Category.SERVICE: gettext_lazy("The customer (you reply within 24 hours)"),
    Category.UTILITY: gettext_lazy("Your business (e.g. delivery confirmation)"),
    Category.MARKETING: gettext_lazy("Your business (offers)"),
    Category.AUTHENTICATION: gettext_lazy("Your business (one-time codes)"),
}

# The same, under per-message pricing: what each template message is, and what is free.
STARTED_BY_PER_MESSAGE = {
    Category.SERVICE: gettext_lazy("Your replies within the customer's 24-hour window: free"),
    Category.UTILITY: gettext_lazy("Updates such as a delivery confirmation: free inside an open 24-hour window"),
    Category.MARKETING: gettext_lazy("Offers and news"),
    Category.AUTHENTICATION: gettext_lazy("One-time codes"),
}

# Green is reserved for verification; these four stay apart for colour-blind readers too.
CATEGORY_COLOURS = {
    "service": "#2f5d94",
    "utility": "#8a5cc2",
    "marketing": "#c2410c",
    "authentication": "#4b5563",
}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


def _day_chart(summary: selectors.UsageSummary) -> dict[str, Any]:
    """Stacked bars per day, as SVG geometry computed here so the page needs no JavaScript."""
    step, bar_width, height = 20.0, 14.0, 120.0
    peak = max((d.total for d in summary.days), default=0) or 1
    labels = dict(Category.choices)
    bars: list[Bar] = []
    for index, day in enumerate(summary.days):
        y = height
        for category in CATEGORIES:
            count = day.counts.get(category, 0)
            if not count:
                continue
            h = count / peak * height
            y -= h
            bars.append(
                Bar(
                    x=index * step + 3,
                    y=round(y, 2),
                    width=bar_width,
                    height=round(h, 2),
                    colour=CATEGORY_COLOURS[category],
                    title=ngettext(
                        "%(day)s: %(count)d %(category)s conversation",
                        "%(day)s: %(count)d %(category)s conversations",
                        count,
                    )
                    % {"day": date_format(day.day, "j M"), "count": count, "category": labels[category]},
                )
            )
    ticks = [
        (index * step + 10, day.day.day) for index, day in enumerate(summary.days) if day.day.day % 5 == 0 or index == 0
    ]
    return {"width": len(summary.days) * step, "height": height, "bars": bars, "peak": peak, "ticks": ticks}


def _return_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("billing"))


@require_GET
@member_required(manage=True)
def billing(request: HttpRequest) -> HttpResponse:
    try:
        start = selectors.period_parse(request.GET.get("period"))
    except ValueError as error:
        return render(request, "billing/bad_request.html", {"section": "billing", "reason": str(error)}, status=400)
    business: Any = request.tenant  # type: ignore[attr-defined]
    summary = selectors.usage_summary(business=business, start=start)
    model = selectors.pricing_model()
    next_start = selectors.period_end(start)
    legend = [(str(label), CATEGORY_COLOURS[value]) for value, label in Category.choices]
    return render(
        request,
        "billing/billing.html",
        {
            "section": "billing",
            "summary": summary,
            "state": selectors.payment_state(business=business),
            "invoices": selectors.invoices_for(business=business),
            "chart": _day_chart(summary),
            "legend": legend,
            "period": f"{start:%Y-%m}",
            "previous_period": f"{(start.replace(day=1) - timedelta(days=1)):%Y-%m}",
            # No "next month" into the future: there is nothing to show there yet.
            "next_period": f"{next_start:%Y-%m}" if next_start <= selectors.period_parse(None) else "",
            "free_tier": services.FREE_SERVICE_CONVERSATIONS_PER_MONTH,
            "checkout_result": request.GET.get("checkout", ""),
            "per_message": model == PricingModel.MESSAGE,
            "recent": selectors.recent_charges(business=business),
            # The pricing page lives on the public host.
            "pricing_url": f"{settings.PARLEY_PUBLIC_URL}/pricing/",
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


CSV_HEADER = [
    "record_id",
    "opened_at_utc",
    "window_ends_at_utc",
    "category",
    "country",
    "conversation_id",
    "customer_id",
    "unit_price_eur",
    "free",
    "voided",
    "amount_eur",
    "stripe_report",
]


def _csv_line(record: UsageRecord) -> list[Any]:
    return [
        record.pk,
        record.opened_at.isoformat(),
        record.window_ends_at.isoformat(),
        record.category,
        record.country,
        record.conversation_id,
        record.customer_id,
        record.unit_price,
        "yes" if record.free else "no",
        "yes" if record.voided_at else "no",
        record.amount,
        record.report_state,
    ]


@require_GET
@member_required(manage=True)
def usage_csv(request: HttpRequest) -> HttpResponse:
    try:
        start = selectors.period_parse(request.GET.get("period"))
    except ValueError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    business: Any = request.tenant  # type: ignore[attr-defined]
    end = selectors.period_end(start)
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(CSV_HEADER)
        for record in selectors.ledger_rows(business=business, start=start, end=end):
            yield writer.writerow(_csv_line(record))

    async def arows() -> AsyncIterator[str]:
        # Under ASGI a synchronous iterator would be read into memory whole; page through instead.
        yield writer.writerow(CSV_HEADER)
        after = None
        while page := await sync_to_async(selectors.ledger_page)(business=business, start=start, end=end, after=after):
            yield "".join(writer.writerow(_csv_line(record)) for record in page)
            after = (page[-1].opened_at, page[-1].pk)

    content = arows() if isinstance(request, ASGIRequest) else rows()
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="parley-usage-{business.slug}-{start:%Y-%m}.csv"'
    return response  # type: ignore[return-value]  # streamed: the ledger can be large


@require_POST
@member_required(manage=True)
def checkout(request: HttpRequest) -> HttpResponse:
    try:
        url = services.checkout_start(business=request.tenant, actor=request.user, return_url=_return_url(request))  # type: ignore[attr-defined]
    except services.BillingError as error:
        messages.error(request, str(error))
        return redirect("billing")
    return HttpResponseRedirect(url, status=303)


@require_POST
@member_required(manage=True)
def portal(request: HttpRequest) -> HttpResponse:
    try:
        url = services.portal_start(business=request.tenant, return_url=_return_url(request))  # type: ignore[attr-defined]
    except services.BillingError as error:
        messages.error(request, str(error))
        return redirect("billing")
    return HttpResponseRedirect(url, status=303)


def pricing(request: HttpRequest) -> HttpResponse:
    card, defaults, rows = selectors.public_rate_card()
    labels = dict(Category.choices)
    per_message = card.pricing_model == PricingModel.MESSAGE
    started_by = STARTED_BY_PER_MESSAGE if per_message else STARTED_BY
    return render(
        request,
        "billing/pricing.html",
        {
            "card": card,
            "per_message": per_message,
            "categories": [
                (labels[c], started_by[Category(c)], None if per_message and c == Category.SERVICE else price)
                for c, price in zip(CATEGORIES, defaults, strict=True)
            ],
            "rows": [
                (row.country, [None if per_message and c == Category.SERVICE else row.prices[c] for c in CATEGORIES])
                for row in rows
            ],
            "free_tier": services.FREE_SERVICE_CONVERSATIONS_PER_MONTH,
        },
    )


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        event = stripe_gateway.webhook_event_parse(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except stripe_gateway.WebhookInvalid as error:
        logger.warning("rejected Stripe webhook: %s", error)
        return JsonResponse({"error": str(error)}, status=400)
    outcome = services.stripe_event_receive(event=event)
    return JsonResponse({"received": True, "outcome": outcome})
