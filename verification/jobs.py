"""Background jobs of the verification app (autodiscovered by procrastinate)."""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from procrastinate import RetryStrategy
from procrastinate.contrib.django import app

from verification.models import SmsDispatch
from verification.phone import phone_masked
from verification.sms import SmsTemporaryError, send_sms_now, sms_dispatch_begin, sms_dispatch_end

logger = logging.getLogger("parley.sms")

# A text older than this is useless: the code in it has expired.
SEAL_TTL_SECONDS = 15 * 60


def _fernet() -> Fernet:
    key = hashlib.sha256(b"parley-sms-seal:" + settings.OTP_HASH_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(body: str) -> str:
    """Encrypt an SMS text for the job queue, where job arguments outlive the job."""
    return _fernet().encrypt(body.encode()).decode()


def unseal(token: str) -> str | None:
    try:
        return _fernet().decrypt(token.encode(), ttl=SEAL_TTL_SECONDS).decode()
    except InvalidToken:
        return None


@app.task(
    name="verification.send_sms",
    queue="sms",
    retry=RetryStrategy(max_attempts=5, exponential_wait=2, retry_exceptions={SmsTemporaryError}),
)
def send_sms(*, to: str, sealed_body: str, reference: str = "") -> None:
    """`reference` names the text (e.g. `otp:<challenge id>`; by default the sealed text itself,
    unique per job): it is sent at most once."""
    reference = reference or "sealed:" + hashlib.sha256(sealed_body.encode()).hexdigest()[:48]
    body = unseal(sealed_body)
    if body is None:
        # Too old (or sealed with another key): the code inside can no longer be used.
        logger.warning("SMS %s to %s dropped: text expired before it could be sent", reference, phone_masked(to))
        return
    if not sms_dispatch_begin(reference=reference):
        return
    try:
        provider_id = send_sms_now(to=to, body=body)
    except SmsTemporaryError:
        sms_dispatch_end(reference=reference, status=SmsDispatch.Status.RETRY)  # not sent: the retry may
        raise
    except Exception:
        sms_dispatch_end(reference=reference, status=SmsDispatch.Status.FAILED)
        raise
    sms_dispatch_end(reference=reference, status=SmsDispatch.Status.SENT, provider_id=provider_id)
