from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404
from psycopg import sql

from accounts.models import Customer
from customers.models import Block, BusinessContact, ConsentRecord, MarketingMute, PrivacyRequest
from directory.models import CustomerThread
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


# --- consent ----------------------------------------------------------------------------------


def consent_latest(*, customer_id: int, business_id: int, category: str) -> ConsentRecord | None:
    return (
        ConsentRecord.objects.filter(customer_id=customer_id, business_id=business_id, category=category)
        .order_by("-id")
        .first()
    )


def customers_opted_out(*, business_id: int, customer_ids: Iterable[int], category: str) -> set[int]:
    """Which of these customers this business may not send a message of `category` to: the one
    consent rule, asked once for a whole batch of sends.

    Marketing: not if the customer muted the business or their latest marketing choice in the
    consent ledger is an opt-out. Utility: not after a utility opt-out. Other categories
    (service replies, authentication codes) are not subject to consent.
    """
    ids = set(customer_ids)
    if not ids or category not in (ConsentRecord.Category.MARKETING, ConsentRecord.Category.UTILITY):
        return set()
    # Raw, the ids as one array: asked for every send group (a delivery job's hundred customers),
    # where compiling `customer_id__in` with a parameter per id cost more than the query.
    consent = ConsentRecord._meta.db_table
    query = (
        f"SELECT DISTINCT ON (customer_id) customer_id, granted FROM {consent} "
        "WHERE business_id = %s AND category = %s AND customer_id = ANY(%s::bigint[]) ORDER BY customer_id, id DESC"
    )
    params: list[Any] = [business_id, category, sorted(ids)]
    if category == ConsentRecord.Category.MARKETING:
        query = (
            f"SELECT customer_id, false FROM {MarketingMute._meta.db_table} "
            "WHERE business_id = %s AND customer_id = ANY(%s::bigint[]) "
            f"UNION ALL (SELECT * FROM ({query}) AS latest)"
        )
        params = [business_id, sorted(ids), *params]
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return {customer_id for customer_id, granted in cursor.fetchall() if not granted}


def consent_allows_send(*, customer_id: int, business_id: int, category: str) -> bool:
    """May this business send a message of `category` to this customer? (See customers_opted_out.)"""
    return customer_id not in customers_opted_out(
        business_id=business_id, customer_ids=[customer_id], category=category
    )


def consent_ledger_for_business(*, business_id: int) -> QuerySet[ConsentRecord]:
    """Every consent record one business holds, oldest first: its proof of consent."""
    return ConsentRecord.objects.filter(business_id=business_id).select_related("customer").order_by("created_at", "id")


# --- the privacy centre -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacyRow:
    """What one business holds about the signed-in customer, from the public index only."""

    business: Business
    since: datetime | None
    last_contact: datetime | None
    messages: int
    blocked: bool
    muted: bool
    marketing: ConsentRecord | None
    utility: ConsentRecord | None


def message_counts(*, customer_id: int, schema_names: list[str]) -> dict[str, int]:
    """How many messages each business schema holds between it and this customer (internal
    notes excluded): counts only, one query over all the schemas, no text leaves them."""
    if not schema_names:
        return {}
    part = sql.SQL(
        "SELECT {name}, count(m.id) FROM {schema}.messaging_message m "
        "JOIN {schema}.messaging_conversation c ON c.id = m.conversation_id "
        "JOIN {schema}.messaging_contact k ON k.id = c.contact_id "
        "WHERE k.customer_id = %s AND m.direction <> 'internal'"
    )
    query = sql.SQL(" UNION ALL ").join(
        part.format(name=sql.Literal(name), schema=sql.Identifier(name)) for name in schema_names
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [customer_id] * len(schema_names))
        return {name: int(count) for name, count in cursor.fetchall()}


def customer_privacy_rows(*, customer: Customer) -> list[PrivacyRow]:
    """Every business that holds data about this customer: those that were in touch (the public
    index) plus any the customer blocked, muted or gave consent to. No message text is read:
    only message counts, one query across the schemas (message_counts)."""
    contacts = {c.business_id: c for c in BusinessContact.objects.filter(customer=customer)}
    threads = {t.business_id: t for t in CustomerThread.objects.filter(customer=customer)}
    blocked = set(Block.objects.filter(customer=customer).values_list("business_id", flat=True))
    muted = set(MarketingMute.objects.filter(customer=customer).values_list("business_id", flat=True))
    latest: dict[tuple[int, str], ConsentRecord] = {}
    for record in ConsentRecord.objects.filter(customer=customer).order_by("id"):
        latest[(record.business_id, record.category)] = record
    ids = set(contacts) | set(threads) | blocked | muted | {business_id for business_id, _ in latest}
    businesses = Business.objects.exclude(schema_name=PUBLIC_SCHEMA).in_bulk(ids)
    counts = message_counts(customer_id=customer.pk, schema_names=[b.schema_name for b in businesses.values()])
    rows = []
    for business_id, business in businesses.items():
        contact = contacts.get(business_id)
        thread = threads.get(business_id)
        rows.append(
            PrivacyRow(
                business=business,
                since=contact.first_contact_at if contact else None,
                last_contact=contact.last_contact_at if contact else (thread.last_activity_at if thread else None),
                messages=counts.get(business.schema_name, 0),
                blocked=business_id in blocked,
                muted=business_id in muted,
                marketing=latest.get((business_id, ConsentRecord.Category.MARKETING)),
                utility=latest.get((business_id, ConsentRecord.Category.UTILITY)),
            )
        )
    rows.sort(key=lambda row: (row.last_contact is None, -(row.last_contact.timestamp() if row.last_contact else 0)))
    return rows


def privacy_requests_for_customer(*, customer: Customer) -> QuerySet[PrivacyRequest]:
    return PrivacyRequest.objects.filter(customer=customer, requested_by=PrivacyRequest.Requester.CUSTOMER)


def privacy_request_for_customer(*, customer: Customer, request_id: str) -> PrivacyRequest:
    """One of this customer's own requests; any other id (or not an id at all) is a 404."""
    try:
        return PrivacyRequest.objects.get(
            pk=request_id, customer=customer, requested_by=PrivacyRequest.Requester.CUSTOMER
        )
    except (PrivacyRequest.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None


def privacy_requests_for_business(*, business: Business) -> QuerySet[PrivacyRequest]:
    """The exports this business asked for (its /privacy/ page), newest first."""
    return PrivacyRequest.objects.filter(business=business, requested_by=PrivacyRequest.Requester.BUSINESS)


def privacy_request_for_business(*, business: Business, request_id: str) -> PrivacyRequest:
    try:
        return PrivacyRequest.objects.get(
            pk=request_id, business=business, requested_by=PrivacyRequest.Requester.BUSINESS
        )
    except (PrivacyRequest.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None
