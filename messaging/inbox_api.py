"""The inbox's JSON endpoints for the agents' browser (DRF, session login; the public API with
keys lives in messaging/api/). One view per operation, input validated by a serializer.

- GET /inbox/api/list/   a keyset page of the conversation list, with the tab counts
  (?tab=mine|unassigned|queue|all &status=open,pending &assignee=<id>|none &labels=1,2
  &since=&until=<ISO time> &q= &sort=recent|waiting|queue &cursor=<next> &limit=);
- GET /inbox/api/counts/ the tab counts and each agent's status, open and unread counts."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assignment.selectors import team_availability
from messaging import selectors
from messaging.models import Conversation


class HasSeat(BasePermission):
    """A seat in the business whose host this is (the tenant middleware found it)."""

    message = _("You don't have a seat in this business.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request, "membership", None))


class InboxView(APIView):
    permission_classes = [IsAuthenticated, HasSeat]


class ListQuery(serializers.Serializer[Any]):
    tab = serializers.ChoiceField(choices=["mine", "unassigned", "queue", "all"], default="all")
    status = serializers.CharField(required=False, allow_blank=True, default="")
    assignee = serializers.CharField(required=False, allow_blank=True, default="")
    labels = serializers.CharField(required=False, allow_blank=True, default="", max_length=400)
    since = serializers.DateTimeField(required=False, default=None)
    until = serializers.DateTimeField(required=False, default=None)
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    sort = serializers.ChoiceField(choices=list(selectors.SORTS), default="recent")
    cursor = serializers.CharField(required=False, allow_blank=True, default="", max_length=400)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=selectors.LIST_PAGE_MAX, default=40)

    def validate_status(self, value: str) -> tuple[str, ...]:
        statuses = tuple(s for s in value.split(",") if s)
        unknown = [s for s in statuses if s not in Conversation.Status.values]
        if unknown:
            raise serializers.ValidationError(_("Unknown status: %(status)s") % {"status": ", ".join(unknown)})
        return statuses

    def validate_labels(self, value: str) -> tuple[int, ...]:
        # Label ids, comma-separated: passed through to the labels app's registered list filter.
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise serializers.ValidationError(_("Give label ids as numbers separated by commas.")) from None

    def validate_assignee(self, value: str) -> int | str | None:
        if value in ("", "none"):
            return value or None
        if not value.isdigit():
            raise serializers.ValidationError(_("Give an agent's id, or none."))
        return int(value)

    def validate_q(self, value: str) -> str:
        return value.replace("\x00", "").strip()

    def filters(self) -> selectors.ConversationFilters:
        data = self.validated_data
        assignee = data["assignee"]
        return selectors.ConversationFilters(
            tab=data["tab"],
            statuses=data["status"],
            assignee_id=assignee if isinstance(assignee, int) else None,
            unassigned=assignee == "none",
            label_ids=tuple(data["labels"]),
            since=data["since"],
            until=data["until"],
            query=data["q"],
        )


class ConversationListView(InboxView):
    def get(self, request: Request) -> Response:
        query = ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            page = selectors.conversation_page(
                user=request.user,  # type: ignore[arg-type]
                filters=query.filters(),
                sort=query.validated_data["sort"],
                cursor=query.validated_data["cursor"],
                limit=query.validated_data["limit"],
            )
        except selectors.BadCursor:
            raise serializers.ValidationError({"cursor": [_("This page link is not valid any more.")]}) from None
        page["counts"] = selectors.inbox_counts(user=request.user)  # type: ignore[arg-type]
        return Response(page)


class InboxCountsView(InboxView):
    def get(self, request: Request) -> Response:
        business: Any = request.tenant  # type: ignore[attr-defined]
        return Response(
            {
                "counts": selectors.inbox_counts(user=request.user),  # type: ignore[arg-type]
                "team": team_availability(business=business),
            }
        )
