"""The team's figure on the dashboard Overview (see tenancy.sections)."""

from __future__ import annotations

from django.utils.translation import ngettext

from accounts.models import User
from accounts.selectors import seats_of_business
from tenancy.models import Business


def team_figures(*, business: Business, user: User) -> list[str]:
    seats = seats_of_business(business=business).count()
    return [ngettext("%(n)s person with a seat", "%(n)s people with a seat", seats) % {"n": seats}]
