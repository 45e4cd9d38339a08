"""The Overview's live figures (see tenancy.sections): open, waiting, median first response
today, this month's cost."""

from __future__ import annotations

from accounts.models import User
from tenancy.models import Business


def reports_figures(*, business: Business, user: User) -> list[str]:
    from insights.selectors import overview_lines

    return overview_lines(business=business)
