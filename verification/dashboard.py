"""Verification's state on the dashboard Overview (see tenancy.sections)."""

from __future__ import annotations

from django.utils.translation import gettext

from accounts.models import User
from tenancy.models import Business
from verification.phone import phone_display


def verification_figures(*, business: Business, user: User) -> list[str]:
    phone = (
        gettext("Phone %(number)s verified") % {"number": phone_display(business.phone_number)}
        if business.phone_number and business.phone_verified_at
        else gettext("Phone number not verified yet")
    )
    return [phone, gettext("Badge: %(status)s") % {"status": business.get_badge_status_display()}]
