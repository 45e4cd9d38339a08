"""Outgoing webhooks: endpoints per business, deliveries signed with HMAC-SHA256 over the
timestamp and the body (`Parley-Signature: t=<unix seconds>,v1=<hex>`), retried with exponential
backoff for up to 3 days by Procrastinate jobs that carry the schema name. An endpoint whose
deliveries keep giving up is disabled and its owner told.

Verifying a delivery (receiver side):

    import hashlib, hmac, time

    def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp, signature = parts["t"], parts["v1"]
        if abs(time.time() - int(timestamp)) > tolerance:
            return False  # too old: a replay
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from audit.services import audit_record
from config.jobs import defer_atomic
from messaging.events import ConversationShape, MessageShape
from messaging.models import Event
from notifications.errors import ErrorCode, NotificationError
from notifications.models import WebhookCursor, WebhookDelivery, WebhookEndpoint
from notifications.selectors import require_owner
from tenancy.models import Business

logger = logging.getLogger("parley.notifications")

SEND_JOB = "notifications.webhook_send"
GIVE_UP_AFTER = timedelta(days=3)
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=6)
TIMEOUT_SECONDS = 10
DISABLE_AFTER_FAILURES = 3  # deliveries that gave up (3 days each) in a row
DISPATCH_LIMIT = 1000
# Shown in the delivery log (stored, like the other errors: "HTTP 500").
UNKNOWN_OUTCOME = "worker stopped during the attempt; not sent again (the endpoint may have it)"

# Stream events → webhook event types.
STREAM_TYPES = {"message.status": "message.status", "conversation.updated": "conversation.updated"}


# --- declared shapes of the webhook bodies (tests/notifications/test_webhook_shapes.py checks
# every body the services queue against them; the README documents them). `data` is the stream
# event without its id and type (the body's `event_id` is that id), or the template decision.


class MessageReceivedData(TypedDict):
    conversation_id: int
    message: MessageShape


class MessageStatusData(TypedDict):
    conversation_id: int
    direction: Literal["in", "out"]
    up_to: int
    status: Literal["delivered", "read"]


class ConversationUpdatedData(TypedDict):
    conversation: ConversationShape


class TemplateDecisionShape(TypedDict):
    id: int
    name: str
    language: str
    status: Literal["pending", "approved", "rejected", "paused"]
    reason: str


class TemplateStatusData(TypedDict):
    template: TemplateDecisionShape


class _Body(TypedDict):
    id: str  # this delivery's own id (a UUID): receivers dedupe on it
    created_at: str
    business: str  # the business's slug
    event_id: int | None  # the stream event it came from; null for template decisions


class MessageReceivedBody(_Body):
    type: Literal["message.received"]
    data: MessageReceivedData


class MessageStatusBody(_Body):
    type: Literal["message.status"]
    data: MessageStatusData


class ConversationUpdatedBody(_Body):
    type: Literal["conversation.updated"]
    data: ConversationUpdatedData


class TemplateStatusBody(_Body):
    type: Literal["template.status"]
    data: TemplateStatusData


WEBHOOK_SHAPES: dict[str, type] = {
    "message.received": MessageReceivedBody,
    "message.status": MessageStatusBody,
    "conversation.updated": ConversationUpdatedBody,
    "template.status": TemplateStatusBody,
}


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … doubling, at most 6 hours between attempts."""
    return min(RETRY_CAP, RETRY_BASE * (2 ** max(0, attempts - 1)))


# --- endpoints ------------------------------------------------------------------------------


def _private_destination(host: str) -> bool:
    """True if the host is or resolves to a loopback, private, link-local or reserved address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: the delivery will fail and be retried
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            return True
    return False


def destination_check(url: str) -> None:
    """Refuse URLs that would make Parley call into its own network (SSRF), unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotificationError(ErrorCode.INVALID, _("Give an http or https URL."), field="url")
    if not settings.PARLEY_WEBHOOKS_ALLOW_PRIVATE and _private_destination(parts.hostname):
        raise NotificationError(
            ErrorCode.INVALID,
            _("Webhooks cannot go to private or loopback addresses."),
            field="url",
        )


def webhook_endpoint_create(*, business: Business, actor: User, url: Any, event_types: Any) -> WebhookEndpoint:
    require_owner(business, actor, _("Only the business's owner can manage webhooks."))
    if not isinstance(url, str) or len(url) > 500:
        raise NotificationError(ErrorCode.INVALID, _("Give an http or https URL."), field="url")
    url = url.strip()
    destination_check(url)
    if (
        not isinstance(event_types, list | tuple)
        or not event_types
        or not set(event_types) <= set(WebhookEndpoint.EventType.values)
    ):
        raise NotificationError(ErrorCode.INVALID, _("Choose at least one event type."), field="event_types")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            url=url, secret=f"whsec_{secrets.token_urlsafe(32)}", event_types=sorted(set(event_types))
        )
        audit_record(action="webhook.create", actor=actor, business=business, target=url)
    return endpoint


def webhook_endpoint_delete(*, business: Business, actor: User, endpoint_id: int) -> None:
    require_owner(business, actor, _("Only the business's owner can manage webhooks."))
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
        if endpoint is None:
            raise NotificationError(ErrorCode.NOT_FOUND, _("This webhook does not exist."))
        audit_record(action="webhook.delete", actor=actor, business=business, target=endpoint.url)
        endpoint.delete()


# --- deliveries -----------------------------------------------------------------------------


def _defer(business: Business, delivery: WebhookDelivery, at: datetime | None = None) -> None:
    # In the caller's transaction, also inside a job (the stream dispatcher, a retry): a delivery
    # that rolls back sends nothing, and a committed one always has its job.
    defer_atomic(
        SEND_JOB,
        [({"schema_name": business.schema_name, "delivery_id": delivery.pk}, None)],
        **({"schedule_at": at} if at else {}),
    )


def webhook_enqueue(
    *,
    business: Business,
    event_type: str,
    data: dict[str, Any],
    event_id: int | None = None,
    active: list[WebhookEndpoint] | None = None,
) -> int:
    """Queue one delivery per active endpoint that wants this event type (in the caller's
    transaction, so an event that rolls back sends nothing). `active`: the active endpoints,
    when the caller enqueues many events and has read them once already."""
    if active is None:
        active = list(WebhookEndpoint.objects.filter(is_active=True))
    endpoints = [e for e in active if event_type in e.event_types]
    now = timezone.now()
    for endpoint in endpoints:
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": event_type,
                "created_at": now,
                "business": business.slug,
                "event_id": event_id,
                "data": data,
            },
            cls=DjangoJSONEncoder,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type=event_type, body=body, created_at=now)
        _defer(business, delivery)
    return len(endpoints)


def webhook_dispatch_stream(*, business: Business) -> int:
    """Turn the business's new stream events into deliveries, in id order, exactly once (the
    cursor row is locked and moved in the same transaction as the deliveries it creates)."""
    active = list(WebhookEndpoint.objects.filter(is_active=True))
    if not active:
        return 0
    queued = 0
    with transaction.atomic():
        cursor, _created = WebhookCursor.objects.select_for_update().get_or_create(pk=1)
        rows = list(
            Event.objects.filter(id__gt=cursor.last_event_id)
            .order_by("id")
            .values_list("id", "type", "frame")[:DISPATCH_LIMIT]
        )
        for event_id, type_, frame in rows:
            data = json.loads(frame)
            data.pop("id", None)
            data.pop("type", None)
            if type_ == "message.created":
                message = data.get("message", {})
                if message.get("direction") == "in":
                    queued += webhook_enqueue(
                        business=business, event_type="message.received", data=data, event_id=event_id, active=active
                    )
            elif type_ in STREAM_TYPES:
                queued += webhook_enqueue(
                    business=business, event_type=STREAM_TYPES[type_], data=data, event_id=event_id, active=active
                )
        if rows:
            cursor.last_event_id = rows[-1][0]
            cursor.save(update_fields=["last_event_id"])
    return queued


def webhook_delivery_attempt(*, business: Business, delivery_id: int) -> str:
    """POST the delivery once; on failure schedule the next attempt or give up after 3 days.

    Three short steps, none of them spanning the network: claim the delivery (a committed
    lease), POST it with no transaction open, record the outcome. A slow receiver holds a
    worker, never a lock or a database transaction that other deliveries would wait for.
    """
    claim = _claim(business, delivery_id)
    if isinstance(claim, str):
        return claim
    status_code, error = _post(claim)
    return _record(business, claim, status_code=status_code, error=error)


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    attempt: int
    url: str
    secret: str
    body: bytes
    at: datetime


CLAIM_MARGIN = timedelta(seconds=30)


def _claim(business: Business, delivery_id: int) -> _Claim | str:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
            return "skipped"
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            # Another attempt is sending it right now, or its worker died and the lease has not
            # run out yet (a job retried after a crash): look again when it has.
            _defer(business, delivery, delivery.claimed_until + timedelta(seconds=1))
            return "in flight"
        if delivery.claimed_until is not None:
            # The lease ran out unrecorded: the attempt's worker died mid-POST (its job was
            # retried by config.jobs.retry_stalled_jobs) and the endpoint may have it. Not sent
            # again under the same Parley-Delivery id; the log says why, the owner can resend.
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
            delivery.last_error = UNKNOWN_OUTCOME
            delivery.claimed_until = None
            delivery.save(update_fields=["status", "next_attempt_at", "last_error", "claimed_until"])
            logger.warning("webhook delivery %s not sent again: an attempt stopped mid-POST", delivery.pk)
            return "unknown"
        endpoint = delivery.endpoint
        if not endpoint.is_active:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.last_error = "endpoint disabled"
            delivery.save(update_fields=["status", "last_error"])
            return "disabled"
        delivery.attempts += 1
        delivery.claimed_until = now + timedelta(seconds=TIMEOUT_SECONDS) + CLAIM_MARGIN
        delivery.save(update_fields=["attempts", "claimed_until"])
    return _Claim(delivery.pk, delivery.attempts, endpoint.url, endpoint.secret, delivery.body.encode(), now)


def _post(claim: _Claim) -> tuple[int | None, str]:
    """The HTTP request, outside any transaction of ours. Returns (status code, error)."""
    try:
        destination_check(claim.url)
        response = httpx.post(
            claim.url,
            content=claim.body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Parley-Webhooks/1",
                "Parley-Signature": signature_header(
                    secret=claim.secret, body=claim.body, timestamp=int(claim.at.timestamp())
                ),
                "Parley-Delivery": str(claim.delivery_id),
            },
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except NotificationError as refused:
        return None, refused.message
    except httpx.HTTPError as failure:
        return None, f"{type(failure).__name__}: {failure}"[:300]
    if not 200 <= response.status_code < 300:
        return response.status_code, f"HTTP {response.status_code}"
    return response.status_code, ""


def _record(business: Business, claim: _Claim, *, status_code: int | None, error: str) -> str:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=claim.delivery_id)
            .first()
        )
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING or delivery.attempts != claim.attempt:
            return "superseded"  # deleted, or the lease ran out and a later attempt took over
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        delivery.claimed_until = None
        delivery.last_status_code = status_code
        delivery.last_error = error[:300]
        if not error:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = claim.at
            delivery.next_attempt_at = None
            if endpoint.consecutive_failures:
                endpoint.consecutive_failures = 0
                endpoint.save(update_fields=["consecutive_failures"])
            outcome = "delivered"
        else:
            next_at = claim.at + retry_delay(delivery.attempts)
            if next_at - delivery.created_at > GIVE_UP_AFTER:
                delivery.status = WebhookDelivery.Status.FAILED
                delivery.next_attempt_at = None
                _endpoint_failed(business, endpoint)
                outcome = "failed"
            else:
                delivery.next_attempt_at = next_at
                _defer(business, delivery, next_at)
                outcome = "retry"
        delivery.save()
    return outcome


def _endpoint_failed(business: Business, endpoint: WebhookEndpoint) -> None:
    endpoint.consecutive_failures += 1
    if endpoint.consecutive_failures < DISABLE_AFTER_FAILURES:
        endpoint.save(update_fields=["consecutive_failures"])
        return
    endpoint.is_active = False
    endpoint.disabled_reason = _("Disabled after %(n)d deliveries failed for 3 days each.") % {
        "n": endpoint.consecutive_failures
    }
    endpoint.save(update_fields=["consecutive_failures", "is_active", "disabled_reason"])
    audit_record(action="webhook.disabled", business=business, target=endpoint.url)
    owners = list(
        Membership.objects.filter(business_id=business.pk, role=Membership.Role.OWNER).values_list(
            "user__email", flat=True
        )
    )
    subject = _("Parley: your webhook %(url)s was disabled") % {"url": endpoint.url}
    text = _(
        "Deliveries to %(url)s kept failing, so Parley stopped sending to it. Fix the endpoint, "
        "then add it again on your dashboard's API page (%(page)s)."
    ) % {"url": endpoint.url, "page": business.absolute_url("/developers/")}

    def tell_owners() -> None:
        try:
            send_mail(subject, text, None, owners)
        except Exception:  # the dashboard notice still tells them
            logger.exception("mailing the owners of %s failed", business.schema_name)

    transaction.on_commit(tell_owners)


def webhook_delivery_resend(*, business: Business, actor: User, delivery_id: int) -> WebhookDelivery:
    """ "Send again" from the log: the same body, as a new delivery, now."""
    require_owner(business, actor, _("Only the business's owner can manage webhooks."))
    with transaction.atomic():
        old = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
        if old is None:
            raise NotificationError(ErrorCode.NOT_FOUND, _("This delivery does not exist."))
        delivery = WebhookDelivery.objects.create(
            endpoint=old.endpoint, event_type=old.event_type, body=old.body, created_at=timezone.now()
        )
        _defer(business, delivery)
    return delivery
