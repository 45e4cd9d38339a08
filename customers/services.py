"""Customer use cases: sign in with a phone number and a code, and decide about businesses.

Contract for messaging: call `customer_contact_record(customer_id=..., business_id=...)` when a
business and a customer first talk (and on later activity) so the business shows up on the
customer's privacy page at /me/.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Customer
from audit.services import audit_record
from config.jobs import defer_job
from config.sql import Statement, rows_source
from customers.models import Block, BusinessContact, ConsentRecord, MarketingMute, Report
from tenancy.models import Business
from verification.models import PhoneChallenge
from verification.otp import otp_check, otp_send
from verification.phone import phone_display, phone_region

logger = logging.getLogger("parley.customers")

REPORTS_PER_BUSINESS_PER_DAY = 1


def customer_sign_in_start(*, phone_number: str, ip_address: str | None = None) -> None:
    """Text a sign-in code to an E.164 number. Exactly the same whether or not a customer with
    that number exists: sign-in and sign-up are one flow."""
    otp_send(
        purpose=PhoneChallenge.Purpose.CUSTOMER_SIGN_IN,
        phone_number=phone_number,
        ip_address=ip_address,
        message=_("Parley: {code} is your sign-in code. It expires in 10 minutes. Never share it."),
    )


def customer_sign_in_confirm(*, phone_number: str, code: str) -> Customer | None:
    """The customer for this number if the code is right (created on first sign-in), else None."""
    with transaction.atomic():
        if not otp_check(purpose=PhoneChallenge.Purpose.CUSTOMER_SIGN_IN, phone_number=phone_number, code=code):
            return None
        now = timezone.now()
        customer, created = Customer.objects.select_for_update().get_or_create(
            phone_number=phone_number,
            defaults={
                "country_code": phone_region(phone_number),
                "phone_formatted": phone_display(phone_number),
                "verified_at": now,
                "last_seen_at": now,
            },
        )
        if not created:
            customer.verified_at = now
            customer.last_seen_at = now
            customer.phone_formatted = phone_display(phone_number)
            customer.save(update_fields=["verified_at", "last_seen_at", "phone_formatted"])
    logger.info("customer %s signed in%s", customer.pk, " (new)" if created else "")
    return customer


def customer_contact_record(*, customer_id: int, business_id: int, at: datetime | None = None) -> None:
    at = at or timezone.now()
    with transaction.atomic():
        contact, created = BusinessContact.objects.get_or_create(
            customer_id=customer_id, business_id=business_id, defaults={"first_contact_at": at, "last_contact_at": at}
        )
        if not created and contact.last_contact_at < at:
            contact.last_contact_at = at
            contact.save(update_fields=["last_contact_at"])


def customer_contacts_record_statement(
    *, business_id: int, customer_ids: Iterable[int], at: datetime
) -> Statement | None:
    """`customer_contact_record` for many customers of one business, as one statement for the
    caller to run (None: no customer). The messaging send path runs it with its customers'
    thread upsert (directory.services, `alongside`): one statement of a send group fewer, each
    ~0.2–0.4 ms of the writer's Python (issue 9)."""
    ids = sorted(set(customer_ids))  # sorted: concurrent writers lock rows in the same order
    if not ids:
        return None
    table = BusinessContact._meta.db_table
    # One parameter per column, not per value (config.sql): this runs in every send group.
    source, params = rows_source(
        [("customer_id", "bigint"), ("business_id", "bigint"), ("at", "timestamptz")],
        [(customer_id, business_id, at) for customer_id in ids],
    )
    return (
        f"INSERT INTO {table} AS c (customer_id, business_id, first_contact_at, last_contact_at) "
        f"SELECT v.customer_id, v.business_id, v.at, v.at FROM {source} ON CONFLICT (customer_id, business_id) DO UPDATE "
        "SET last_contact_at = GREATEST(c.last_contact_at, EXCLUDED.last_contact_at) "
        "WHERE c.last_contact_at < EXCLUDED.last_contact_at",
        params,
    )


def _audit(action: str, customer: Customer, business: Business, **data: object) -> None:
    # Customers are not Users: the audit actor stays empty and the customer goes in the data.
    audit_record(
        action=action, business=business, target=f"customer:{customer.pk}", data={"customer_id": customer.pk, **data}
    )


def _choice_add(model: type[Block] | type[MarketingMute], action: str, customer: Customer, business: Business) -> None:
    with transaction.atomic():
        _row, created = model.objects.get_or_create(customer=customer, business=business)
        if created:
            _audit(action, customer, business)


def _choice_remove(
    model: type[Block] | type[MarketingMute], action: str, customer: Customer, business: Business
) -> None:
    with transaction.atomic():
        deleted, _rows = model.objects.filter(customer=customer, business=business).delete()
        if deleted:
            _audit(action, customer, business)


def customer_block(*, customer: Customer, business: Business) -> None:
    _choice_add(Block, "customer.blocked", customer, business)


def customer_unblock(*, customer: Customer, business: Business) -> None:
    _choice_remove(Block, "customer.unblocked", customer, business)


def customer_mute_marketing(*, customer: Customer, business: Business, source: str = ConsentRecord.Source.ME) -> None:
    """Mute a business's marketing; the consent ledger records the opt-out and where it came from."""
    consent_record(
        customer=customer, business=business, category=ConsentRecord.Category.MARKETING, granted=False, source=source
    )


def customer_unmute_marketing(*, customer: Customer, business: Business, source: str = ConsentRecord.Source.ME) -> None:
    consent_record(
        customer=customer, business=business, category=ConsentRecord.Category.MARKETING, granted=True, source=source
    )


def consent_record(*, customer: Customer, business: Business, category: str, granted: bool, source: str) -> None:
    """Append one opt-in or opt-out to the consent ledger (the business's proof of consent).

    For marketing the customer's mute follows the ledger, so every existing check of the mute
    (the /me/ page, the send path) agrees with it, and the mute's change is audited as before.
    The ledger itself is append-only evidence, so it needs no audit entry of its own. A repeat
    of the current choice adds no row.
    """
    if category not in ConsentRecord.Category.values:
        raise ValidationError({"category": _("Unknown message category.")})
    if source not in ConsentRecord.Source.values:
        raise ValidationError({"source": _("Unknown consent source.")})
    with transaction.atomic():
        # One customer's choices are written one at a time, so "latest" is well defined.
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        latest = (
            ConsentRecord.objects.filter(customer=customer, business=business, category=category)
            .order_by("-id")
            .values_list("granted", flat=True)
            .first()
        )
        if latest != granted:
            ConsentRecord.objects.create(
                customer=customer, business=business, category=category, granted=granted, source=source
            )
        if category == ConsentRecord.Category.MARKETING:
            if granted:
                _choice_remove(MarketingMute, "customer.marketing_unmuted", customer, business)
            else:
                _choice_add(MarketingMute, "customer.marketing_muted", customer, business)


# Choices a customer made in Parley itself: only the customer can lift such an opt-out.
CUSTOMER_SOURCES = frozenset({ConsentRecord.Source.CHAT, ConsentRecord.Source.STOP, ConsentRecord.Source.ME})


def consent_record_by_business(*, customer: Customer, business: Business, category: str, granted: bool) -> bool:
    """A business records a choice it collected itself (its website, a form at the counter)
    through the API, as source "api". An opt-out always counts. An opt-in does not lift an
    opt-out the customer made in Parley (chat page, STOP reply, privacy page): that choice is
    the customer's to undo. Returns False when the opt-in was refused for that reason."""
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        if granted:
            latest = (
                ConsentRecord.objects.filter(customer=customer, business=business, category=category)
                .order_by("-id")
                .values_list("granted", "source")
                .first()
            )
            muted_by_customer = category == ConsentRecord.Category.MARKETING and (
                MarketingMute.objects.filter(customer=customer, business=business).exists()
                and (latest is None or latest[1] in CUSTOMER_SOURCES)
            )
            if muted_by_customer or (latest is not None and not latest[0] and latest[1] in CUSTOMER_SOURCES):
                return False
        consent_record(
            customer=customer, business=business, category=category, granted=granted, source=ConsentRecord.Source.API
        )
    return True


# Replies that mean "no more marketing from this business" (English, Norwegian/Danish, German).
STOP_KEYWORDS = frozenset({"STOP", "STOPP", "ABMELDEN"})
STOP_CONFIRMATION_TASK = "privacy.stop_confirmation"


def is_stop_keyword(body: str) -> bool:
    """Whether a customer's message is a STOP reply (no database: the websocket send path asks
    before it spends a database round trip on `consent_handle_keyword`)."""
    return body.strip().rstrip(".!").strip().upper() in STOP_KEYWORDS


def consent_handle_keyword(*, business: Business, customer: Customer, body: str) -> bool:
    """Called by the customer send path with the text of each message the customer sent.

    A reply of STOP, STOPP or ABMELDEN (any case, surrounding spaces and a final full stop or
    exclamation mark ignored) mutes the business's marketing and queues a confirmation message
    to the customer, both in one transaction. Returns whether it did.
    """
    if not is_stop_keyword(body):
        return False
    with transaction.atomic():
        customer_mute_marketing(customer=customer, business=business, source=ConsentRecord.Source.STOP)
        defer_job(
            STOP_CONFIRMATION_TASK,
            schema_name=business.schema_name,
            customer_id=customer.pk,
            client_msg_id=f"stop:{uuid.uuid4().hex}",
        )
    return True


def customer_report(*, customer: Customer, business: Business, reason: str, details: str, block: bool) -> Report:
    """File a report for staff; optionally block in the same step. One report per business a
    day is plenty for staff and keeps a grudge from flooding the queue."""
    if reason not in Report.Reason.values:
        raise ValidationError({"reason": _("Please choose a reason.")})
    details = details.strip()
    if reason == Report.Reason.OTHER and not details:
        raise ValidationError({"details": _("Please tell us briefly what happened.")})
    with transaction.atomic():
        # One customer's reports are counted one at a time: a double submit must not file two.
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        since = timezone.now() - timedelta(days=1)
        if Report.objects.filter(customer=customer, business=business, created_at__gte=since).count() >= (
            REPORTS_PER_BUSINESS_PER_DAY
        ):
            raise ValidationError(_("You already reported this business today. Our team is looking into it."))
        report = Report.objects.create(
            customer=customer, business=business, reason=reason, details=details[:2000], also_blocked=block
        )
        _audit("customer.reported", customer, business, reason=reason, report_id=report.pk)
        if block:
            customer_block(customer=customer, business=business)
    return report
