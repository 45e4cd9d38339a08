"""Reads for the verification pages, scoped by business."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from allauth.mfa.models import Authenticator
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, User
from accounts.selectors import user_email_verified
from tenancy.models import Business
from verification.models import BadgeApplication, BusinessNotice, PhoneChallenge, SmsMessage

REAPPLY_AFTER = timedelta(days=30)


@dataclass(frozen=True)
class Check:
    key: str
    label: str | Promise
    done: bool


def profile_checklist(*, business: Business) -> list[Check]:
    """What a complete profile has; the badge needs every item."""
    return [
        Check("display_name", _("Display name"), bool(business.display_name.strip())),
        Check("description", _("Description (at least 30 characters)"), len(business.description.strip()) >= 30),
        Check("category", _("Category"), bool(business.category)),
        Check("website", _("Website"), bool(business.website)),
        Check("email", _("Contact email"), bool(business.email)),
        Check("address", _("Postal address"), bool(business.address.strip())),
        Check("logo", _("Logo"), bool(business.logo)),
    ]


def profile_completeness(*, business: Business) -> int:
    checks = profile_checklist(business=business)
    return round(100 * sum(c.done for c in checks) / len(checks))


def user_has_totp(*, user: User) -> bool:
    return Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.TOTP).exists()


def badge_requirements(*, business: Business, user: User) -> list[Check]:
    is_owner = Membership.objects.filter(user_id=user.pk, business=business, role=Membership.Role.OWNER).exists()
    return [
        Check("phone", _("a verified phone number"), bool(business.phone_number and business.phone_verified_at)),
        Check("profile", _("a complete profile"), all(c.done for c in profile_checklist(business=business))),
        Check("owner", _("applied for by an owner of the business"), is_owner),
        # Two-factor authentication can only be turned on once the account's email is confirmed.
        Check("email", _("a confirmed email address on your account"), user_email_verified(user=user)),
        Check("totp", _("two-factor authentication (authenticator app) on your account"), user_has_totp(user=user)),
    ]


def badge_current_application(*, business: Business) -> BadgeApplication | None:
    return BadgeApplication.objects.filter(business=business).order_by("-created_at", "-id").first()


def badge_reapply_date(*, business: Business) -> datetime | None:
    """When a rejected or revoked business may apply again (None: no waiting period)."""
    last = (
        BadgeApplication.objects.filter(
            business=business,
            status__in=[BadgeApplication.Status.REJECTED, BadgeApplication.Status.REVOKED],
            reviewed_at__isnull=False,
        )
        .order_by("-reviewed_at")
        .first()
    )
    if last is None or last.reviewed_at is None:
        return None
    return last.reviewed_at + REAPPLY_AFTER


def badge_application_open(*, application: BadgeApplication | None, reapply: datetime | None) -> bool:
    """Whether the owner may fill in the application now: nothing applied yet, a draft, or a
    rejected or revoked application whose 30-day wait is over."""
    if application is None or application.status == BadgeApplication.Status.DRAFT:
        return True
    return application.status in {BadgeApplication.Status.REJECTED, BadgeApplication.Status.REVOKED} and (
        reapply is None or reapply <= timezone.now()
    )


def business_subject(business: Business) -> str:
    """The OTP subject of a business's codes: a code sent for one business cannot verify another."""
    return f"business:{business.pk}"


def business_pending_phone(*, business: Business) -> str | None:
    """The number a code was last sent to for this business, while that code is still usable."""
    challenge = (
        PhoneChallenge.objects.filter(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE,
            subject=business_subject(business),
            used_at__isnull=True,
            superseded_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .order_by("-created_at")
        .first()
    )
    return challenge.phone_number if challenge else None


def business_notices(*, business: Business) -> QuerySet[BusinessNotice]:
    return BusinessNotice.objects.filter(business=business, dismissed_at__isnull=True).order_by("-created_at")[:5]


def outbox_recent(*, to: str = "", limit: int = 50) -> QuerySet[SmsMessage]:
    messages = SmsMessage.objects.all()
    if to:
        messages = messages.filter(to=to)
    return messages.order_by("-created_at", "-id")[:limit]
