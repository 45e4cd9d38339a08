"""The privacy centre's use cases: export, erasure and retention (issue 14).

A request is carried out by background jobs, one business schema per job (the schema name is
the job's argument; the job enters that schema itself). Each step commits its schema's work
together with the request's progress, so a worker that dies midway loses nothing: the request
says which schemas are finished, and `privacy_request_resume` (also run periodically) queues
the rest again. The step that finishes the last schema does the public part and closes the
request; a repeated step or finish does nothing.

What is kept after an erasure (the law's part): usage-ledger rows keep their amounts, country
and a bare customer id that no longer leads anywhere (they never held the phone number), and
the audit log records that an erasure happened with ids and counts only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from accounts.models import Customer, User
from audit.services import audit_record
from config.jobs import defer_job
from customers.models import Block, BusinessContact, ConsentRecord, MarketingMute, PrivacyRequest, Report
from directory.models import CustomerThread
from messaging.models import AgentPresence, Contact, Conversation, Event, Message
from messaging.revocation import rights_revoke_customer
from notifications.models import Notification, WebhookDelivery
from tenancy.models import MIN_RETENTION_DAYS, PUBLIC_SCHEMA, Business
from verification.models import PhoneChallenge

logger = logging.getLogger("parley.privacy")

# A deleted account's number is replaced at once, so the number can sign up afresh while the
# erasure jobs run, and the old sessions (which name the customer's id) stop working.
ERASED_PREFIX = "erased:"
# The download link is signed for one customer (or business) and one request, and short-lived.
DOWNLOAD_LINK_MAX_AGE = timedelta(minutes=30)
# Finished exports are deleted from disk after this; the request row stays as a record.
EXPORT_KEEP = timedelta(days=2)
# A request with no progress for this long is queued again (a worker died holding it).
STALLED_AFTER = timedelta(minutes=10)
STEP_TASK = "privacy.step"
FINISH_TASK = "privacy.finish"


def export_root() -> Path:
    """Private folder for export files: outside MEDIA_ROOT, so nothing serves it directly."""
    configured = getattr(settings, "PARLEY_EXPORT_ROOT", None) or os.environ.get("PARLEY_EXPORT_ROOT")
    return Path(configured) if configured else Path(settings.BASE_DIR) / ".exports"


# --- requesting -------------------------------------------------------------------------------


def _customer_schemas(customer_id: int) -> list[str]:
    """Every business schema that holds data about this customer, from the public index: the
    send path records each business-customer pair there before any message is committed."""
    ids = set(BusinessContact.objects.filter(customer_id=customer_id).values_list("business_id", flat=True))
    ids |= set(CustomerThread.objects.filter(customer_id=customer_id).values_list("business_id", flat=True))
    return sorted(
        Business.objects.filter(pk__in=ids).exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True)
    )


def _queue(request: PrivacyRequest) -> None:
    missing = [s for s in request.schemas if s not in request.done_schemas]
    for schema_name in missing:
        lock = f"privacy:{request.pk}:{schema_name}"
        defer_job(
            STEP_TASK, queueing_lock=lock, skip_if_queued=True, request_id=str(request.pk), schema_name=schema_name
        )
    if not missing:
        lock = f"privacy:{request.pk}:finish"
        defer_job(FINISH_TASK, queueing_lock=lock, skip_if_queued=True, request_id=str(request.pk))


def _create(**fields: Any) -> PrivacyRequest:
    customer = fields.get("customer")
    if customer is not None and "phone_number" not in fields:
        fields["phone_number"] = customer.phone_number
    elif "customer_id" in fields:
        fields["phone_number"] = (
            Customer.objects.filter(pk=fields["customer_id"]).values_list("phone_number", flat=True).first() or ""
        )
    request = PrivacyRequest.objects.create(**fields)
    # Deferred in the same transaction as the row: a committed request always has its jobs.
    _queue(request)
    return request


def customer_export_request(*, customer: Customer) -> PrivacyRequest:
    """The customer asks for everything Parley holds about them, as one ZIP."""
    with transaction.atomic():
        return _create(
            kind=PrivacyRequest.Kind.EXPORT,
            requested_by=PrivacyRequest.Requester.CUSTOMER,
            customer=customer,
            schemas=_customer_schemas(customer.pk),
        )


def contact_export_request(*, business: Business, user: User, contact_id: Any) -> PrivacyRequest:
    """A business exports one contact's data, e.g. for an access request it received."""
    with schema_context(business.schema_name):
        customer_id = Contact.objects.filter(pk=_as_int(contact_id)).values_list("customer_id", flat=True).first()
    if customer_id is None:
        raise ValidationError(_("This contact does not exist."))
    with transaction.atomic():
        request = _create(
            kind=PrivacyRequest.Kind.EXPORT,
            requested_by=PrivacyRequest.Requester.BUSINESS,
            customer_id=customer_id,
            business=business,
            schemas=[business.schema_name],
        )
        audit_record(
            action="privacy.contact_export_requested",
            actor=user,
            business=business,
            target=f"privacy_request:{request.pk}",
            data={"customer_id": customer_id},
        )
    return request


def customer_erasure_request(*, customer: Customer, business: Business) -> PrivacyRequest:
    """The customer asks one business to erase them: its contact, conversation and messages go,
    and so does the business's row in the public index. The customer's own choices about the
    business (block, mute, opt-outs) stay: they protect the customer."""
    with transaction.atomic():
        request = _create(
            kind=PrivacyRequest.Kind.ERASE_BUSINESS,
            requested_by=PrivacyRequest.Requester.CUSTOMER,
            customer=customer,
            business=business,
            schemas=[business.schema_name],
        )
        audit_record(
            action="privacy.erasure_requested",
            business=business,
            target=f"privacy_request:{request.pk}",
            data={"customer_id": customer.pk},
        )
    return request


def customer_account_delete(*, customer: Customer) -> PrivacyRequest:
    """The customer deletes their account. From this moment no session of theirs works and
    the number is free; jobs then erase them from every business and finally delete the row."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.phone_number.startswith(ERASED_PREFIX):
            existing = PrivacyRequest.objects.filter(customer=customer, kind=PrivacyRequest.Kind.DELETE_ACCOUNT).first()
            if existing is not None:
                return existing
        phone_number = customer.phone_number
        PhoneChallenge.objects.filter(phone_number=phone_number).delete()
        customer.phone_number = f"{ERASED_PREFIX}{customer.pk}"
        customer.phone_formatted = ""  # the number as read goes with the number
        customer.display_name = ""
        customer.save(update_fields=["phone_number", "phone_formatted", "display_name"])
        request = _create(
            kind=PrivacyRequest.Kind.DELETE_ACCOUNT,
            requested_by=PrivacyRequest.Requester.CUSTOMER,
            customer=customer,
            phone_number=phone_number,
            schemas=_customer_schemas(customer.pk),
        )
        # Open chat and /me/ sockets of every session of this customer close after commit.
        rights_revoke_customer(customer_id=customer.pk)
        audit_record(
            action="privacy.account_deletion_requested",
            target=f"privacy_request:{request.pk}",
            data={"customer_id": customer.pk, "businesses": len(request.schemas)},
        )
    return request


def privacy_request_resume(*, request_id: Any) -> PrivacyRequest | None:
    """Queue again whatever an unfinished request still has to do (after a worker died or a
    step failed). Safe to call any number of times."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status == PrivacyRequest.Status.DONE:
            return request
        _queue(request)
    return request


def privacy_requests_resume_stalled() -> int:
    cutoff = timezone.now() - STALLED_AFTER
    stalled = (
        PrivacyRequest.objects.exclude(status=PrivacyRequest.Status.DONE)
        .filter(created_at__lt=cutoff)
        .exclude(progressed_at__gte=cutoff)
        .values_list("pk", flat=True)
    )
    count = 0
    for request_id in stalled:
        privacy_request_resume(request_id=request_id)
        count += 1
    return count


# --- carrying out, one schema at a time ------------------------------------------------------


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(_("This contact does not exist.")) from None


def _message_row(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "direction": message.direction,
        "author": message.author_kind,
        "kind": message.kind,
        "template": message.template_name,
        "body": message.body,
        "status": message.status,
        "created_at": message.created_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
    }


def _customer_id(request: PrivacyRequest) -> int:
    # Only a finished account deletion clears it, and a finished request is never worked on again.
    assert request.customer_id is not None, f"privacy request {request.pk} has no customer"
    return request.customer_id


def _export_schema(request: PrivacyRequest, schema_name: str) -> None:
    """Write this schema's part of the export: the contact, the conversation, its messages.
    Internal notes go only into a business's own export (they are its notes about the person)."""
    business = Business.objects.get(schema_name=schema_name)
    with_internal = request.requested_by == PrivacyRequest.Requester.BUSINESS
    part: dict[str, Any] = {
        "business": {"name": business.display_name, "legal_name": business.name, "address": business.host},
        "contact": None,
        "conversation": None,
        "messages": [],
    }
    with schema_context(schema_name):
        contact = Contact.objects.filter(customer_id=_customer_id(request)).first()
        if contact is not None:
            part["contact"] = {"name": contact.name, "created_at": contact.created_at}
            if with_internal:
                part["contact"]["notes"] = contact.notes
            conversation = Conversation.objects.filter(contact=contact).first()
            if conversation is not None:
                part["conversation"] = {"status": conversation.status, "created_at": conversation.created_at}
                messages = Message.objects.filter(conversation=conversation).order_by("id")
                if not with_internal:
                    messages = messages.exclude(direction=Message.Direction.INTERNAL)
                part["messages"] = [_message_row(m) for m in messages]
    folder = export_root() / str(request.pk)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{schema_name}.json"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(part, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2))
    temporary.replace(target)  # a half-written part never looks finished


def _erase_schema(request: PrivacyRequest, schema_name: str) -> dict[str, int]:
    """Delete the customer's contact, conversation, messages and their stored events in one
    business's schema. Returns counts (for the audit record; no content)."""
    with schema_context(schema_name):
        notifications = 0
        if request.phone_number:
            # API notifications name the number; webhook payloads carry it (contact) or the
            # conversation (message.received): they hold the same personal data as the messages.
            notifications, _rows = Notification.objects.filter(to=request.phone_number).delete()
            WebhookDelivery.objects.filter(body__contains=request.phone_number).delete()
        contact = Contact.objects.filter(customer_id=_customer_id(request)).first()
        if contact is None:
            return {"messages": 0, "notifications": notifications}
        conversation_ids = list(Conversation.objects.filter(contact=contact).values_list("pk", flat=True))
        if conversation_ids:
            ids = "|".join(str(pk) for pk in conversation_ids)
            WebhookDelivery.objects.filter(body__regex=rf'"conversation_id":({ids})[,}}]').delete()
        # Stored event frames carry message text and the phone number: they go too.
        Event.objects.filter(conversation_id__in=conversation_ids).delete()
        AgentPresence.objects.filter(conversation_id__in=conversation_ids).update(conversation_id=None)
        messages, _rows = Message.objects.filter(conversation_id__in=conversation_ids).delete()
        Conversation.objects.filter(pk__in=conversation_ids).delete()
        contact.delete()
    return {"messages": messages, "notifications": notifications}


# Tests replace this to simulate a worker that dies after committing a schema.
after_step: Callable[[PrivacyRequest, str], None] = lambda request, schema_name: None  # noqa: E731


def privacy_request_step(*, request_id: Any, schema_name: str) -> None:
    """Do one schema of a request. Idempotent: a schema already done is skipped."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status == PrivacyRequest.Status.DONE or schema_name in request.done_schemas:
            return
        if schema_name not in request.schemas:
            raise ValueError(f"{schema_name!r} is not part of privacy request {request.pk}")
        if request.kind == PrivacyRequest.Kind.EXPORT:
            _export_schema(request, schema_name)
        else:
            counts = _erase_schema(request, schema_name)
            business = Business.objects.get(schema_name=schema_name)
            audit_record(
                action="privacy.erased_at_business",
                business=business,
                target=f"privacy_request:{request.pk}",
                data={"customer_id": request.customer_id, **counts},
            )
        request.done_schemas = [*request.done_schemas, schema_name]
        request.status = PrivacyRequest.Status.RUNNING
        request.progressed_at = timezone.now()
        request.save(update_fields=["done_schemas", "status", "progressed_at"])
    after_step(request, schema_name)
    if set(request.schemas) <= set(request.done_schemas):
        privacy_request_finish(request_id=request.pk)


def privacy_request_finish(*, request_id: Any) -> None:
    """The public part, once every schema is done: build the ZIP, or erase the index rows (and,
    for an account deletion, everything public and the customer). Idempotent."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status == PrivacyRequest.Status.DONE:
            return
        if not set(request.schemas) <= set(request.done_schemas):
            return  # a step is still to come; it finishes the request
        if request.kind == PrivacyRequest.Kind.EXPORT:
            request.file_name = _export_zip(request)
        elif request.kind == PrivacyRequest.Kind.ERASE_BUSINESS:
            assert request.business_id is not None
            pair = {"customer_id": _customer_id(request), "business_id": request.business_id}
            CustomerThread.objects.filter(**pair).delete()
            BusinessContact.objects.filter(**pair).delete()
            audit_record(
                action="privacy.erasure_done",
                business=request.business,
                target=f"privacy_request:{request.pk}",
                data={"customer_id": request.customer_id},
            )
        else:
            customer_id = _customer_id(request)
            # A socket opened before the deletion may have written after its schema's step: sweep
            # every schema once more in this transaction. The customer row is locked first: a send
            # makes a contact only for a customer row it locks FOR KEY SHARE (messaging.sending;
            # business schemas have no foreign key into public), so a send that got there first
            # commits before this sweep and is swept, and a later one finds no customer. (A send
            # into an existing contact after the sweep finds no conversation: the same.)
            Customer.objects.select_for_update().filter(pk=customer_id).values_list("pk").first()
            for schema_name in sorted(set(request.schemas) | set(_customer_schemas(customer_id))):
                _erase_schema(request, schema_name)
            for model in (CustomerThread, BusinessContact, Block, MarketingMute, ConsentRecord, Report):
                model.objects.filter(customer_id=customer_id).delete()  # type: ignore[attr-defined]
            # Earlier exports of this customer go too (their ZIPs hold everything).
            for earlier in PrivacyRequest.objects.filter(customer_id=customer_id).exclude(file_name=""):
                (export_root() / earlier.file_name).unlink(missing_ok=True)
            PrivacyRequest.objects.filter(customer_id=customer_id).update(customer=None, phone_number="", file_name="")
            request.customer_id = None
            # A raw delete: Django's cascade would look for contacts in the public schema, where
            # that table does not exist; every schema's contact is already gone (steps above).
            Customer.objects.filter(pk=customer_id)._raw_delete(using="default")
            audit_record(
                action="privacy.account_deleted",
                target=f"privacy_request:{request.pk}",
                data={"customer_id": customer_id, "businesses": len(request.schemas)},
            )
        if request.kind != PrivacyRequest.Kind.EXPORT:
            request.phone_number = ""
        request.status = PrivacyRequest.Status.DONE
        request.finished_at = request.progressed_at = timezone.now()
        request.save(update_fields=["status", "finished_at", "progressed_at", "file_name", "customer", "phone_number"])
    logger.info("privacy request %s (%s) done", request.pk, request.kind)


# --- the export file ---------------------------------------------------------------------------


def _public_part(request: PrivacyRequest) -> dict[str, Any]:
    customer = Customer.objects.get(pk=_customer_id(request))
    only = {"business_id": request.business_id} if request.business_id else {}
    return {
        "profile": {
            "phone_number": customer.phone_number,
            "name": customer.display_name,
            "country": customer.country_code,
            "verified_at": customer.verified_at,
            "created_at": customer.created_at,
        },
        "blocks": [
            {"business": b.business.display_name, "since": b.created_at}
            for b in Block.objects.filter(customer=customer, **only).select_related("business")
        ],
        "marketing_mutes": [
            {"business": m.business.display_name, "since": m.created_at}
            for m in MarketingMute.objects.filter(customer=customer, **only).select_related("business")
        ],
        "consents": [
            {
                "business": c.business.display_name,
                "category": c.category,
                "opted_in": c.granted,
                "source": c.source,
                "at": c.created_at,
            }
            for c in ConsentRecord.objects.filter(customer=customer, **only).select_related("business").order_by("id")
        ],
        "reports": [
            {"business": r.business.display_name, "reason": r.reason, "details": r.details, "at": r.created_at}
            for r in Report.objects.filter(customer=customer, **only).select_related("business")
        ]
        if request.requested_by == PrivacyRequest.Requester.CUSTOMER
        else [],
    }


def _export_zip(request: PrivacyRequest) -> str:
    folder = export_root() / str(request.pk)
    data = _public_part(request)
    data["generated_at"] = timezone.now()
    data["businesses"] = [
        json.loads((folder / f"{schema_name}.json").read_text()) for schema_name in sorted(request.schemas)
    ]
    name = f"{request.pk}.zip"
    target = export_root() / name
    temporary = target.with_suffix(".tmp")
    export_root().mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("parley-data.json", text)
        archive.writestr("index.html", render_to_string("customers/export.html", {"data": json.loads(text)}))
    temporary.replace(target)
    shutil.rmtree(folder, ignore_errors=True)
    return name


def _finished_export(request: PrivacyRequest) -> bool:
    return request.status == PrivacyRequest.Status.DONE and bool(request.file_name)


def export_path(request: PrivacyRequest) -> Path | None:
    if not _finished_export(request):
        return None
    path = export_root() / request.file_name
    return path if path.exists() else None


def download_owner(subject: Customer | Business) -> str:
    """Who a download link is made for: the customer (/me/privacy/) or the business (/privacy/)."""
    return f"customer:{subject.pk}" if isinstance(subject, Customer) else f"business:{subject.pk}"


@dataclass(frozen=True)
class RequestRow:
    """A privacy request as its page shows it: a download token while its export file is there."""

    req: PrivacyRequest
    download_token: str


def request_rows(requests: Iterable[PrivacyRequest], *, owner: Customer | Business) -> list[RequestRow]:
    """The rows of a privacy page. The export folder is listed once for all of them, not looked up
    once per row (and not at all when no export is finished)."""
    requests = list(requests)
    files: set[str] = set()
    if any(_finished_export(r) for r in requests):
        with contextlib.suppress(FileNotFoundError):  # no export made yet on this machine
            files = {entry.name for entry in os.scandir(export_root()) if entry.is_file()}
    token_owner = download_owner(owner)
    return [
        RequestRow(
            req=r,
            download_token=download_token(r, owner=token_owner) if _finished_export(r) and r.file_name in files else "",
        )
        for r in requests
    ]


def download_token(request: PrivacyRequest, *, owner: str) -> str:
    """A signed token naming the request and who may use it ("customer:<id>" or
    "business:<id>"); it expires after DOWNLOAD_LINK_MAX_AGE."""
    return signing.dumps({"r": str(request.pk), "o": owner}, salt="parley.privacy.download", compress=True)


def download_token_check(token: str, *, owner: str) -> str | None:
    """The request id the token is good for, if it was made for `owner` and has not expired."""
    try:
        value = signing.loads(token, salt="parley.privacy.download", max_age=DOWNLOAD_LINK_MAX_AGE)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(value, dict) or value.get("o") != owner:
        return None
    return str(value.get("r"))


def exports_prune() -> int:
    """Delete export files older than EXPORT_KEEP (the daily job calls it)."""
    cutoff = timezone.now() - EXPORT_KEEP
    count = 0
    for request in PrivacyRequest.objects.filter(kind=PrivacyRequest.Kind.EXPORT, finished_at__lt=cutoff).exclude(
        file_name=""
    ):
        (export_root() / request.file_name).unlink(missing_ok=True)
        request.file_name = ""
        request.save(update_fields=["file_name"])
        count += 1
    return count


# --- retention ------------------------------------------------------------------------------------


def business_retention_set(*, business: Business, user: User, days: int) -> None:
    if days < MIN_RETENTION_DAYS:
        raise ValidationError(_("Keep conversations for at least %(days)d days.") % {"days": MIN_RETENTION_DAYS})
    with transaction.atomic():
        before = business.conversation_retention_days
        Business.objects.filter(pk=business.pk).update(conversation_retention_days=days)
        business.conversation_retention_days = days
        audit_record(
            action="privacy.retention_changed", actor=user, business=business, data={"from": before, "to": days}
        )


def conversations_retention_apply(*, schema_name: str, now: Any = None) -> int:
    """Delete this business's conversations resolved longer ago than its retention period
    (with their messages and stored events). Returns how many went."""
    business = Business.objects.get(schema_name=schema_name)
    cutoff = (now or timezone.now()) - timedelta(days=business.conversation_retention_days)
    with transaction.atomic(), schema_context(schema_name):
        old = Conversation.objects.filter(status=Conversation.Status.RESOLVED, updated_at__lt=cutoff).exclude(
            last_message_at__gte=cutoff
        )
        rows = list(old.values_list("pk", "contact__customer_id"))
        ids = [pk for pk, _customer in rows]
        if not ids:
            return 0
        Event.objects.filter(conversation_id__in=ids).delete()
        AgentPresence.objects.filter(conversation_id__in=ids).update(conversation_id=None)
        Message.objects.filter(conversation_id__in=ids).delete()
        Conversation.objects.filter(pk__in=ids).delete()
        CustomerThread.objects.filter(business=business, customer_id__in=[c for _pk, c in rows]).delete()
        audit_record(
            action="privacy.retention_applied",
            business=business,
            data={"conversations": len(ids), "days": business.conversation_retention_days},
        )
    logger.info("retention: %d conversations of %s deleted", len(ids), schema_name)
    return len(ids)
