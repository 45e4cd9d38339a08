"""This month's billable figures on the dashboard Overview (see tenancy.sections)."""

from __future__ import annotations

from django.contrib.humanize.templatetags.humanize import intcomma
from django.template.defaultfilters import floatformat
from django.utils.translation import gettext, ngettext

from accounts.models import User
from billing.selectors import period_parse, usage_summary
from tenancy.models import Business


def billing_figures(*, business: Business, user: User) -> list[str]:
    summary = usage_summary(business=business, start=period_parse(None))
    return [
        ngettext(
            "%(n)s billable conversation this month",
            "%(n)s billable conversations this month",
            summary.conversations,
        )
        % {"n": intcomma(summary.conversations)},
        gettext("€%(cost)s so far (before tax)") % {"cost": floatformat(summary.cost, 2)},
    ]
