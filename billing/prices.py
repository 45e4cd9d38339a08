"""Prices: what a message to a customer in a country costs under the active rate card. Reads
only; used by services (to charge) and selectors (to quote)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import phonenumbers

from billing.models import CATEGORIES, LAUNCH_PRICES, Rate, RateCard
from config.sql import prepared_cursor


@functools.lru_cache(maxsize=65536)  # pure; a send group parses every recipient's number otherwise
def country_for_phone(phone: str) -> str:
    """ISO country of an E.164 number, or "" when it cannot be told (the default rate applies)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "001" else ""


@functools.cache
def active_prices_sql() -> str:
    """The active card's prices of (category, country) keys as SQL: for each key the country's
    rate, else the card's default, else the launch price if no card is active; an SQL array in
    the keys' order, from three array parameters (the categories, the countries, each key's
    launch price: `active_prices_params`). Its text is the same whatever the keys, so a statement
    holding it can be prepared (a send group's billing reads go out on prepared cursors behind
    its conversations' lock: messaging.sending)."""
    defaults = " ".join(f"WHEN '{category}' THEN c.default_{category}" for category in CATEGORIES)
    # Safe: the categories are the model's own choices; every value is a parameter.
    return (
        "ARRAY(SELECT COALESCE("
        f"(SELECT COALESCE((SELECT r.price FROM {Rate._meta.db_table} r "
        "WHERE r.rate_card_id = c.id AND r.category = k.category AND r.country = k.country), "
        f"CASE k.category {defaults} END) FROM {RateCard._meta.db_table} c WHERE c.is_active), k.launch) "
        "FROM unnest(%s::text[], %s::text[], %s::numeric[]) WITH ORDINALITY AS k(category, country, launch, n) "
        "ORDER BY k.n)"
    )


def active_prices_params(keys: list[tuple[str, str]]) -> list[list[Any]]:
    """`active_prices_sql`'s parameters for these (category, country) keys, in their order."""
    if any(category not in CATEGORIES for category, _country in keys):
        raise ValueError(f"unknown conversation category in {keys!r}")
    return [[category for category, _c in keys], [country for _c, country in keys], [LAUNCH_PRICES[c] for c, _ in keys]]


def active_prices_read(keys: list[tuple[str, str]], prices: Sequence[Any]) -> dict[tuple[str, str], Decimal]:
    """`active_prices_sql`'s array, read back: each key's price."""
    return {key: Decimal(price) for key, price in zip(keys, prices, strict=True)}


def prices_for(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
    """What a conversation of each (category, country) key costs now, in one statement."""
    ordered = list(keys)
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT {active_prices_sql()}", active_prices_params(ordered))
        (prices,) = cursor.fetchone()
    return active_prices_read(ordered, prices)


def price_for(*, category: str, country: str) -> Decimal:
    """What a conversation of this category with a customer in this country costs now."""
    return prices_for([(category, country)])[(category, country)]
