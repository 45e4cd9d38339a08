"""One-time codes, for business numbers and customer sign-in alike.

Rules (DESIGN, after NIST SP 800-63B, OWASP ASVS and Twilio Verify): 6 digits from a CSPRNG,
stored only as a keyed hash, valid 10 minutes, single use, at most 5 checks per code, at most 5
sends per number per hour and a per-IP limit, constant-time comparison, and answers that do not
depend on whether anyone already owns the number.

All state is in PostgreSQL: several server processes must agree on the limits, so counting
happens under a transaction-scoped advisory lock per number and per IP address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from verification.jobs import seal, send_sms
from verification.models import PhoneChallenge
from verification.phone import phone_masked, sms_destination_check

logger = logging.getLogger("parley.verification")

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_CHECKS_PER_CODE = 5
MAX_SENDS_PER_NUMBER_PER_HOUR = 5
MAX_SENDS_PER_IP_PER_HOUR = 20
RATE_WINDOW = timedelta(hours=1)

# One message for every failed check (wrong, expired, used, too many tries, never sent), so the
# answer reveals nothing about the number or the code's state.
CODE_REJECTED_MESSAGE = _(
    "That code didn't work. Codes are valid for 10 minutes and allow 5 tries; request a new one if needed."
)


class OtpRateLimited(Exception):
    """Too many codes were requested for this number or from this address."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class OtpSent:
    challenge_id: int
    phone_number: str
    expires_at: object


def _hash_code(*, purpose: str, subject: str, phone_number: str, salt: str, code: str) -> str:
    key = settings.OTP_HASH_KEY.encode()
    message = f"{purpose}|{subject}|{phone_number}|{salt}|{code}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _advisory_lock(name: str) -> None:
    """Serialise concurrent sends for one key across every process, until the transaction ends."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def rate_limit_address(ip_address: str | None) -> str | None:
    """The address the per-IP limit counts. IPv4 as it is; IPv6 by its /64, since one subscriber
    (or one attacker) is handed a whole /64 and could otherwise send from 2**64 addresses;
    IPv4-mapped IPv6 as the IPv4 address. Anything that is not an address counts as none."""
    if not ip_address:
        return None
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)


def generate_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def otp_send(
    *,
    purpose: str,
    phone_number: str,
    subject: str = "",
    ip_address: str | None = None,
    message: str,
) -> OtpSent:
    """Create a code for an E.164 number and queue the SMS in the same transaction.

    `message` is the SMS text with a `{code}` placeholder. Raises OtpRateLimited when the number
    or the address has had too many codes in the last hour.
    """
    # The forms check this first, with a field error; here it guards every other caller.
    sms_destination_check(phone_number)
    now = timezone.now()
    since = now - RATE_WINDOW
    ip_address = rate_limit_address(ip_address)
    with transaction.atomic():
        # Always number first, then address: one order everywhere, so no deadlocks.
        _advisory_lock(f"otp:number:{phone_number}")
        if ip_address:
            _advisory_lock(f"otp:ip:{ip_address}")
        sent_to_number = PhoneChallenge.objects.filter(phone_number=phone_number, created_at__gte=since).count()
        if sent_to_number >= MAX_SENDS_PER_NUMBER_PER_HOUR:
            logger.warning("code refused: number limit reached (%s)", phone_masked(phone_number))
            raise OtpRateLimited(
                str(_("Too many codes were requested for this number. Please wait an hour and try again."))
            )
        if ip_address:
            sent_from_ip = PhoneChallenge.objects.filter(ip_address=ip_address, created_at__gte=since).count()
            if sent_from_ip >= MAX_SENDS_PER_IP_PER_HOUR:
                logger.warning("code refused: address limit reached (%s)", ip_address)
                raise OtpRateLimited(
                    str(_("Too many codes were requested from your network. Please wait an hour and try again."))
                )
        # Only the newest code for a number and purpose works.
        PhoneChallenge.objects.filter(
            purpose=purpose,
            subject=subject,
            phone_number=phone_number,
            used_at__isnull=True,
            superseded_at__isnull=True,
        ).update(superseded_at=now)
        code = generate_code()
        salt = secrets.token_hex(16)
        challenge = PhoneChallenge.objects.create(
            purpose=purpose,
            subject=subject,
            phone_number=phone_number,
            salt=salt,
            code_hash=_hash_code(purpose=purpose, subject=subject, phone_number=phone_number, salt=salt, code=code),
            ip_address=ip_address,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        # Deferred through Django's connection, so the job exists exactly when the code does.
        # The text is sealed: the job queue table must not hold a usable code in clear.
        send_sms.defer(to=phone_number, sealed_body=seal(message.format(code=code)), reference=f"otp:{challenge.pk}")
    logger.info("code queued for %s (%s)", phone_masked(phone_number), purpose)
    return OtpSent(challenge_id=challenge.pk, phone_number=phone_number, expires_at=challenge.expires_at)


def otp_check(*, purpose: str, phone_number: str, code: str, subject: str = "") -> bool:
    """True exactly once for the right code within 10 minutes and 5 checks; False otherwise.

    Every check of a live code counts, right or wrong, so the 6th is refused even when correct.
    """
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    now = timezone.now()
    with transaction.atomic():
        challenge = (
            PhoneChallenge.objects.select_for_update()
            .filter(
                purpose=purpose,
                subject=subject,
                phone_number=phone_number,
                used_at__isnull=True,
                superseded_at__isnull=True,
            )
            .order_by("-created_at")
            .first()
        )
        if challenge is None or challenge.expires_at <= now or challenge.checks >= MAX_CHECKS_PER_CODE:
            # Still compare once, so a missing code costs the same time as a wrong one.
            hmac.compare_digest(
                _hash_code(purpose=purpose, subject=subject, phone_number=phone_number, salt="", code=code), "0" * 64
            )
            return False
        challenge.checks += 1
        expected = _hash_code(
            purpose=purpose, subject=subject, phone_number=phone_number, salt=challenge.salt, code=code
        )
        ok = len(code) == CODE_DIGITS and hmac.compare_digest(expected, challenge.code_hash)
        if ok:
            challenge.used_at = now
        challenge.save(update_fields=["checks", "used_at"])
    if not ok:
        logger.info("wrong code for %s (%s), check %d", phone_masked(phone_number), purpose, challenge.checks)
    return ok
