"""The Overview (see tenancy.sections): the live strip (open, waiting, median first response
today, this month's cost) and the Reports card (the last seven days)."""

from __future__ import annotations

from accounts.models import Membership, User
from tenancy.models import Business


def live_strip(*, business: Business, user: User, membership: Membership) -> list[tuple[str, str]]:
    from insights.selectors import live_pairs

    # The cost is Billing's figure: shown to whoever may open Billing (member_required(manage=True)).
    return live_pairs(business=business, with_cost=membership.can_manage)


def reports_figures(*, business: Business, user: User) -> list[str]:
    from insights.selectors import reports_card_lines

    return reports_card_lines(business=business)
