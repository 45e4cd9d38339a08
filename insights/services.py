"""Insights use cases: SLA targets and the CSAT survey. Cycles themselves are written by the
database triggers (insights.cycles), whatever wrote the message or the status."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import Customer, Membership, User
from audit.services import audit_record
from insights import selectors
from insights.errors import InsightsError, InsightsErrorCode
from insights.models import CsatResponse, InsightSettings
from messaging.sending import without_nul
from tenancy.models import Business


def _target(value: Any, *, low: int, high: int, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InsightsError(InsightsErrorCode.INVALID, _("%(what)s must be a whole number.") % {"what": what}) from None
    if not low <= number <= high:
        raise InsightsError(
            InsightsErrorCode.INVALID,
            _("%(what)s must be between %(low)d and %(high)d.") % {"what": what, "low": low, "high": high},
        )
    return number


def settings_update(
    *, business: Business, user: User, first_response_minutes: Any, resolution_hours: Any, csat_enabled: bool
) -> InsightSettings:
    membership = Membership.objects.filter(business_id=business.pk, user_id=user.pk).first()
    if membership is None or not membership.can_manage:
        raise InsightsError(InsightsErrorCode.FORBIDDEN, _("Only the business's owners and admins can change this."))
    first = _target(first_response_minutes, low=1, high=60 * 24 * 14, what=_("The first response target"))
    resolution = _target(resolution_hours, low=1, high=24 * 90, what=_("The resolution target"))
    with transaction.atomic():
        settings, _created = InsightSettings.objects.select_for_update().get_or_create(pk=1)
        settings.first_response_minutes = first
        settings.resolution_hours = resolution
        settings.csat_enabled = bool(csat_enabled)
        settings.save()
        audit_record(
            actor=user,
            business=business,
            action="insights.settings_updated",
            data={"first_response_minutes": first, "resolution_hours": resolution, "csat_enabled": bool(csat_enabled)},
        )
    return settings


def csat_submit(
    *, business: Business, customer: Customer, cycle_id: Any, score: Any, comment: Any = ""
) -> CsatResponse:
    """A customer rates the conversation the business just resolved (1–5, once)."""
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise InsightsError(InsightsErrorCode.INVALID, _("Choose a rating from 1 to 5."))
    if not isinstance(comment, str) or len(comment) > 1000:
        raise InsightsError(InsightsErrorCode.INVALID, _("The comment can be at most 1000 characters."))
    with transaction.atomic():
        cycle = selectors.csat_pending_cycle(customer=customer)
        if cycle is None or str(cycle.pk) != str(cycle_id):
            raise InsightsError(InsightsErrorCode.NOT_FOUND, _("There is nothing to rate right now."))
        try:
            with transaction.atomic():
                return CsatResponse.objects.create(
                    cycle=cycle,
                    conversation_id=cycle.conversation_id,
                    score=score,
                    comment=without_nul(comment).strip(),
                )
        except IntegrityError:
            raise InsightsError(
                InsightsErrorCode.ALREADY_RATED, _("Thank you, you rated this conversation already.")
            ) from None
