"""The only module that talks to Stripe.

Without STRIPE_SECRET_KEY billing runs ledger-only: every call here raises StripeNotConfigured,
which the report job treats as "try again later", so reports wait in the queue until a key is set.
STRIPE_API_BASE points the SDK at another server (tests use a local fake).

Errors are translated into three kinds the callers act on: temporary (retry), permanent (stop
and tell staff) and not configured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from billing.models import CATEGORIES

WEBHOOK_TOLERANCE_SECONDS = 300
# Price of one meter unit in cents: 0.01 cents = €0.0001 (billing.models.PRICE_UNIT).
UNIT_AMOUNT_DECIMAL_CENTS = Decimal("0.01")


class StripeNotConfigured(Exception):
    """No secret key: ledger-only mode."""


class StripeTemporaryError(Exception):
    """Network trouble, a timeout, a 5xx or a 429: the same call may succeed later."""


class StripePermanentError(Exception):
    """Stripe refused the request itself; repeating it will not help."""


class WebhookInvalid(Exception):
    """Bad signature, stale timestamp or an unreadable body."""


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def meter_event_name(category: str) -> str:
    return f"parley_{category}_conversations"


def price_lookup_key(category: str) -> str:
    return f"parley_{category}_conversation_v1"


def product_id(category: str) -> str:
    return f"parley_{category}_conversations"


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    base_addresses: Any = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        base_addresses=base_addresses,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured("STRIPE_SECRET_KEY is not set")
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        float(settings.STRIPE_TIMEOUT_SECONDS),
        int(settings.STRIPE_NETWORK_RETRIES),
    )


def _is_duplicate_identifier(error: stripe.InvalidRequestError) -> bool:
    message = (error.user_message or str(error) or "").lower()
    return error.code == "duplicate_meter_event" or "already exists with identifier" in message


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        raise StripeTemporaryError(str(error)) from error
    except stripe.StripeError as error:
        status = error.http_status or 0
        if status >= 500 or status in {409, 429} or status == 0:
            raise StripeTemporaryError(f"{status}: {error}") from error
        raise StripePermanentError(f"{status}: {error}") from error


# --- customers -------------------------------------------------------------------------------


def customer_create(*, business_id: int, name: str, email: str, slug: str, idempotency_key: str) -> str:
    client = _client()
    with _translated_errors():
        params: Any = {"name": name, "metadata": {"parley_business_id": str(business_id), "slug": slug}}
        if email:
            params["email"] = email
        customer = client.v1.customers.create(
            params,
            # Stripe replays the first answer for 24 hours, so a retried create never makes a second.
            {"idempotency_key": idempotency_key},
        )
    return str(customer.id)


# --- usage -----------------------------------------------------------------------------------


def meter_event_report(*, identifier: str, category: str, customer_id: str, value: int, timestamp: datetime) -> bool:
    """Report one usage record. True when Stripe accepted it now, False when it already had it."""
    client = _client()
    try:
        with _translated_errors():
            client.v1.billing.meter_events.create(
                {
                    "event_name": meter_event_name(category),
                    "identifier": identifier,
                    "timestamp": int(timestamp.timestamp()),
                    "payload": {"stripe_customer_id": customer_id, "value": str(value)},
                }
            )
    except StripePermanentError as error:
        cause = error.__cause__
        # A retry after a lost answer finds the event already there: that is success.
        if isinstance(cause, stripe.InvalidRequestError) and _is_duplicate_identifier(cause):
            return False
        raise
    return True


def meter_event_cancel(*, identifier: str, category: str) -> None:
    client = _client()
    with _translated_errors():
        client.v1.billing.meter_event_adjustments.create(
            {"event_name": meter_event_name(category), "type": "cancel", "cancel": {"identifier": identifier}}
        )


@dataclass(frozen=True)
class Meter:
    id: str
    event_name: str


def meters() -> dict[str, Meter]:
    """Active meters by category."""
    client = _client()
    found: dict[str, Meter] = {}
    wanted = {meter_event_name(c): c for c in CATEGORIES}
    with _translated_errors():
        for meter in client.v1.billing.meters.list({"status": "active", "limit": 100}).auto_paging_iter():
            category = wanted.get(meter.event_name)
            if category:
                found[category] = Meter(id=meter.id, event_name=meter.event_name)
    return found


def meter_totals(
    *, customer_id: str, start: datetime, end: datetime, known_meters: dict[str, Meter] | None = None
) -> dict[str, int]:
    """Sum of meter values per category for one customer between start and end. Pass the meters
    when asking for many customers, so they are listed once."""
    client = _client()
    totals: dict[str, int] = {}
    for category, meter in (known_meters if known_meters is not None else meters()).items():
        total = 0
        with _translated_errors():
            summaries = client.v1.billing.meters.event_summaries.list(
                meter.id,
                {"customer": customer_id, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())},
            )
            for summary in summaries.auto_paging_iter():
                total += round(float(summary.aggregated_value))
        totals[category] = total
    return totals


# --- catalogue: meters, products, prices -------------------------------------------------------

CATEGORY_TITLES = {
    "service": "Service conversations",
    "utility": "Utility conversations",
    "marketing": "Marketing conversations",
    "authentication": "Authentication conversations",
}


def catalog_sync() -> list[str]:
    """Create what is missing: a meter, a product and a metered price per category. Idempotent:
    meters are found by event name, products by fixed id, prices by lookup key."""
    client = _client()
    lines: list[str] = []
    existing = meters()
    with _translated_errors():
        for category in CATEGORIES:
            meter = existing.get(category)
            if meter is None:
                created = client.v1.billing.meters.create(
                    {
                        "display_name": f"Parley {CATEGORY_TITLES[category].lower()}",
                        "event_name": meter_event_name(category),
                        "default_aggregation": {"formula": "sum"},
                        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                        "value_settings": {"event_payload_key": "value"},
                    }
                )
                meter = Meter(id=created.id, event_name=created.event_name)
                lines.append(f"created meter {meter.event_name} ({meter.id})")
            else:
                lines.append(f"meter {meter.event_name} exists ({meter.id})")

            try:
                client.v1.products.retrieve(product_id(category))
                lines.append(f"product {product_id(category)} exists")
            except stripe.InvalidRequestError as error:
                if error.http_status != 404:
                    raise
                client.v1.products.create(
                    {
                        "id": product_id(category),
                        "name": CATEGORY_TITLES[category],
                        "unit_label": "EUR 0.0001",
                        "metadata": {"parley_category": category},
                    }
                )
                lines.append(f"created product {product_id(category)}")

            key = price_lookup_key(category)
            prices = client.v1.prices.list({"lookup_keys": [key], "active": True, "limit": 1})
            if prices.data:
                lines.append(f"price {key} exists ({prices.data[0].id})")
                continue
            price = client.v1.prices.create(
                {
                    "product": product_id(category),
                    "currency": "eur",
                    "unit_amount_decimal": UNIT_AMOUNT_DECIMAL_CENTS,
                    "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
                    "lookup_key": key,
                    "transfer_lookup_key": True,
                    "billing_scheme": "per_unit",
                    "metadata": {"parley_category": category},
                },
                {"idempotency_key": f"parley-price-{key}-{meter.id}"},
            )
            lines.append(f"created price {key} ({price.id})")
    return lines


def price_ids() -> dict[str, str]:
    client = _client()
    keys = [price_lookup_key(c) for c in CATEGORIES]
    with _translated_errors():
        prices = client.v1.prices.list({"lookup_keys": keys, "active": True, "limit": 10})
    by_key = {p.lookup_key: p.id for p in prices.data}
    return {c: by_key[price_lookup_key(c)] for c in CATEGORIES if price_lookup_key(c) in by_key}


# --- Checkout and the customer portal ------------------------------------------------------------


def checkout_session_create(*, customer_id: str, business_id: int, success_url: str, cancel_url: str) -> str:
    prices = price_ids()
    if len(prices) != len(CATEGORIES):
        raise StripePermanentError("prices are missing in Stripe: run `manage.py stripe_sync`")
    client = _client()
    with _translated_errors():
        session = client.v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": str(business_id),
                # Metered prices take no quantity: Stripe bills what the meters say.
                "line_items": [{"price": prices[c]} for c in CATEGORIES],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": {"parley_business_id": str(business_id)},
                "subscription_data": {"metadata": {"parley_business_id": str(business_id)}},
            }
        )
    return str(session.url)


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    client = _client()
    with _translated_errors():
        session = client.v1.billing_portal.sessions.create({"customer": customer_id, "return_url": return_url})
    return str(session.url)


# --- webhooks ------------------------------------------------------------------------------------


def webhook_event_parse(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Verify the signature (and its age) and return the event as plain data."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookInvalid("STRIPE_WEBHOOK_SECRET is not set")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
        data = json.loads(payload)
    except stripe.SignatureVerificationError as error:
        raise WebhookInvalid(str(error)) from error
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
        raise WebhookInvalid("the body is not a Stripe event") from error
    if not _is_event(data) or _holds_nul(data):
        raise WebhookInvalid("the body is not a Stripe event")
    return data


# Stripe's timestamps are Unix seconds; anything outside years 1970..9999 cannot be stored.
_LATEST_TIMESTAMP = 253_402_300_799


def _holds_nul(data: Any) -> bool:
    """PostgreSQL stores neither NUL in text nor \\u0000 in jsonb: such an event would fail at the
    INSERT (a 500) instead of being refused. Walked without recursion; the parser bounds depth."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _is_event(data: Any) -> bool:
    """The shape the handlers rely on. A signed body without it is refused here (400) rather than
    stored and then retried forever by the event job."""
    if not isinstance(data, dict):
        return False
    event_id, kind, created, body = data.get("id"), data.get("type"), data.get("created"), data.get("data")
    return (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 255
        and isinstance(kind, str)
        and 0 < len(kind) <= 100
        and (
            created is None
            or (isinstance(created, int) and not isinstance(created, bool) and 0 <= created <= _LATEST_TIMESTAMP)
        )
        and isinstance(body, dict)
        and isinstance(body.get("object"), dict)
    )
