"""The inbox's and contacts' figures on the dashboard Overview (see tenancy.sections)."""

from __future__ import annotations

from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.translation import ngettext

from accounts.models import User
from messaging.selectors import inbox_overview
from tenancy.models import Business


def inbox_figures(*, business: Business, user: User) -> list[str]:
    figures = inbox_overview()
    return [
        ngettext("%(n)s open conversation", "%(n)s open conversations", figures.open) % {"n": intcomma(figures.open)},
        ngettext("%(n)s waiting for a reply", "%(n)s waiting for a reply", figures.waiting)
        % {"n": intcomma(figures.waiting)},
        ngettext("%(n)s message today", "%(n)s messages today", figures.messages_today)
        % {"n": intcomma(figures.messages_today)},
    ]


def contacts_figures(*, business: Business, user: User) -> list[str]:
    n = inbox_overview().contacts
    return [ngettext("%(n)s contact", "%(n)s contacts", n) % {"n": intcomma(n)}]
