"""Verification's news on the dashboard home: the badge decisions (registered in apps.py)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from tenancy.models import Business
from tenancy.notices import DashboardNotice
from verification.selectors import business_notices


def badge_notices(business: Business) -> list[DashboardNotice]:
    url = reverse("verification")
    return [
        DashboardNotice(
            title=notice.shown_title,
            body=notice.shown_body,
            level=notice.level,
            url=url,
            link_text=_("Open verification"),
        )
        for notice in business_notices(business=business)
    ]
