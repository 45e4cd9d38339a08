"""Notifications use cases, run in the business's schema (the caller's request or a job's
`schema_context`): templates, API keys, and sending through the one messaging send core."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import Customer, User
from audit.services import audit_record
from config.jobs import defer_atomic
from config.sql import rows_source
from notifications import limits
from notifications.errors import ErrorCode, NotificationError
from notifications.models import (
    MAX_BUTTONS,
    PLACEHOLDER,
    ApiKey,
    ApiRequest,
    IdempotentAnswer,
    Notification,
    Template,
)
from notifications.selectors import pk_or_zero, require_owner
from template_reviews.selectors import sending_limits
from template_reviews.services import template_review_submit
from tenancy.models import Business

NAME_RE = re.compile(r"^[a-z0-9_]{1,60}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
MAX_PARAMETER = 200
CONTENT_FIELDS = ("category", "header", "body", "footer", "buttons")


def _invalid(field: str, message: str) -> NotificationError:
    return NotificationError(ErrorCode.INVALID, message, field=field)


def _text(value: Any, *, field: str, max_length: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(field, _("Expected text."))
    text = value.replace("\x00", "").strip()
    if required and not text:
        raise _invalid(field, _("This field is required."))
    if len(text) > max_length:
        raise _invalid(field, _("At most %(max)d characters.") % {"max": max_length})
    return text


@dataclass(frozen=True)
class TemplateContent:
    name: str
    language: str
    category: str
    header: str
    body: str
    footer: str
    buttons: list[str]


def template_content_clean(
    *, name: Any, language: Any, category: Any, body: Any, header: Any = "", footer: Any = "", buttons: Any = None
) -> TemplateContent:
    """Validate what a business wrote; every problem names its field."""
    clean_name = _text(name, field="name", max_length=60, required=True).lower()
    if not NAME_RE.match(clean_name):
        raise _invalid("name", _("Use lowercase letters, digits and underscores, e.g. flight_change."))
    clean_language = _text(language, field="language", max_length=8, required=True)
    if not LANGUAGE_RE.match(clean_language):
        raise _invalid("language", _("Use a language code such as en, de or en_GB."))
    if category not in Template.Category.values:
        raise _invalid("category", _("Choose utility, marketing or authentication."))
    clean_header = _text(header, field="header", max_length=60)
    clean_body = _text(body, field="body", max_length=1024, required=True)
    clean_footer = _text(footer, field="footer", max_length=60)
    if PLACEHOLDER.search(clean_footer):
        raise _invalid("footer", _("The footer cannot contain placeholders."))
    unclosed = re.sub(PLACEHOLDER, "", clean_header + clean_body)
    if "{{" in unclosed or "}}" in unclosed:
        raise _invalid("body", _("Write placeholders as {{name}}: lowercase letters, digits and underscores."))
    if buttons is None:
        buttons = []
    if not isinstance(buttons, list) or not all(isinstance(b, str) for b in buttons):
        raise _invalid("buttons", _("Buttons are a list of labels."))
    clean_buttons = [b.replace("\x00", "").strip() for b in buttons if b and b.strip()]
    if len(clean_buttons) > MAX_BUTTONS:
        raise _invalid("buttons", _("At most %(max)d quick-reply buttons.") % {"max": MAX_BUTTONS})
    if any(len(b) > 25 for b in clean_buttons):
        raise _invalid("buttons", _("Button labels can be at most 25 characters."))
    return TemplateContent(
        clean_name, clean_language, str(category), clean_header, clean_body, clean_footer, clean_buttons
    )


def template_create(*, business: Business, actor: User | None, content: TemplateContent) -> Template:
    """A new template, queued for staff review."""
    try:
        with transaction.atomic():
            template = Template.objects.create(
                name=content.name,
                language=content.language,
                category=content.category,
                header=content.header,
                body=content.body,
                footer=content.footer,
                buttons=content.buttons,
            )
            template_review_submit(business=business, template=template)
            audit_record(action="template.create", actor=actor, business=business, target=str(template))
    except IntegrityError:
        raise NotificationError(
            ErrorCode.DUPLICATE,
            _("A template with this name and language exists already."),
            field="name",
        ) from None
    return template


def template_update(*, business: Business, actor: User | None, template_id: Any, content: TemplateContent) -> Template:
    """Edit a template. Any change of what customers would read sends it back to review."""
    with transaction.atomic():
        template = Template.objects.select_for_update().filter(pk=pk_or_zero(template_id)).first()
        if template is None:
            raise NotificationError(ErrorCode.NOT_FOUND, _("This template does not exist."))
        if (template.name, template.language) != (content.name, content.language):
            raise _invalid("name", _("Name and language cannot change; create a new template instead."))
        changed = [f for f in CONTENT_FIELDS if getattr(template, f) != getattr(content, f)]
        if not changed:
            return template
        for field in changed:
            setattr(template, field, getattr(content, field))
        template.revision += 1
        template.status = Template.Status.PENDING
        template.rejection_reason = ""
        template.save()
        template_review_submit(business=business, template=template)
        audit_record(
            action="template.update", actor=actor, business=business, target=str(template), data={"changed": changed}
        )
    return template


def template_status_changed(*, business: Business, template: Template) -> None:
    """A staff decision reached the template (inside the deciding transaction, in the business's
    schema). The dashboard reads decisions from the review rows; subscribed systems get a webhook."""
    from notifications.webhooks import webhook_enqueue

    webhook_enqueue(
        business=business,
        event_type="template.status",
        data={
            "template": {
                "id": template.pk,
                "name": template.name,
                "language": template.language,
                "status": template.status,
                "reason": template.rejection_reason,
            }
        },
    )


# --- API keys --------------------------------------------------------------------------------

KEY_PREFIX = "prl_"


def api_key_hash(secret: str) -> str:
    # Keys are 256-bit random strings, so a plain SHA-256 is as strong as a slow hash here and
    # cheap enough to check on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str  # shown once, never stored


def api_key_create(*, business: Business, actor: User, name: Any, scopes: Any) -> NewApiKey:
    require_owner(business, actor, _("Only the business's owner can manage API keys."))
    clean_name = _text(name, field="name", max_length=100, required=True)
    if not isinstance(scopes, list | tuple) or not scopes or not set(scopes) <= set(ApiKey.Scope.values):
        raise _invalid("scopes", _("Choose at least one scope: send, read."))
    prefix = KEY_PREFIX + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=clean_name,
            prefix=prefix,
            key_hash=api_key_hash(secret),
            scopes=sorted(set(scopes)),
            created_by=actor,
        )
        audit_record(
            action="api_key.create", actor=actor, business=business, target=str(key), data={"scopes": key.scopes}
        )
    return NewApiKey(key, secret)


def api_key_revoke(*, business: Business, actor: User, key_id: Any) -> ApiKey:
    require_owner(business, actor, _("Only the business's owner can manage API keys."))
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=pk_or_zero(key_id)).first()
        if key is None:
            raise NotificationError(ErrorCode.NOT_FOUND, _("This API key does not exist."))
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(action="api_key.revoke", actor=actor, business=business, target=str(key))
    return key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The active key of *this* schema's business with that secret, else None. Runs in the
    request's tenant schema, so another business's key is simply not there."""
    parts = secret.split("_", 2)  # prl_<hex>_<random, may itself contain "_">
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX or len(parts[1]) != 8:
        return None
    key = ApiKey.objects.filter(prefix=f"{parts[0]}_{parts[1]}", revoked_at__isnull=True).first()
    if key is None or not secrets.compare_digest(key.key_hash, api_key_hash(secret)):
        return None
    return key


def api_request_record(
    *, key: ApiKey, method: str, path: str, status_code: int, error_code: str = "", ip_address: str | None = None
) -> None:
    """Every use of a key: the request log (audit trail) and the key's last use."""
    now = timezone.now()
    ApiRequest.objects.create(
        api_key=key,
        method=method[:8],
        path=path[:200],
        status_code=status_code,
        error_code=error_code[:40],
        ip_address=ip_address,
    )
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


# --- Idempotency-Key (messaging.api.base.IdempotentPost) -----------------------------------------

IDEMPOTENCY_TTL = timedelta(hours=24)


def idempotent_answer_claim(*, api_key: ApiKey, key: str) -> IdempotentAnswer | None:
    """The answer stored under this key, if one is still fresh. Call inside the transaction that
    does the work: it holds the key's lock until commit, so concurrent retries with one key wait
    for the first to finish (and then get its answer)."""
    schema = getattr(connection, "schema_name", "")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{schema}:idem:{api_key.pk}:{key}"])
    stored = IdempotentAnswer.objects.filter(api_key=api_key, key=key).first()
    if stored is not None and stored.created_at < timezone.now() - IDEMPOTENCY_TTL:
        stored.delete()  # expired: the key may be used afresh
        return None
    return stored


def idempotent_answer_store(*, api_key: ApiKey, key: str, request_hash: str, status_code: int, body: Any) -> None:
    IdempotentAnswer.objects.create(
        api_key=api_key, key=key, request_hash=request_hash, status_code=status_code, body=body
    )


# --- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """One recipient's message, as the API asked for it (validated by `send_request_clean`)."""

    to: str
    template: Template | None
    parameters: dict[str, str]
    text: str
    # Rich messages (issue 13), single sends only: a file uploaded with POST /api/v1/media, and
    # quick-reply buttons or a list (messaging.rich shapes).
    media_id: int | None = None
    interactive: dict[str, Any] | None = None


def _phone(value: Any) -> str:
    from django.core.exceptions import ValidationError

    from verification.phone import normalise_phone

    if not isinstance(value, str) or not value.strip().startswith("+"):
        raise NotificationError(
            ErrorCode.INVALID_PHONE, _("Give the number in international format, e.g. +4915112345678."), field="to"
        )
    if "\x00" in value:  # as the single send's serializer refuses it; the parser would drop it
        raise NotificationError(ErrorCode.INVALID_PHONE, _("Null characters are not allowed."), field="to")
    try:
        return normalise_phone(value, region=None)
    except ValidationError as error:
        raise NotificationError(ErrorCode.INVALID_PHONE, " ".join(error.messages), field="to") from None


def _approved_template(name: Any, language: Any) -> Template:
    if not isinstance(name, str) or not name:
        raise _invalid("template", _("Name the template to send."))
    qs = Template.objects.filter(name=name)
    if language:
        qs = qs.filter(language=language)
    matches = list(qs[:2])
    if not matches:
        raise NotificationError(ErrorCode.NOT_FOUND, _("There is no template with this name and language."))
    if len(matches) > 1:
        raise _invalid("language", _("This template exists in several languages; say which one."))
    template = matches[0]
    if template.status == Template.Status.PAUSED:
        raise NotificationError(
            ErrorCode.TEMPLATE_PAUSED,
            _("Marketing templates are paused while your quality rating is red."),
        )
    if template.status != Template.Status.APPROVED:
        raise NotificationError(
            ErrorCode.TEMPLATE_NOT_APPROVED,
            _("Only approved templates can be sent; this one is “%(status)s”.")
            % {"status": template.get_status_display()},
        )
    return template


def _parameters(template: Template, parameters: Any, wanted: list[str] | None = None) -> dict[str, str]:
    """`wanted`: the template's placeholders, when the caller read them once for many recipients."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise _invalid("parameters", _("Parameters are an object of name → text."))
    if wanted is None:
        wanted = template.placeholders
    unknown = sorted(set(parameters) - set(wanted))
    if unknown:
        raise NotificationError(
            ErrorCode.UNKNOWN_PARAMETER,
            _("The template has no placeholder %(names)s.") % {"names": ", ".join(unknown)},
            field="parameters",
        )
    missing = [name for name in wanted if name not in parameters]
    if missing:
        raise NotificationError(
            ErrorCode.MISSING_PARAMETER,
            _("Missing values for %(names)s.") % {"names": ", ".join(missing)},
            field="parameters",
        )
    clean: dict[str, str] = {}
    for name in wanted:
        value = parameters[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A number is its text (a flight's 412); JSON's 1e400 reads as infinity: no value.
            value = str(value) if not isinstance(value, float) or math.isfinite(value) else None
        if isinstance(value, str):
            value = value.replace("\x00", "").strip()
        # Checked once NULs are gone: a value of NULs alone was sent (and billed) as a blank.
        if not isinstance(value, str) or not value:
            raise _invalid("parameters", _("The value of %(name)s must be non-empty text.") % {"name": name})
        if len(value) > MAX_PARAMETER:
            raise _invalid("parameters", _("Values can be at most %(max)d characters.") % {"max": MAX_PARAMETER})
        clean[name] = value
    return clean


def template_interactive(template: Template) -> dict[str, Any] | None:
    """A template's buttons as quick-reply buttons the customer taps; the tap's choice id is the
    label's slug (stable for webhook consumers)."""
    if not template.buttons:
        return None
    options = [
        {"id": slugify(label)[:64] or f"button-{index}", "title": label}
        for index, label in enumerate(template.buttons, start=1)
    ]
    return {"type": "buttons", "options": options}


def template_render(*, template: Template, parameters: dict[str, str], buttons_as_text: bool = True) -> str:
    """The text the customer reads: header, body, footer and button labels, placeholders filled.
    Sent messages carry the buttons as real buttons instead (`buttons_as_text=False`)."""

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: parameters[m.group(1)], text)

    parts = [fill(template.header)] if template.header else []
    parts.append(fill(template.body))
    if template.footer:
        parts.append(template.footer)
    if template.buttons and buttons_as_text:
        parts.append(" · ".join(f"[{label}]" for label in template.buttons))
    return "\n\n".join(parts)


def _rich_clean(media_id: Any, interactive: Any) -> tuple[int | None, dict[str, Any] | None]:
    from messaging.errors import MessagingError
    from messaging.rich import clean_interactive

    if media_id not in (None, "") and (not isinstance(media_id, int) or isinstance(media_id, bool) or media_id < 1):
        raise _invalid("media_id", _("media_id is the id POST /api/v1/media answered with."))
    try:
        return media_id or None, clean_interactive(interactive)
    except MessagingError as error:
        raise _invalid("interactive", error.message) from None


def send_request_clean(
    *, to: Any, template: Any = None, text: Any = None, media_id: Any = None, interactive: Any = None
) -> SendRequest:
    """Check one send as the API gave it: a phone number and either a template (name, language,
    parameters) or free text; optionally a file (`media_id`) and buttons or a list. Raises
    NotificationError naming the problem."""
    phone = _phone(to)
    media, buttons = _rich_clean(media_id, interactive)
    if template is not None and text not in (None, ""):
        raise _invalid("template", _("Send either a template or text, not both."))
    if template is not None:
        if not isinstance(template, dict):
            raise _invalid("template", _("template is an object: name, language, parameters."))
        found = _approved_template(template.get("name"), template.get("language"))
        return SendRequest(phone, found, _parameters(found, template.get("parameters")), "", media, buttons)
    clean_text = _text(text, field="text", max_length=4096, required=media is None)
    return SendRequest(phone, None, {}, clean_text, media, buttons)


@dataclass(frozen=True)
class InboxTemplateSent:
    message: Any  # messaging.models.Message
    price: Decimal
    per: str


def template_send_from_inbox(
    *, business: Business, user: User, conversation_id: Any, template_id: Any, parameters: Any, client_msg_id: Any = ""
) -> InboxTemplateSent:
    """An agent sends an approved template from the inbox (the conversation's 24-hour window has
    closed, so free text would be refused): the same rules as the API — placeholders filled,
    marketing mutes, tiers and quality — and the send core's check_template_send and writer."""
    from customers.selectors import customer_has_muted_marketing
    from messaging.sending import check_membership
    from messaging.services import MessagingError, message_send_template
    from notifications.selectors import inbox_conversation

    check_membership(business=business, user=user)
    conversation = inbox_conversation(conversation_id=conversation_id)
    customer = conversation.contact.customer
    template = Template.objects.filter(pk=pk_or_zero(template_id)).first()
    if template is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("There is no template with this name and language."))
    template = _approved_template(template.name, template.language)
    values = _parameters(template, parameters)
    if template.category == Template.Category.MARKETING:
        if customer_has_muted_marketing(customer_id=customer.pk, business_id=business.pk):
            raise NotificationError(
                ErrorCode.CUSTOMER_OPTED_OUT, _("The customer muted marketing messages from your business.")
            )
        limits.marketing_check(business=business)
    # One transaction for the tier and the message: the tier's lock is held until it commits
    # (inside a caller's transaction the send core writes in it, not in a gathered group).
    with transaction.atomic():
        limits.tier_check(business=business, customer_id=customer.pk)
        try:
            result = message_send_template(
                business=business,
                customer=customer,
                template_name=template.name,
                body=template_render(template=template, parameters=values),
                category=template.category,
                author_key=f"user:{user.pk}",
                author_kind="agent",
                author_user=user,
                client_msg_id=client_msg_id,
            )
        except MessagingError as error:
            raise NotificationError(_inbox_error_code(str(error.code)), error.message) from None
    charge = result.charge
    return InboxTemplateSent(
        result.message,
        charge.price if charge is not None else Decimal(0),
        charge.unit if charge is not None and charge.record is not None else "",
    )


def _inbox_error_code(code: str) -> ErrorCode:
    """The send core's refusals, as this app's error codes (the inbox shows the message)."""
    known = {
        "opted_out": ErrorCode.CUSTOMER_OPTED_OUT,
        "not_found": ErrorCode.NOT_FOUND,
        "suspended": ErrorCode.SUSPENDED,
        "payment_required": ErrorCode.PAYMENT_REQUIRED,
    }
    return known.get(code, ErrorCode.FORBIDDEN)  # blocked and anything else: not allowed


def consent_record_from_api(*, business: Business, to: Any, category: str, granted: bool) -> Customer:
    """Record a consent choice the business collected itself for a Parley customer's number."""
    from customers.services import consent_record_by_business

    phone = _phone(to)
    customer = Customer.objects.filter(phone_number=phone, verified_at__isnull=False).first()
    if customer is None:
        raise NotificationError(
            ErrorCode.NOT_A_CUSTOMER, _("This number does not belong to a Parley customer."), field="to"
        )
    if not consent_record_by_business(customer=customer, business=business, category=category, granted=granted):
        raise NotificationError(
            ErrorCode.CUSTOMER_OPTED_OUT,
            _("The customer opted out in Parley themselves; only the customer can opt in again."),
        )
    return customer


def _failed(notification: Notification, code: str, reason: str) -> None:
    """Mark a notification failed in memory (the caller saves it)."""
    notification.status = Notification.Status.FAILED
    notification.failure_code = code
    notification.failure_reason = reason[:300]
    notification.failed_at = timezone.now()


_OUTCOME_COLUMNS = [
    ("status", "varchar"),
    ("failure_code", "varchar"),
    ("failure_reason", "varchar"),
    ("failed_at", "timestamptz"),
    ("message_id", "bigint"),
    ("sent_at", "timestamptz"),
    ("price", "numeric"),
    ("charged_per", "varchar"),
]


def _save_outcomes(notifications: list[Notification]) -> None:
    """Write the delivery outcome of many notifications with one UPDATE (a save per row would
    cost a round trip each, most of a batch job's time), bound per column (config.sql)."""
    if not notifications:
        return
    source, params = rows_source(
        [("id", "bigint"), *_OUTCOME_COLUMNS],
        [[n.pk, *(getattr(n, name) for name, _kind in _OUTCOME_COLUMNS)] for n in notifications],
    )
    assignments = ", ".join(f"{name} = v.{name}" for name, _kind in _OUTCOME_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Notification._meta.db_table} AS n SET {assignments} FROM {source} WHERE n.id = v.id", params
        )


def _fail(notification: Notification, code: str, reason: str) -> Notification:
    notification.status = Notification.Status.FAILED
    notification.failure_code = code
    notification.failure_reason = reason[:300]
    notification.failed_at = timezone.now()
    notification.save(update_fields=["status", "failure_code", "failure_reason", "failed_at"])
    return notification


def notification_deliver(
    *,
    business: Business,
    notification: Notification,
    media_id: int | None = None,
    interactive: dict[str, Any] | None = None,
) -> Notification:
    """Hand an accepted notification to the messaging send core, or fail it with the delivery
    rule that stops it (never billed: a refused send writes no usage record). Limits of the
    business (tier, paused marketing) raise NotificationError: the caller decides whether that
    refuses the request (single send) or fails the notification (batch)."""
    from customers.selectors import customer_has_muted_marketing
    from messaging.services import MessagingError, message_send_business_text, message_send_template

    customer = Customer.objects.filter(phone_number=notification.to, verified_at__isnull=False).first()
    if customer is None:
        return _fail(notification, "not_a_customer", _("This number does not belong to a Parley customer."))
    if notification.category == Template.Category.MARKETING and customer_has_muted_marketing(
        customer_id=customer.pk, business_id=business.pk
    ):
        return _fail(notification, "muted_marketing", _("The customer muted marketing messages from your business."))
    if notification.category != "service":
        limits.tier_check(business=business, customer_id=customer.pk)
    if notification.category == Template.Category.MARKETING:
        limits.marketing_check(business=business)
    try:
        if notification.template is None:
            # Free text is a service reply: the writer refuses it outside the 24-hour window.
            result = message_send_business_text(
                business=business,
                customer=customer,
                body=notification.text,
                author_key=f"api:{notification.api_key_id or 0}",
                client_msg_id=f"n{notification.pk}",
                attachment_id=media_id,
                interactive=interactive,
            )
        else:
            # The template's buttons travel as real buttons (rich messages, issue 13).
            result = message_send_template(
                business=business,
                customer=customer,
                template_name=notification.template_name,
                body=template_render(
                    template=notification.template, parameters=notification.parameters, buttons_as_text=False
                ),
                category=notification.category,
                author_key=f"api:{notification.api_key_id or 0}",
                client_msg_id=f"n{notification.pk}",
                attachment_id=media_id,
                interactive=interactive or template_interactive(notification.template),
            )
    except MessagingError as error:
        return _fail(notification, error.code, error.message)
    _priced(notification, result)
    notification.message = result.message
    notification.status = Notification.Status.SENT
    notification.sent_at = timezone.now()
    notification.save(update_fields=["price", "charged_per", "message", "status", "sent_at"])
    return notification


def _priced(notification: Notification, result: Any) -> None:
    """The price this message was charged, from the send core's outcome (a conversation is paid
    by the message that opened it; per message, each template message pays its own)."""
    charge = result.charge
    notification.price = charge.price if charge is not None else Decimal(0)
    notification.charged_per = charge.record.unit if charge is not None and charge.record is not None else ""


def notification_send(*, business: Business, api_key: ApiKey | None, request: SendRequest) -> Notification:
    """Send one message now (the API's single send): accepted, then sent or failed."""
    limits.throughput_check(business=business)
    with transaction.atomic():
        notification = _accept(api_key, request)
        return notification_deliver(
            business=business, notification=notification, media_id=request.media_id, interactive=request.interactive
        )


def _accept(api_key: ApiKey | None, request: SendRequest, batch_id: Any = None) -> Notification:
    template = request.template
    return Notification.objects.create(
        api_key=api_key,
        to=request.to,
        template=template,
        template_name=template.name if template else "",
        category=template.category if template else "service",
        parameters=request.parameters,
        text=request.text,
        batch_id=batch_id,
    )


MAX_BATCH = 1000
# Notifications per delivery job (and per send-core transaction): bigger spreads each group's
# fixed cost thinner, smaller lets the first customers see theirs sooner (bench/notify.py).
BATCH_CHUNK = int(os.environ.get("PARLEY_NOTIFY_CHUNK", "100"))
DELIVER_JOB = "notifications.deliver"


@dataclass(frozen=True)
class BatchAccepted:
    batch_id: uuid.UUID
    notifications: list[AcceptedRecipient]


@dataclass(frozen=True)
class AcceptedRecipient:
    pk: int  # the notification's id: GET messages/<id>
    to: str


def notifications_accept_batch(
    *, business: Business, api_key: ApiKey | None, template: Any, language: Any, recipients: Any
) -> BatchAccepted:
    """Accept up to 1,000 recipients of one approved template at once; background jobs (which
    carry the schema name) deliver them. Every recipient is checked first: one bad entry refuses
    the batch with the index of each problem, so nothing is half-accepted."""

    if not isinstance(recipients, list) or not recipients:
        raise _invalid("recipients", _("Give at least one recipient."))
    if len(recipients) > MAX_BATCH:
        raise NotificationError(
            ErrorCode.BATCH_TOO_LARGE, _("At most %(max)d recipients per batch.") % {"max": MAX_BATCH}
        )
    found = _approved_template(template, language)
    wanted = found.placeholders
    known = _known_numbers(recipients)
    requests: list[SendRequest] = []
    errors: dict[str, dict[str, str]] = {}
    for index, recipient in enumerate(recipients):
        try:
            if not isinstance(recipient, dict):
                raise _invalid("recipients", _("Each recipient is an object: to, parameters."))
            to = recipient.get("to")
            requests.append(
                SendRequest(
                    to if to in known else _phone(to),
                    found,
                    _parameters(found, recipient.get("parameters"), wanted),
                    "",
                )
            )
        except NotificationError as error:
            errors[str(index)] = {"code": str(error.code), "message": error.message}
    if errors:
        raise NotificationError(ErrorCode.INVALID, _("Some recipients are not valid."), errors=errors)
    batch_id = uuid.uuid4()
    with transaction.atomic():
        ids = _insert_accepted(api_key, found, requests, batch_id)
        # Same transaction as the rows: an accepted notification always has its delivery queued.
        # Every chunk's job in one statement.
        defer_atomic(
            DELIVER_JOB,
            [
                ({"schema_name": business.schema_name, "notification_ids": ids[start : start + BATCH_CHUNK]}, None)
                for start in range(0, len(ids), BATCH_CHUNK)
            ],
        )
    return BatchAccepted(batch_id, [AcceptedRecipient(pk, r.to) for pk, r in zip(ids, requests, strict=True)])


# What `normalise_phone` returns: "+", a country code, at most 15 digits in all.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _known_numbers(recipients: list[Any]) -> set[str]:
    """Recipients' numbers written exactly as a verified Parley customer's, in one query: stored
    numbers went through `normalise_phone` when they were verified, so these need not be parsed
    again (phonenumbers takes ~60 µs a number, a third of a batch's accept time). Any other
    number is parsed and checked as before."""
    candidates = {
        r["to"] for r in recipients if isinstance(r, dict) and isinstance(r.get("to"), str) and E164.fullmatch(r["to"])
    }
    if not candidates:
        return set()
    return set(
        Customer.objects.filter(phone_number__in=candidates, verified_at__isnull=False).values_list(
            "phone_number", flat=True
        )
    )


def _insert_accepted(
    api_key: ApiKey | None, template: Template, requests: list[SendRequest], batch_id: Any
) -> list[int]:
    """Up to 1,000 accepted notifications in one INSERT over arrays (what bulk_create would do,
    without building and preparing 1,000 model instances field by field: most of a batch's
    accept time). Ids come back in the order of `requests`."""
    table = Notification._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {table} (api_key_id, "to", template_id, template_name, category, parameters, text, '
            "status, failure_code, failure_reason, price, currency, charged_per, batch_id, created_at) "
            "SELECT %s, r.phone, %s, %s, %s, r.parameters, '', %s, '', '', 0, 'EUR', '', %s, %s "
            "FROM unnest(%s::varchar[], %s::jsonb[]) WITH ORDINALITY AS r(phone, parameters, n) ORDER BY r.n "
            "RETURNING id",
            [
                api_key.pk if api_key is not None else None,
                template.pk,
                template.name,
                template.category,
                Notification.Status.ACCEPTED,
                batch_id,
                timezone.now(),
                [r.to for r in requests],
                [json.dumps(r.parameters) for r in requests],
            ],
        )
        # Rows are inserted in ORDER BY order and take their ids from the sequence in that order.
        return sorted(row[0] for row in cursor.fetchall())


def notifications_deliver_queued(*, business: Business, notification_ids: list[int]) -> int:
    """The batch job's work (in the business's schema): the still-accepted notifications of the
    chunk go through the delivery rules and limits, then the survivors are written by the send
    core's writer in one transaction (`do_send_messages`); each refused one fails with its
    reason. Paced to the business's throughput limit."""
    done = 0
    # Read once per job, for the pacing, the throughput and the tier checks of every chunk.
    configured = sending_limits(business=business)
    step = max(1, min(configured[0], BATCH_CHUNK))
    for start in range(0, len(notification_ids), step):
        chunk = notification_ids[start : start + step]
        while limits.throughput_take(business=business, count=len(chunk), limits=configured) is not None:
            time.sleep(max(0.01, 1 - (time.time() % 1)))  # the next second's allowance
        done += _deliver_chunk(business, chunk, configured)
    return done


def _deliver_chunk(business: Business, notification_ids: list[int], configured: limits.Limits) -> int:
    from customers.models import MarketingMute
    from messaging.errors import MessagingError
    from messaging.sending import SendResult, check_template_send, do_send_messages

    with transaction.atomic():
        pending = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=notification_ids, status=Notification.Status.ACCEPTED)
            .order_by("pk")
        )
        if not pending:
            return 0  # delivered by an earlier attempt of this job
        # A batch's chunk shares one template: read once, not joined and built per row.
        templates = Template.objects.in_bulk({n.template_id for n in pending if n.template_id is not None})
        template_field = Notification._meta.get_field("template")
        for notification in pending:
            template_field.set_cached_value(notification, templates.get(notification.template_id))
        customers = {
            c.phone_number: c
            for c in Customer.objects.filter(phone_number__in={n.to for n in pending}, verified_at__isnull=False)
        }
        # Mutes and the quality rating only stop marketing: not read for a chunk without any.
        marketing_chunk = any(n.category == Template.Category.MARKETING for n in pending)
        muted = (
            set(
                MarketingMute.objects.filter(
                    business_id=business.pk, customer_id__in=[c.pk for c in customers.values()]
                ).values_list("customer_id", flat=True)
            )
            if marketing_chunk
            else set()
        )
        allowance = limits.TierAllowance.now(
            business=business, customer_ids=[c.pk for c in customers.values()], limits=configured
        )
        quality = limits.quality_rating_cached(business=business).rating if marketing_chunk else "green"
        ready: list[tuple[Notification, Any]] = []
        for notification in pending:
            customer = customers.get(notification.to)
            marketing = notification.category == Template.Category.MARKETING
            if customer is None:
                _failed(notification, "not_a_customer", _("This number does not belong to a Parley customer."))
            elif marketing and customer.pk in muted:
                _failed(notification, "muted_marketing", _("The customer muted marketing messages from your business."))
            elif marketing and quality == "red":
                _failed(
                    notification, ErrorCode.TEMPLATE_PAUSED, _("Marketing templates are paused (quality rating red).")
                )
            elif not allowance.take(customer.pk):
                _failed(notification, ErrorCode.TIER_LIMIT, allowance.message())
            else:
                assert notification.template is not None
                request = check_template_send(
                    customer=customer,
                    template_name=notification.template_name,
                    body=template_render(template=notification.template, parameters=notification.parameters),
                    category=notification.category,
                    author_key=f"api:{notification.api_key_id or 0}",
                    client_msg_id=f"n{notification.pk}",
                )
                ready.append((notification, request))
        outcomes = do_send_messages(business=business, requests=[r for _n, r in ready]) if ready else []
        now = timezone.now()
        for (notification, _request), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, MessagingError):
                _failed(notification, str(outcome.code), outcome.message)
            elif isinstance(outcome, SendResult):
                notification.message = outcome.message
                notification.status = Notification.Status.SENT
                notification.sent_at = now
                _priced(notification, outcome)
        # Every outcome of the chunk in one statement.
        _save_outcomes(pending)
    return len(pending)
