"""Prices: what a message to a customer in a country costs under the active rate card. Reads
only; used by services (to charge) and selectors (to quote)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

import phonenumbers
from django.db import connection
from django.db.models import DecimalField
from django.db.models.expressions import RawSQL

from billing.models import CATEGORIES, LAUNCH_PRICES, Rate, RateCard


@lru_cache(maxsize=65536)  # pure; a send group parses every recipient's number otherwise
def country_for_phone(phone: str) -> str:
    """ISO country of an E.164 number, or "" when it cannot be told (the default rate applies)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "001" else ""


def active_price_sql(category: str, country: str) -> RawSQL:
    """The active card's price as SQL: the country's rate, else the card's default; the launch price
    if no card is active. Given as a field value, the ledger INSERT reads the price in the same round
    trip (Django returns the computed value into the instance). Raw SQL because it is compiled on
    every send, where the ORM's nested subqueries cost more than the round trip they save."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown conversation category {category!r}")
    sql = f"""
        COALESCE(
            (SELECT COALESCE(
                (SELECT r.price FROM {Rate._meta.db_table} r
                  WHERE r.rate_card_id = c.id AND r.category = %s AND r.country = %s),
                c.default_{category})
             FROM {RateCard._meta.db_table} c WHERE c.is_active),
            %s)
    """
    # Safe: the category is checked against CATEGORIES above, every value is a parameter.
    return RawSQL(sql, [category, country, LAUNCH_PRICES[category]], output_field=DecimalField())  # noqa: S611


def active_prices_sql() -> str:
    """The active card's prices of many (category, country) keys at once, as `active_price_sql`
    prices one: an SQL array of them in the keys' order, from three array parameters (the
    categories, the countries, each key's launch price: `active_prices_params`). Its text is the
    same whatever the keys, so a statement holding it can be prepared (a send group's billing
    reads go out on prepared cursors behind its conversations' lock: messaging.sending)."""
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


def price_for(*, category: str, country: str) -> Decimal:
    """What a conversation of this category with a customer in this country costs now."""
    price = active_price_sql(category, country)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {price.sql}", price.params)
        return Decimal(cursor.fetchone()[0])
