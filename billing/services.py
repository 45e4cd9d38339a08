"""Billing use cases.

Contract used by messaging (it calls these on every business-to-customer send, inside the send's
transaction):
- `business_may_initiate(business=...)`: False once a failed payment's grace period has run out.
- `charge_for_message(...)`: what this business message costs under the active rate card's
  pricing model, as a `Charge`. Per conversation, it opens (or finds) the billable conversation
  (`conversation_charge_for_message`); per message, a template message gets its own usage record
  (service replies are free, and so are utility templates inside an open service window). The
  record and its Stripe report job are written in the caller's transaction, so a send that
  rolls back (blocked, failed) bills nothing.
- `conversation_charge_void(...)`: for a message that fails after its transaction committed.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.mail import mail_admins
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership
from audit.services import audit_record
from billing import stripe_gateway
from billing.models import (
    CATEGORIES,
    FREE_SERVICE_CONVERSATIONS_PER_MONTH,
    BillingAccount,
    Category,
    Invoice,
    PricingModel,
    RateCard,
    StripeEvent,
    UsageCounter,
    UsageRecord,
    month_start,
)
from billing.prices import (
    active_prices_params,
    active_prices_read,
    active_prices_sql,
    country_for_phone,
    prices_for,
)
from config.jobs import defer_atomic, defer_job
from config.sql import prepared_cursor, rows_source
from tenancy.models import Business

logger = logging.getLogger("parley.billing")

WINDOW = timedelta(hours=24)
GRACE_PERIOD = timedelta(days=7)


# Billing's jobs (billing/jobs.py) call these services, so the services queue them by name
# rather than importing that module back.
REPORT_USAGE_RECORD = "billing.report_usage_record"
# One job for the chargeable records a send group opened together (a delivery job's chunk opens
# a hundred): a procrastinate_jobs row, its event and its NOTIFY each, per record, were a visible
# share of what PostgreSQL spent on a notification.
REPORT_USAGE_RECORDS = "billing.report_usage_records"
CANCEL_USAGE_RECORD = "billing.cancel_usage_record"
PROCESS_STRIPE_EVENT = "billing.process_stripe_event"


class BillingError(Exception):
    """A billing action the user asked for cannot be done; the message says why."""


def _tell_staff(subject: str, body: str) -> None:
    """Mail platform staff once the current transaction has committed; never fail the caller."""

    def send() -> None:
        try:
            mail_admins(f"[billing] {subject}", body)
        except Exception:
            logger.exception("could not mail staff: %s", subject)

    transaction.on_commit(send)


# --- prices ----------------------------------------------------------------------------------


def active_rate_card() -> RateCard:
    card = RateCard.objects.filter(is_active=True).first()
    if card is None:
        card, _created = RateCard.objects.get_or_create(is_active=True, defaults=RateCard.launch_fields())
    return card


# --- the messaging contract -----------------------------------------------------------------------


def business_may_initiate(*, business: Business) -> bool:
    """Whether the business may start conversations (templates). Customer replies always work."""
    ends = BillingAccount.objects.filter(business_id=business.pk).values_list("grace_period_ends_at", flat=True).first()
    return ends is None or timezone.now() < ends


@dataclass(frozen=True)
class Charge:
    """What one business message costs. `record` is the usage record it belongs to (None: nothing
    billable, e.g. a service reply under per-message pricing); `opened` says whether this message
    opened that record, i.e. is the one that pays its price."""

    record: UsageRecord | None
    opened: bool

    @property
    def price(self) -> Decimal:
        return self.record.amount if self.record is not None and self.opened else Decimal("0")

    @property
    def unit(self) -> str:
        return self.record.unit if self.record is not None else UsageRecord.Unit.MESSAGE


def _count_service_conversation(
    business_id: int, month: datetime, delta: int = 1, price_keys: Sequence[tuple[str, str]] = ()
) -> tuple[int, dict[tuple[str, str], Decimal]]:
    """Add `delta` to the business's service conversations of `month`; returns the new count and
    the active prices of `price_keys`, read in the same statement (a prepared one)."""
    table = UsageCounter._meta.db_table
    keys = list(price_keys)
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH counted AS (INSERT INTO {table} (business_id, month, category, count) "
            "VALUES (%s, %s, %s, GREATEST(%s::integer, 0)) ON CONFLICT (business_id, month, category) "
            f"DO UPDATE SET count = GREATEST({table}.count + %s::integer, 0) RETURNING count) "
            f"SELECT (SELECT count FROM counted), {active_prices_sql()}",
            [business_id, month.date(), Category.SERVICE, delta, delta, *active_prices_params(keys)],
        )
        count, prices = cursor.fetchone()
    return int(count or 0), active_prices_read(keys, prices)


@dataclass(frozen=True)
class ChargeRequest:
    """One business message to bill (see `charges_for_messages`)."""

    conversation_id: int
    customer_id: int
    customer_phone: str
    category: str  # "service" for a free-form reply inside the window, else the template's
    service_window_open: bool = False  # the customer's 24-hour window, as the message is sent
    # The customer's country as stored when they verified the number (Customer.country_code,
    # read from that number then); "" and the number is parsed here.
    customer_country: str = ""


def _country(request: ChargeRequest) -> str:
    return pricing_country(stored=request.customer_country, phone=request.customer_phone)


def pricing_country(*, stored: str, phone: str) -> str:
    """The country that prices a message to a customer: the stored one (Customer.country_code;
    the send core has the customer's row), else read from the number (phonenumbers: ~50 µs a
    number, once per number per process; a delivery job's hundred customers are mostly new to it)."""
    if len(stored) == 2 and stored.isalpha() and stored.isupper():
        return stored
    return country_for_phone(phone)


def charge_for_message(
    *,
    business: Business,
    conversation_id: int,
    customer_id: int,
    customer_phone: str,
    category: str,
    sent_at: datetime,
    service_window_open: bool = False,
) -> Charge:
    """Bill one business message under the active card's pricing model (see `Charge`)."""
    request = ChargeRequest(conversation_id, customer_id, customer_phone, category, service_window_open)
    return charges_for_messages(business=business, requests=[request], sent_at=sent_at)[0]


def charges_for_messages(
    *,
    business: Business,
    requests: Sequence[ChargeRequest],
    sent_at: datetime,
    model: str | None = None,
    windows: ChargeWindows | None = None,
) -> list[Charge]:
    """Bill business messages sent together (one send-core group) under the active card's
    pricing model; one `Charge` per request, in order. A fixed number of statements whatever
    the count: the window locks and the pricing model, the prices, the open conversations, one
    INSERT of new records, the free-tier counter, one batch of report jobs.

    Per conversation, a message opens a billable conversation unless one with its customer is
    open (an earlier request of the same call counts). Per message, each template message is a
    record of its own; service replies are free and not recorded; a utility template inside an
    open service window is recorded as free, so the ledger and the billing page show it.
    `model` overrides the active card's pricing model (callers that bill by conversation).
    `windows`: the customers' windows, locked and read already in this transaction
    (`charge_windows_send`: the send core's, behind its conversations' lock); their lock and
    reads are not made again for the customers they cover.
    """
    if any(r.category not in CATEGORIES for r in requests):
        raise ValueError(f"unknown conversation category in {[r.category for r in requests]!r}")
    if timezone.is_naive(sent_at):
        raise ValueError("sent_at must be timezone-aware")
    if not requests:
        return []
    # No savepoint: any error here aborts the caller's send anyway, and a savepoint costs two
    # round trips on every group.
    with transaction.atomic(savepoint=False):
        countries = {r.customer_phone: _country(r) for r in requests}
        customer_ids = sorted({r.customer_id for r in requests})
        if windows is None or not windows.customer_ids.issuperset(customer_ids):
            # (The send core's windows cover every customer it bills: it locks them speculatively.)
            with prepared_cursor() as lock, prepared_cursor() as lookup:
                windows = charge_windows_send(
                    lock,
                    lookup,
                    business_id=business.pk,
                    customers=customers_given(customer_ids),
                    price_keys={(r.category, countries[r.customer_phone]) for r in requests},
                    sent_at=sent_at,
                )()
        per_message = (model or windows.model) == PricingModel.MESSAGE
        open_records: dict[int, UsageRecord] = {}
        if not per_message:
            for record in windows.open_records:
                open_records[record.customer_id] = record  # the earliest open one wins
        charges: list[Charge | None] = [None] * len(requests)
        new: list[tuple[int, UsageRecord]] = []
        for index, request in enumerate(requests):
            if per_message and request.category == Category.SERVICE:
                charges[index] = Charge(None, opened=False)
                continue
            if not per_message and request.customer_id in open_records:
                charges[index] = Charge(open_records[request.customer_id], opened=False)
                continue
            record = _new_record(
                id=uuid.uuid4(),
                business_id=business.pk,
                conversation_id=request.conversation_id,
                customer_id=request.customer_id,
                category=request.category,
                unit=UsageRecord.Unit.MESSAGE if per_message else UsageRecord.Unit.CONVERSATION,
                country=countries[request.customer_phone],
                opened_at=sent_at,
                # A message has no window; the smallest range keeps the row's invariant (it ends
                # after it opens) and overlaps nothing of its own kind.
                window_ends_at=sent_at + (timedelta(microseconds=1) if per_message else WINDOW),
                free=per_message and request.category == Category.UTILITY and request.service_window_open,
            )
            new.append((index, record))
            if not per_message:
                open_records[request.customer_id] = record
        if new:
            _price_and_insert(business, [record for _index, record in new], sent_at, windows.prices)
        for index, record in new:
            charges[index] = Charge(record, opened=True)
    return [charge for charge in charges if charge is not None]


_RECORD_FIELDS = [f.attname for f in UsageRecord._meta.concrete_fields]
# Constant defaults only: the id's default is a fresh uuid4 per record, so it must be given.
_RECORD_DEFAULTS = {f.attname: f.get_default() for f in UsageRecord._meta.concrete_fields if not f.primary_key}


def _new_record(**values: Any) -> UsageRecord:
    """A new usage record built positionally (Django's keyword path resolves every field by name,
    a visible share of a delivery job billing a hundred messages); unnamed fields take their
    model defaults."""
    fields: list[Any] = [values[name] if name in values else _RECORD_DEFAULTS[name] for name in _RECORD_FIELDS]
    return UsageRecord(*fields)  # type: ignore[misc]  # the plugin cannot type positional fields


# SQL selecting one bigint column of customer ids, and its parameters: the customers whose
# billing windows `charge_windows_send` locks (the send core names them by their conversations).
CustomersSource = tuple[str, list[Any]]


def customers_given(customer_ids: Sequence[int]) -> CustomersSource:
    return "SELECT unnest(%s::bigint[])", [list(customer_ids)]


@dataclass(frozen=True)
class ChargeWindows:
    """Customers' billing windows, locked until the transaction ends, and what was read behind
    the locks: the active card's pricing model, the billable conversations open then (latest
    first) and the prices asked for (`price_keys`; others are read when a record needs them)."""

    model: str
    customer_ids: frozenset[int]
    open_records: list[UsageRecord]
    prices: dict[tuple[str, str], Decimal]


def charge_windows_send(
    lock: Any,
    lookup: Any,
    *,
    business_id: int,
    customers: CustomersSource,
    price_keys: set[tuple[str, str]],
    sent_at: datetime,
) -> Callable[[], ChargeWindows]:
    """Send (on two prepared cursors: their texts are the same whatever the customers) the lock
    of the customers' billing windows (in id order: two callers never wait crosswise) with the
    pricing model and the prices, then the lookup of the billable conversations open at `sent_at`
    — a statement of its own, so that its snapshot is taken once the locks are held. Returns
    what reads both answers. In a pipeline (config.sql.pipelined) nothing waits until then: the
    send core sends these behind its conversations' lock, one round trip for all."""
    keys = sorted(price_keys)
    source, params = customers
    lock_sql, lookup_sql = _windows_sql(source)
    lock.execute(lock_sql, [*params, f"billing:{business_id}:", *active_prices_params(keys)])
    lookup.execute(lookup_sql, [business_id, *params, UsageRecord.Unit.CONVERSATION, sent_at + WINDOW, sent_at])

    def read() -> ChargeWindows:
        model, locked, prices = lock.fetchone()
        return ChargeWindows(
            model=str(model) if model else PricingModel.CONVERSATION,
            customer_ids=frozenset(locked),
            open_records=_open_conversations_read(lookup),
            prices=active_prices_read(keys, prices),
        )

    return read


@functools.cache
def _windows_sql(source: str) -> tuple[str, str]:
    """`charge_windows_send`'s two statements for a customers source (made once per source)."""
    lock = (
        f"SELECT (SELECT pricing_model FROM {RateCard._meta.db_table} WHERE is_active), "
        f"ARRAY(SELECT ids.c FROM (SELECT DISTINCT u.c FROM ({source}) AS u(c) WHERE u.c IS NOT NULL ORDER BY u.c) AS ids, "
        "LATERAL (SELECT pg_advisory_xact_lock(hashtextextended(%s::text || ids.c::text, 0))) AS lock "
        f"ORDER BY ids.c), {active_prices_sql()}"
    )
    quote = connection.ops.quote_name
    lookup = (
        f"SELECT {', '.join(quote(name) for name in _RECORD_FIELDS)} FROM {quote(UsageRecord._meta.db_table)} "
        f"WHERE business_id = %s AND customer_id = ANY(ARRAY({source})) AND unit = %s AND voided_at IS NULL "
        "AND opened_at < %s AND window_ends_at > %s ORDER BY opened_at DESC"
    )
    return lock, lookup


def _open_conversations_read(cursor: Any) -> list[UsageRecord]:
    return [UsageRecord.from_db(connection.alias, _RECORD_FIELDS, row) for row in cursor.fetchall()]


def _price_and_insert(
    business: Business, records: list[UsageRecord], sent_at: datetime, prices: dict[tuple[str, str], Decimal]
) -> None:
    services = [r for r in records if r.unit == UsageRecord.Unit.CONVERSATION and r.category == Category.SERVICE]
    # Prices not read with the windows' lock (the send core knows an agent reply's country only
    # from that lock's answer) come with the free-tier count, in its statement, or on their own.
    missing = sorted({(r.category, r.country) for r in records} - prices.keys())
    if services:
        # The free tier: the first N service conversations of the month, counted in one update.
        total, fetched = _count_service_conversation(business.pk, month_start(sent_at), len(services), missing)
        first_number = total - len(services) + 1
        for offset, record in enumerate(services):
            record.free = first_number + offset <= FREE_SERVICE_CONVERSATIONS_PER_MONTH
        prices = {**prices, **fetched}
    elif missing:
        prices = {**prices, **prices_for(missing)}
    created_at = timezone.now()
    for record in records:
        record.unit_price = prices[(record.category, record.country)]
        record.report_state = UsageRecord.ReportState.NOT_BILLED if record.free else UsageRecord.ReportState.PENDING
        record.created_at = created_at
    # One INSERT bound as a parameter per column (config.sql), not bulk_create's one per value:
    # a notifications delivery job bills a hundred messages here.
    source, params = rows_source(
        _RECORD_COLUMNS, [[getattr(r, name) for name, _type in _RECORD_COLUMNS] for r in records]
    )
    names = ", ".join(name for name, _type in _RECORD_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {UsageRecord._meta.db_table} ({names}) SELECT {names} FROM {source}",
            params,
        )
    for record in records:
        record._state.adding, record._state.db = False, connection.alias
    # Same transaction as the rows, whatever runs this (a request or a job): a committed
    # chargeable record always has its report queued. One record (a conversation's send): its
    # own job, whose queueing lock the safety net checks; several (a group): one job for all.
    chargeable = [str(r.id) for r in records if not r.free]
    if len(chargeable) == 1:
        defer_atomic(REPORT_USAGE_RECORD, [({"record_id": chargeable[0]}, f"usage:{chargeable[0]}")])
    elif chargeable:
        defer_atomic(REPORT_USAGE_RECORDS, [({"record_ids": chargeable}, None)])


# Every column of a new usage record (what bulk_create would write).
_RECORD_COLUMNS = [
    ("id", "uuid"),
    ("business_id", "bigint"),
    ("conversation_id", "bigint"),
    ("customer_id", "bigint"),
    ("category", "varchar"),
    ("unit", "varchar"),
    ("message_id", "bigint"),
    ("country", "varchar"),
    ("opened_at", "timestamptz"),
    ("window_ends_at", "timestamptz"),
    ("unit_price", "numeric"),
    ("currency", "varchar"),
    ("free", "boolean"),
    ("voided_at", "timestamptz"),
    ("void_reason", "varchar"),
    ("report_state", "varchar"),
    ("report_attempts", "integer"),
    ("reported_at", "timestamptz"),
    ("report_error", "varchar"),
    ("created_at", "timestamptz"),
]


def usage_records_link_messages(*, links: list[tuple[str, int]]) -> None:
    """Per-message records name their message once the send core has inserted it (the charge
    comes first: a refused charge must stop the message). One statement for a whole group."""
    if not links:
        return
    source, params = rows_source([("id", "uuid"), ("message_id", "bigint")], links)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {UsageRecord._meta.db_table} AS u SET message_id = v.message_id FROM {source} WHERE u.id = v.id",
            params,
        )


def conversation_charge_for_message(
    *,
    business: Business,
    conversation_id: int,
    customer_id: int,
    customer_phone: str,
    category: str,
    sent_at: datetime,
) -> UsageRecord:
    """Per-conversation pricing, whatever the active card's model: return the billable
    conversation this message belongs to, opening one if needed.

    The first business message when no billable conversation with this customer is open opens a
    24-hour one of `category` (service for replies inside the customer's service window, else the
    template's category); later messages inside those 24 hours belong to it. Overlap, not
    containment: a message stamped slightly before an open window (clock skew between senders)
    joins it rather than opening an overlapping second one.
    """
    request = ChargeRequest(conversation_id, customer_id, customer_phone, category)
    [charge] = charges_for_messages(
        business=business, requests=[request], sent_at=sent_at, model=PricingModel.CONVERSATION
    )
    assert charge.record is not None
    return charge.record


def conversation_charge_void(*, record_id: uuid.UUID | str, reason: str) -> UsageRecord | None:
    """Stop billing a conversation whose opening message failed after it was committed.

    Call it only when no message of that conversation reached the customer. Not yet reported:
    it is never sent. Already reported: Stripe is told to cancel the meter event.
    """

    with transaction.atomic():
        record = UsageRecord.objects.select_for_update().filter(pk=record_id).first()
        if record is None or record.voided_at is not None:
            return record
        record.voided_at = timezone.now()
        record.void_reason = reason[:200]
        if record.report_state == UsageRecord.ReportState.REPORTED:
            defer_job(CANCEL_USAGE_RECORD, record_id=str(record.pk))
        else:
            record.report_state = UsageRecord.ReportState.NOT_BILLED
        record.save(update_fields=["voided_at", "void_reason", "report_state"])
        if record.category == Category.SERVICE:
            _count_service_conversation(record.business_id, month_start(record.opened_at), -1)
        audit_record(
            action="billing.conversation_voided",
            business=record.business,
            target=str(record.pk),
            data={"reason": reason[:200]},
        )
    return record


# --- Stripe customer, reports --------------------------------------------------------------------


def billing_account_for(*, business: Business) -> BillingAccount:
    account, _created = BillingAccount.objects.get_or_create(business=business)
    return account


def _owner_email(business: Business) -> str:
    owner = (
        Membership.objects.filter(business=business, role=Membership.Role.OWNER)
        .select_related("user")
        .order_by("created_at")
        .first()
    )
    return owner.user.email if owner else ""


def stripe_customer_ensure(*, business: Business) -> str:
    """The business's Stripe customer id, creating the customer once."""
    account = billing_account_for(business=business)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        if not account.stripe_customer_id:
            account.stripe_customer_id = stripe_gateway.customer_create(
                business_id=business.pk,
                name=business.name,
                email=_owner_email(business),
                slug=business.slug,
                idempotency_key=f"parley-customer-{business.pk}-{account.pk}",
            )
            account.save(update_fields=["stripe_customer_id", "updated_at"])
            audit_record(action="billing.stripe_customer_created", business=business, target=account.stripe_customer_id)
    return account.stripe_customer_id


def usage_record_report(*, record_id: str) -> str:
    """Send one record to Stripe. Returns what happened; raises StripeTemporaryError or
    StripeNotConfigured for the job to retry later."""
    record = UsageRecord.objects.select_related("business").filter(pk=record_id).first()
    if record is None:
        return "missing"
    if record.report_state != UsageRecord.ReportState.PENDING or not record.chargeable:
        return "skipped"
    UsageRecord.objects.filter(pk=record.pk).update(report_attempts=F("report_attempts") + 1)
    # Committed on its own, before the report: if the report then fails, the retry must use the
    # same customer, never create a second one.
    try:
        customer_id = stripe_customer_ensure(business=record.business)
    except stripe_gateway.StripePermanentError as error:
        with transaction.atomic():
            return _report_refused(record, error)
    with transaction.atomic():
        # The row stays locked during the call so a concurrent void waits and then sees the truth.
        # Only the row: a plain FOR UPDATE would also lock the joined tenancy Business for the
        # whole Stripe call, serializing every report of that business and blocking its edits.
        record = UsageRecord.objects.select_for_update(of=("self",)).select_related("business").get(pk=record_id)
        if record.report_state != UsageRecord.ReportState.PENDING or not record.chargeable:
            return "skipped"
        try:
            accepted = stripe_gateway.meter_event_report(
                identifier=str(record.pk),
                category=record.category,
                customer_id=customer_id,
                value=record.meter_value,
                timestamp=record.opened_at,
            )
        except stripe_gateway.StripePermanentError as error:
            return _report_refused(record, error)
        UsageRecord.objects.filter(pk=record.pk).update(
            report_state=UsageRecord.ReportState.REPORTED, reported_at=timezone.now(), report_error=""
        )
    return "reported" if accepted else "duplicate"


def usage_records_report(*, record_ids: Sequence[str]) -> dict[str, str]:
    """Send a group's records to Stripe, one after the other, each as `usage_record_report`
    does (each its own transaction: a report already sent is never undone by a later failure).
    A temporary failure of one does not stop the others; it is raised once they were tried, for
    the job to retry (the retry skips the records reported meanwhile). Without a key none can
    go: raised at once."""
    outcomes: dict[str, str] = {}
    failure: stripe_gateway.StripeTemporaryError | None = None
    for record_id in record_ids:
        try:
            outcomes[record_id] = usage_record_report(record_id=record_id)
        except stripe_gateway.StripeTemporaryError as error:
            outcomes[record_id] = "retry"
            failure = failure or error
    if failure is not None:
        raise failure
    return outcomes


def _report_refused(record: UsageRecord, error: Exception) -> str:
    """Stripe refused the record (or its customer): retrying cannot help. Keep it, tell staff."""
    reason = str(error)[:500]
    UsageRecord.objects.filter(pk=record.pk).update(report_state=UsageRecord.ReportState.FAILED, report_error=reason)
    audit_record(
        action="billing.report_failed", business=record.business, target=str(record.pk), data={"error": reason}
    )
    _tell_staff(
        "Stripe refused a usage record",
        f"Usage record {record.pk} of {record.business.slug} was refused by Stripe: {reason}\n"
        "Fix the cause, then use 'Report again' in the usage ledger admin.",
    )
    return "failed"


def usage_record_cancel_in_stripe(*, record_id: str) -> str:
    """Cancel a voided record's meter event. Raises StripeTemporaryError or StripeNotConfigured for
    the job to retry; a refusal (say, past Stripe's cancellation window) is final: staff are told."""
    record = UsageRecord.objects.select_related("business").filter(pk=record_id).first()
    if record is None or record.voided_at is None or record.report_state != UsageRecord.ReportState.REPORTED:
        return "skipped"
    try:
        stripe_gateway.meter_event_cancel(identifier=str(record.pk), category=record.category)
    except stripe_gateway.StripePermanentError as error:
        reason = str(error)[:500]
        with transaction.atomic():
            UsageRecord.objects.filter(pk=record.pk).update(report_error=reason)
            audit_record(
                action="billing.cancel_failed", business=record.business, target=str(record.pk), data={"error": reason}
            )
            _tell_staff(
                "Stripe refused to cancel a usage record",
                f"Usage record {record.pk} of {record.business.slug} was voided, but Stripe refused to cancel "
                f"its meter event: {reason}\nIt stays on the business's invoice: credit it by hand.",
            )
        return "failed"
    UsageRecord.objects.filter(pk=record.pk).update(report_state=UsageRecord.ReportState.NOT_BILLED)
    return "cancelled"


def usage_reports_requeue(*, older_than: timedelta = timedelta(minutes=30), record_ids: list[str] | None = None) -> int:
    """Queue reports again: for the given records (pending or refused), or for every record still
    pending after `older_than` that has no report job waiting. The safety net behind the per-record
    job; Stripe dedupes by identifier, so an extra report is harmless."""
    from django.db.models import Exists, OuterRef, TextField
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.functions import Cast
    from procrastinate.contrib.django.models import ProcrastinateJob

    records = UsageRecord.objects.filter(voided_at__isnull=True, free=False)
    if record_ids is not None:
        records = records.filter(pk__in=record_ids, report_state__in=["pending", "failed"])
    else:
        if not stripe_gateway.is_configured():
            return 0  # ledger-only: the jobs are already waiting in the queue
        waiting = (
            ProcrastinateJob.objects.filter(task_name=REPORT_USAGE_RECORD, status__in=["todo", "doing"])
            .annotate(record_id=KeyTextTransform("record_id", "args"))
            .filter(record_id=Cast(OuterRef("pk"), TextField()))
        )
        records = records.filter(report_state="pending", created_at__lt=timezone.now() - older_than).exclude(
            Exists(waiting)
        )
    # Nor a record whose group's job is waiting (REPORT_USAGE_RECORDS: its ids in one array).
    records = records.extra(  # noqa: S610  (constants and a parameter only)
        where=[
            f"NOT EXISTS (SELECT 1 FROM {ProcrastinateJob._meta.db_table} j WHERE j.task_name = %s "
            "AND j.status IN ('todo', 'doing') "
            f"AND jsonb_exists(j.args -> 'record_ids', {UsageRecord._meta.db_table}.id::text))"
        ],
        params=[REPORT_USAGE_RECORDS],
    )
    queued = 0
    for record_id in records.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            UsageRecord.objects.filter(pk=record_id).update(report_state=UsageRecord.ReportState.PENDING)
            lock = f"usage:{record_id}"
            if not defer_job(REPORT_USAGE_RECORD, queueing_lock=lock, skip_if_queued=True, record_id=str(record_id)):
                continue
        queued += 1
    return queued


# --- Checkout and portal ---------------------------------------------------------------------------


def checkout_start(*, business: Business, actor: Any, return_url: str) -> str:
    if not stripe_gateway.is_configured():
        raise BillingError(_("Payments are not set up on this Parley installation yet."))
    account = billing_account_for(business=business)
    if account.subscribed:
        # A second Checkout would start a second subscription and bill every conversation twice.
        raise BillingError(_("This business already has a subscription: manage it in the customer portal."))
    customer_id = stripe_customer_ensure(business=business)
    try:
        url = stripe_gateway.checkout_session_create(
            customer_id=customer_id,
            business_id=business.pk,
            success_url=f"{return_url}?checkout=success",
            cancel_url=f"{return_url}?checkout=cancelled",
        )
    except (stripe_gateway.StripeTemporaryError, stripe_gateway.StripePermanentError) as error:
        logger.warning("checkout for %s failed: %s", business.slug, error)
        raise BillingError(_("Stripe could not start the checkout. Please try again in a minute.")) from error
    audit_record(action="billing.checkout_started", actor=actor, business=business, target=customer_id)
    return url


def portal_start(*, business: Business, return_url: str) -> str:
    if not stripe_gateway.is_configured():
        raise BillingError(_("Payments are not set up on this Parley installation yet."))
    customer_id = stripe_customer_ensure(business=business)
    try:
        return stripe_gateway.portal_session_create(customer_id=customer_id, return_url=return_url)
    except (stripe_gateway.StripeTemporaryError, stripe_gateway.StripePermanentError) as error:
        logger.warning("portal for %s failed: %s", business.slug, error)
        raise BillingError(_("Stripe could not open the billing portal. Please try again in a minute.")) from error


# --- webhooks ----------------------------------------------------------------------------------------


def stripe_event_store(*, event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Keep the event before doing anything with it; a replay finds the stored row."""
    created_ts = event.get("created")
    row, created = StripeEvent.objects.get_or_create(
        id=str(event["id"]),
        defaults={
            "type": str(event["type"])[:100],
            "payload": event,
            "created": datetime.fromtimestamp(int(created_ts), tz=UTC) if created_ts else None,
        },
    )
    return row, created


def stripe_event_process(*, event_id: str) -> bool:
    """Apply one stored event exactly once. Returns False when it had been processed already.

    A failed attempt rolls back what it applied but is still counted, with its error, on the
    stored event (whether it came from the webhook, the retry job or the admin), then re-raised."""
    try:
        with transaction.atomic():
            row = StripeEvent.objects.select_for_update().get(pk=event_id)
            if row.processed_at is not None:
                return False
            handler = _HANDLERS.get(row.type)
            if handler is not None:
                obj = row.payload.get("data", {}).get("object", {})
                handler(obj, row.created or timezone.now())
            StripeEvent.objects.filter(pk=row.pk).update(
                processed_at=timezone.now(), attempts=F("attempts") + 1, error=""
            )
    except Exception as error:
        StripeEvent.objects.filter(pk=event_id, processed_at__isnull=True).update(
            attempts=F("attempts") + 1, error=repr(error)[:2000]
        )
        raise
    return True


def _account_for_customer(customer_id: str | None, business_id: Any = None) -> BillingAccount | None:
    """The account an event is about: by Stripe customer first; by the business id in metadata
    only for an account without a customer yet (never re-pointing one that has another)."""
    if customer_id:
        account = BillingAccount.objects.select_for_update().filter(stripe_customer_id=customer_id).first()
        if account is not None:
            return account
    if not business_id or not str(business_id).isdigit():
        return None
    business = Business.objects.filter(pk=int(business_id)).first()
    if business is None:
        return None
    account = BillingAccount.objects.select_for_update().get(pk=billing_account_for(business=business).pk)
    if customer_id and account.stripe_customer_id and account.stripe_customer_id != customer_id:
        return None
    if customer_id and not account.stripe_customer_id:
        account.stripe_customer_id = customer_id
        account.save(update_fields=["stripe_customer_id", "updated_at"])
    return account


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _on_checkout_completed(obj: dict[str, Any], at: datetime) -> None:
    business_id = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("parley_business_id")
    account = _account_for_customer(obj.get("customer"), business_id)
    if account is None:
        logger.warning("checkout.session.completed for unknown customer %s", obj.get("customer"))
        return
    if obj.get("subscription") and not account.subscription_id:
        account.subscription_id = str(obj["subscription"])
        if not account.subscription_status:
            account.subscription_status = "active"
        account.save(update_fields=["subscription_id", "subscription_status", "updated_at"])
    audit_record(action="billing.checkout_completed", business=account.business, target=account.subscription_id)


def _on_subscription(obj: dict[str, Any], at: datetime) -> None:
    business_id = (obj.get("metadata") or {}).get("parley_business_id")
    account = _account_for_customer(obj.get("customer"), business_id)
    if account is None:
        logger.warning("subscription event for unknown customer %s", obj.get("customer"))
        return
    # Out-of-order delivery: an older snapshot never overwrites a newer one.
    if account.subscription_event_at and at < account.subscription_event_at:
        return
    status = str(obj.get("status") or "")
    account.subscription_id = str(obj.get("id") or account.subscription_id)
    account.subscription_status = status
    account.subscription_event_at = at
    items = (obj.get("items") or {}).get("data") or []
    period_end = obj.get("current_period_end") or (items[0].get("current_period_end") if items else None)
    account.current_period_end = _ts(period_end)
    account.save(
        update_fields=[
            "subscription_id",
            "subscription_status",
            "subscription_event_at",
            "current_period_end",
            "updated_at",
        ]
    )
    audit_record(
        action="billing.subscription_changed",
        business=account.business,
        target=account.subscription_id,
        data={"status": status},
    )


def _invoice_upsert(obj: dict[str, Any], at: datetime, account: BillingAccount) -> tuple[Invoice, bool]:
    """Returns the invoice and whether this event is the newest word on it."""
    invoice, _created = Invoice.objects.select_for_update().get_or_create(
        id=str(obj["id"]), defaults={"account": account, "status": str(obj.get("status") or "open")}
    )
    if invoice.last_event_at and at < invoice.last_event_at:
        return invoice, False
    # A paid invoice stays paid, whatever older news arrives after it.
    if invoice.status != "paid" or obj.get("status") in {"paid", "void"}:
        invoice.status = str(obj.get("status") or invoice.status)
    invoice.number = str(obj.get("number") or "")
    invoice.currency = str(obj.get("currency") or "eur")
    invoice.amount_due = int(obj.get("amount_due") or 0)
    invoice.amount_paid = int(obj.get("amount_paid") or 0)
    invoice.hosted_invoice_url = str(obj.get("hosted_invoice_url") or "")
    invoice.period_start = _ts(obj.get("period_start"))
    invoice.period_end = _ts(obj.get("period_end"))
    invoice.created = _ts(obj.get("created"))
    invoice.last_event_at = at
    invoice.save()
    return invoice, True


def _on_invoice_paid(obj: dict[str, Any], at: datetime) -> None:
    account = _account_for_customer(obj.get("customer"))
    if account is None:
        logger.warning("invoice.paid for unknown customer %s", obj.get("customer"))
        return
    obj = {**obj, "status": "paid"}
    _invoice_upsert(obj, at, account)
    _grace_period_end_if_settled(account, obj)


def _grace_period_end_if_settled(account: BillingAccount, obj: dict[str, Any]) -> None:
    """Lift the grace period once no invoice whose payment failed is still owed."""
    still_owed = account.invoices.filter(payment_failed=True, status__in=["open", "uncollectible"]).exists()
    if account.grace_period_ends_at and not still_owed:
        account.grace_period_ends_at = None
        account.payment_failed_at = None
        account.save(update_fields=["grace_period_ends_at", "payment_failed_at", "updated_at"])
        audit_record(action="billing.payment_recovered", business=account.business, target=str(obj["id"]))
        business = account.business
        _tell_staff(
            f"Payment recovered: {business.slug}",
            f"{business} settled invoice {obj.get('number') or obj['id']}; it may start conversations again.",
        )


def _on_invoice_payment_failed(obj: dict[str, Any], at: datetime) -> None:
    account = _account_for_customer(obj.get("customer"))
    if account is None:
        logger.warning("invoice.payment_failed for unknown customer %s", obj.get("customer"))
        return
    obj = {**obj, "status": obj.get("status") or "open"}
    invoice, newest = _invoice_upsert(obj, at, account)
    if invoice.status in {"paid", "void"} or not newest:
        return  # settled after this failure (events arrived out of order)
    Invoice.objects.filter(pk=invoice.pk).update(payment_failed=True)
    if account.grace_period_ends_at is None:
        account.payment_failed_at = at
        account.grace_period_ends_at = at + GRACE_PERIOD
        account.save(update_fields=["payment_failed_at", "grace_period_ends_at", "updated_at"])
        audit_record(
            action="billing.payment_failed",
            business=account.business,
            target=str(obj["id"]),
            data={"grace_period_ends_at": account.grace_period_ends_at.isoformat()},
        )
        business, ends = account.business, account.grace_period_ends_at
        _tell_staff(
            f"Payment failed: {business.slug}",
            f"{business} failed to pay invoice {obj.get('number') or obj['id']}. Grace period ends "
            f"{ends:%Y-%m-%d %H:%M} UTC; after that it cannot start conversations until it pays.",
        )


def _on_invoice_changed(obj: dict[str, Any], at: datetime) -> None:
    account = _account_for_customer(obj.get("customer"))
    if account is not None:
        invoice, _newest = _invoice_upsert(obj, at, account)
        if invoice.status == "void":  # staff forgave it
            _grace_period_end_if_settled(account, obj)


def rate_card_activate(*, card: RateCard, actor: Any) -> RateCard:
    """Make this the active card, retiring the old one in the same transaction. New prices apply
    to conversations opened from now on; open ones keep the price they were opened with."""
    with transaction.atomic():
        RateCard.objects.filter(is_active=True).exclude(pk=card.pk).update(is_active=False)
        card.is_active = True
        return rate_card_save(card=card, actor=actor)


def rate_card_save(*, card: RateCard, actor: Any) -> RateCard:
    with transaction.atomic():
        card.save()
        audit_record(
            action="billing.rate_card_saved",
            actor=actor,
            target=card.name,
            data={
                "active": card.is_active,
                "pricing_model": card.pricing_model,
                **{f"default_{c}": str(card.default_for(c)) for c in CATEGORIES},
            },
        )
    return card


def billing_account_save(*, account: BillingAccount, actor: Any, changed: list[str]) -> BillingAccount:
    """Staff editing a business's Stripe state by hand (e.g. lifting a grace period): audited with
    the new values, since it decides whether the business may start conversations."""
    with transaction.atomic():
        account.save()
        audit_record(
            action="billing.account_edited",
            actor=actor,
            business=account.business,
            target=account.stripe_customer_id,
            data={name: str(getattr(account, name)) for name in changed},
        )
    return account


_HANDLERS = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": _on_subscription,
    "customer.subscription.updated": _on_subscription,
    "customer.subscription.deleted": _on_subscription,
    "customer.subscription.paused": _on_subscription,
    "customer.subscription.resumed": _on_subscription,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_succeeded": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
    "invoice.finalized": _on_invoice_changed,
    "invoice.updated": _on_invoice_changed,
    "invoice.voided": _on_invoice_changed,
    "invoice.marked_uncollectible": _on_invoice_changed,
}


def stripe_event_receive(*, event: dict[str, Any]) -> str:
    """A verified webhook event: store it, then apply it once. If applying fails the stored event
    is retried by a job, so Stripe still gets its 2xx and does not redeliver forever."""

    row, _created = stripe_event_store(event=event)
    if row.processed_at is not None:
        return "duplicate"
    try:
        return "processed" if stripe_event_process(event_id=row.pk) else "duplicate"
    except Exception:
        logger.exception("processing Stripe event %s failed; queued for retry", row.pk)
        lock = f"stripe-event:{row.pk}"
        defer_job(PROCESS_STRIPE_EVENT, queueing_lock=lock, skip_if_queued=True, event_id=row.pk)
        return "queued"


def usage_counter_rebuild(*, business: Business, month: datetime) -> int:
    """Recount a month's service conversations from the ledger (after imports or repairs)."""
    start = month_start(month)
    end = (start + timedelta(days=32)).replace(day=1)
    with transaction.atomic():
        count = UsageRecord.objects.filter(
            business_id=business.pk,
            category=Category.SERVICE,
            opened_at__gte=start,
            opened_at__lt=end,
            voided_at__isnull=True,
        ).count()
        UsageCounter.objects.update_or_create(
            business_id=business.pk, month=start.date(), category=Category.SERVICE, defaults={"count": count}
        )
    return count
