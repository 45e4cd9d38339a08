"""The Reports page (every member reads it; owners and admins set the SLA targets and the
survey there), the inbox's SLA endpoint, and the chat page's CSAT survey endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collab.api import CollabView, invalid
from customers.session import customer_from_session
from insights import charts, selectors, services
from insights.errors import InsightsError
from tenancy.access import member_required

RANGES = (7, 30, 90)


@member_required()
def reports(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    membership: Any = request.membership  # type: ignore[attr-defined]
    if request.method == "POST":
        try:
            services.settings_update(
                business=business,
                user=request.user,  # type: ignore[arg-type]
                first_response_minutes=request.POST.get("first_response_minutes", ""),
                resolution_hours=request.POST.get("resolution_hours", ""),
                csat_enabled=request.POST.get("csat_enabled") == "on",
            )
        except InsightsError as error:
            flash.error(request, error.message)
        else:
            flash.success(request, _("Targets saved."))
        return redirect("reports")
    try:
        days = int(request.GET.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in RANGES else 30
    end = timezone.localdate()
    report = selectors.report(business=business, start=end - timedelta(days=days - 1), end=end)
    agent_peak = max([r.median_first_response or 0 for r in report.agents] + [0]) or None
    label_peak = max([r.conversations for r in report.labels] + [0]) or None
    return render(
        request,
        "insights/reports.html",
        {
            "section": "reports",
            "report": report,
            "days": days,
            "ranges": RANGES,
            "volume": charts.volume_chart(report.days),
            "response": charts.response_chart(report.days),
            "agents": [(row, charts.share(row.median_first_response, agent_peak)) for row in report.agents],
            "labels": [(row, charts.share(row.conversations, label_peak)) for row in report.labels],
            "csat_rows": [
                (score, count, charts.share(count, max(report.csat_scores.values()) or None))
                for score, count in sorted(report.csat_scores.items(), reverse=True)
            ],
            "settings": selectors.settings_get(),
            "breached": selectors.sla_breached_count(),
            "can_manage": membership.can_manage,
        },
    )


def sla_payload(state: selectors.SlaState) -> dict[str, Any]:
    return {"kind": state.kind, "due_at": state.due_at.isoformat(), "breached": state.breached}


class SlaView(CollabView):
    """GET ?conversations=1,2,3 → the SLA state of each (only those with a target running) and
    how many open conversations are past a target."""

    def get(self, request: Request) -> Response:
        ids = []
        for part in request.query_params.get("conversations", "").split(",")[:200]:
            if part.strip().isdigit() and 0 < int(part) < 2**63:
                ids.append(int(part))
        states = selectors.sla_states(conversation_ids=ids)
        return Response(
            {
                "states": {str(cid): sla_payload(state) for cid, state in states.items()},
                "breached": selectors.sla_breached_count(),
            }
        )


class CsatView(APIView):
    """The chat page's survey: GET → the pending question (or none); POST {cycle, score, comment}.
    Signed-in customers only (the customer session), for their own conversation in this business."""

    authentication_classes: list[Any] = []  # the customer session, not a staff login
    schema = None  # the chat page's own JSON, not part of the public API
    permission_classes = [AllowAny]

    class Input(serializers.Serializer):  # type: ignore[type-arg]
        cycle = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        score = serializers.IntegerField(min_value=1, max_value=5)
        comment = serializers.CharField(required=False, allow_blank=True, max_length=1000)

    def _customer(self, request: Request) -> Any:
        return customer_from_session(request._request.session)

    def get(self, request: Request) -> Response:
        customer = self._customer(request)
        if customer is None:
            return Response({"error": {"code": "unauthenticated", "message": _("Please sign in.")}}, status=401)
        cycle = selectors.csat_pending_cycle(customer=customer)
        return Response({"survey": {"cycle": cycle.pk} if cycle else None})

    def post(self, request: Request) -> Response:
        customer = self._customer(request)
        if customer is None:
            return Response({"error": {"code": "unauthenticated", "message": _("Please sign in.")}}, status=401)
        SessionAuthentication().enforce_csrf(request)  # a customer session is still a cookie: CSRF applies
        data = self.Input(data=request.data)
        if not data.is_valid():
            return invalid(data)
        try:
            services.csat_submit(
                business=request.tenant,  # type: ignore[attr-defined]
                customer=customer,
                cycle_id=data.validated_data["cycle"],
                score=data.validated_data["score"],
                comment=data.validated_data.get("comment", ""),
            )
        except InsightsError as error:
            return Response({"error": {"code": error.code, "message": error.message}}, status=error.http_status)
        return Response({"thanks": _("Thank you for your rating!")}, status=201)
