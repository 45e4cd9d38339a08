from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.http import Http404

from accounts.models import Customer
from customers.models import Block, BusinessContact, MarketingMute
from tenancy.models import PUBLIC_SCHEMA, Business


def customer_has_blocked(*, customer_id: int, business_id: int) -> bool:
    return Block.objects.filter(customer_id=customer_id, business_id=business_id).exists()


def customers_who_blocked(*, business_id: int, customer_ids: Iterable[int]) -> set[int]:
    """Which of these customers blocked the business (one query for a whole group of sends)."""
    ids = list(customer_ids)
    if not ids:
        return set()
    return set(Block.objects.filter(business_id=business_id, customer_id__in=ids).values_list("customer_id", flat=True))


def customer_has_muted_marketing(*, customer_id: int, business_id: int) -> bool:
    return MarketingMute.objects.filter(customer_id=customer_id, business_id=business_id).exists()


@dataclass(frozen=True)
class BusinessRow:
    business: Business
    blocked: bool
    muted: bool


def customer_businesses(*, customer: Customer) -> list[BusinessRow]:
    """Businesses that were in touch with this customer, plus any they blocked or muted (so an
    unblock is always reachable), newest contact first. Only this customer's own rows."""
    blocked = set(Block.objects.filter(customer=customer).values_list("business_id", flat=True))
    muted = set(MarketingMute.objects.filter(customer=customer).values_list("business_id", flat=True))
    contacted = list(
        BusinessContact.objects.filter(customer=customer)
        .order_by("-last_contact_at")
        .values_list("business_id", flat=True)
    )
    ids = contacted + [i for i in sorted(blocked | muted) if i not in contacted]
    businesses = Business.objects.in_bulk(ids)
    return [
        BusinessRow(businesses[i], i in blocked, i in muted)
        for i in ids
        if i in businesses and businesses[i].schema_name != PUBLIC_SCHEMA
    ]


def customer_business_row(*, customer: Customer, business_id: int) -> BusinessRow:
    """One business from this customer's privacy page; any other id is a 404."""
    for row in customer_businesses(customer=customer):
        if row.business.pk == business_id:
            return row
    raise Http404


def business_for_customer(*, business_id: int) -> Business:
    """A business a customer may act on (block, mute, report): any real business. Unknown ids
    and the platform itself are the same 404."""
    business = Business.objects.exclude(schema_name=PUBLIC_SCHEMA).filter(pk=business_id).first()
    if business is None:
        raise Http404
    return business
