"""Sending SMS, behind one module, chosen by `settings.PARLEY_SMS_BACKEND` like Django's email
backends: "outbox" (development and tests: stored, shown at /dev/outbox/ and logged),
"console" (printed) or "twilio" (Twilio's REST API at settings.TWILIO_API_BASE).

Call `send_sms_now` only from the background job (verification.jobs.send_sms); pages queue.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO

import httpx
from django.conf import settings

from verification.phone import phone_masked

logger = logging.getLogger("parley.sms")


class SmsTemporaryError(Exception):
    """The provider may accept the message later (network trouble, 5xx, 429): retry."""


class SmsPermanentError(Exception):
    """The provider refused the message for good (bad number, bad credentials): do not retry."""


class SmsBackend(Protocol):
    def send(self, *, to: str, body: str) -> str:
        """Send one message; return the provider's id for it."""
        ...


class OutboxBackend:
    def send(self, *, to: str, body: str) -> str:
        from verification.models import SmsMessage

        message = SmsMessage.objects.create(to=to, body=body)
        # Development only: the log is where a developer without the outbox page reads codes.
        logger.info("SMS (outbox #%s) to %s: %s", message.pk, to, body)
        return f"outbox-{message.pk}"


class ConsoleBackend:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, *, to: str, body: str) -> str:
        self.stream.write(f"--- SMS to {to} ---\n{body}\n")
        self.stream.flush()
        return "console"


class TwilioBackend:
    """Twilio Programmable Messaging: POST /2010-04-01/Accounts/{sid}/Messages.json."""

    def __init__(self, *, client: httpx.Client | None = None) -> None:
        self.account_sid = settings.TWILIO_ACCOUNT_SID
        self.auth_token = settings.TWILIO_AUTH_TOKEN
        self.from_number = settings.TWILIO_FROM_NUMBER
        self.base = settings.TWILIO_API_BASE.rstrip("/")
        self.client = client

    def send(self, *, to: str, body: str) -> str:
        if not (self.account_sid and self.auth_token and self.from_number):
            raise SmsPermanentError("Twilio is not configured: set TWILIO_ACCOUNT_SID, _AUTH_TOKEN, _FROM_NUMBER")
        url = f"{self.base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        data = {"To": to, "From": self.from_number, "Body": body}
        try:
            if self.client is not None:
                response = self.client.post(url, data=data, auth=(self.account_sid, self.auth_token))
            else:
                with httpx.Client(timeout=10.0) as client:
                    response = client.post(url, data=data, auth=(self.account_sid, self.auth_token))
        except httpx.HTTPError as error:
            raise SmsTemporaryError(f"Twilio unreachable: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise SmsTemporaryError(f"Twilio answered {response.status_code}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", "")
            except ValueError:
                detail = response.text[:200]
            raise SmsPermanentError(f"Twilio refused the message ({response.status_code}): {detail}")
        sid = str(response.json().get("sid", ""))
        logger.info("SMS to %s accepted by Twilio as %s", phone_masked(to), sid)
        return sid


BACKENDS = {"outbox": OutboxBackend, "console": ConsoleBackend, "twilio": TwilioBackend}


def get_backend() -> SmsBackend:
    name = settings.PARLEY_SMS_BACKEND
    try:
        return BACKENDS[name]()  # type: ignore[no-any-return]
    except KeyError:
        raise SmsPermanentError(f"Unknown PARLEY_SMS_BACKEND {name!r}; use one of {sorted(BACKENDS)}") from None


def send_sms_now(*, to: str, body: str) -> str:
    return get_backend().send(to=to, body=body)


# --- sending each text at most once ---------------------------------------------------------
# A job can be run again after its worker died (config.jobs.retry_stalled_jobs). SMS providers
# take no idempotency key, so the attempt is recorded (committed) before the provider is called:
# a retry that finds an attempt still marked `sending` cannot know whether the text went out,
# and does not send it again. A lost code costs the customer a tap on "send a new code"; a
# doubled one costs money and looks like SMS pumping.


def sms_dispatch_begin(*, reference: str) -> bool:
    """True when this attempt may call the provider (recorded as `sending`); False when the text
    was sent, refused for good, or an earlier attempt's outcome is unknown."""
    from django.db import transaction
    from django.utils import timezone

    from verification.models import SmsDispatch

    with transaction.atomic():
        dispatch, created = SmsDispatch.objects.select_for_update().get_or_create(
            reference=reference, defaults={"started_at": timezone.now(), "attempts": 1}
        )
        if created:
            return True
        if dispatch.status == SmsDispatch.Status.SENDING:
            dispatch.status = SmsDispatch.Status.UNKNOWN
            dispatch.finished_at = timezone.now()
            dispatch.save(update_fields=["status", "finished_at"])
            logger.warning("SMS %s not sent again: an earlier attempt stopped mid-call (outcome unknown)", reference)
            return False
        if dispatch.status != SmsDispatch.Status.RETRY:
            return False
        dispatch.status = SmsDispatch.Status.SENDING
        dispatch.attempts += 1
        dispatch.started_at = timezone.now()
        dispatch.save(update_fields=["status", "attempts", "started_at"])
        return True


def sms_dispatch_end(*, reference: str, status: str, provider_id: str = "") -> None:
    from django.utils import timezone

    from verification.models import SmsDispatch

    SmsDispatch.objects.filter(reference=reference).update(
        status=status, provider_id=provider_id[:64], finished_at=timezone.now()
    )
