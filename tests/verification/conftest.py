"""Helpers for the verification tests: fresh phone numbers, complete profiles, TOTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.files.base import ContentFile

from accounts.models import User
from tenancy.models import Business
from tests.conftest import fresh_mobile  # noqa: F401  (the verification tests import it from here)
from tests.jobs import run_queued_jobs

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def enable_totp(user: User) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def complete_profile(business: Business, *, verified_phone: str | None = "+493012345678") -> Business:
    from django.utils import timezone

    business.description = "We bake bread and cakes every morning in Berlin-Mitte since 1950."
    business.category = Business.Category.FOOD
    business.website = "https://example.com"
    business.email = "hello@example.com"
    business.address = "Hauptstraße 1, 10115 Berlin"
    if not business.logo:
        business.logo.save("logo.png", ContentFile(PNG), save=False)
    if verified_phone:
        business.phone_number = verified_phone
        business.phone_verified_at = timezone.now()
    business.save()
    return business


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PARLEY_SMS_BACKEND = "outbox"
    yield


def run_sms_jobs() -> None:
    """Run the queued SMS jobs with a real worker (tests.jobs runs it in its own thread)."""
    run_queued_jobs(queues=["sms"])
