"""Prices: what a message to a customer in a country costs under the active rate card. Reads
only; used by services (to charge) and selectors (to quote)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

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


def price_for(*, category: str, country: str) -> Decimal:
    """What a conversation of this category with a customer in this country costs now."""
    price = active_price_sql(category, country)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {price.sql}", price.params)
        return Decimal(cursor.fetchone()[0])
