"""Webhook endpoints Parley disabled, on the dashboard home (registered in apps.py)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tenants.utils import schema_context

from notifications.selectors import webhook_endpoints_disabled
from tenancy.models import Business
from tenancy.notices import DashboardNotice


def webhook_notices(business: Business) -> list[DashboardNotice]:
    with schema_context(business.schema_name):
        disabled = webhook_endpoints_disabled(limit=3)
    return [
        DashboardNotice(
            title=_("Webhook %(url)s was disabled") % {"url": url},
            body=reason,
            level="warning",
            url=reverse("developers") + "#webhooks",
            link_text=gettext_lazy("Open the API page"),
        )
        for url, reason in disabled
    ]
