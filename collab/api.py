"""The inbox's collaboration endpoints (DRF, session login, members of this business only):
labels of conversations, canned replies, macros, the notification list and search.
Errors are `{"error": {"code", "message"}}` like the inbox's other JSON endpoints."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collab import selectors, services
from collab.errors import CollabError
from collab.search import SearchFilters, search_conversations
from messaging.payloads import conversation_payload


class IsMember(BasePermission):
    """A seat in the business whose host this is (tenancy.middleware sets request.membership)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and getattr(request, "membership", None))


def error_response(error: CollabError) -> Response:
    return Response({"error": {"code": error.code, "message": error.message}}, status=error.http_status)


def invalid(serializer: serializers.Serializer) -> Response:  # type: ignore[type-arg]
    field, problems = next(iter(serializer.errors.items()))
    message = f"{field}: {problems[0]}" if field != "non_field_errors" else str(problems[0])
    return Response({"error": {"code": "invalid", "message": message}}, status=400)


class CollabView(APIView):
    permission_classes = [IsMember]
    schema = None  # the inbox's own JSON, not part of the public API's schema (/api/v1/schema/)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, CollabError):
            return error_response(exc)
        if isinstance(exc, exceptions.ParseError):
            # A body that is not JSON (or nested past the parser): this module's error shape,
            # not DRF's `{"detail": …}`.
            return Response({"error": {"code": "invalid", "message": _("The body is not valid JSON.")}}, status=400)
        return super().handle_exception(exc)

    @property
    def business(self) -> Any:
        return self.request.tenant  # type: ignore[attr-defined]

    @property
    def user_id(self) -> int:
        user_id = self.request.user.pk  # IsMember: a signed-in member
        assert user_id is not None
        return int(user_id)


def _ids_param(raw: str, limit: int = 200) -> list[int]:
    ids = []
    for part in raw.split(",")[:limit]:
        if part.strip().isdigit() and 0 < int(part) < 2**63:
            ids.append(int(part))
    return ids


class InboxSetupView(CollabView):
    """What the inbox's collaboration module needs once: labels, canned replies, macros,
    people to @mention, and the notification list."""

    def get(self, request: Request) -> Response:
        return Response(
            {
                "labels": [selectors.label_shape(label) for label in selectors.labels_list()],
                "canned_replies": [
                    {"id": r.pk, "shortcut": r.shortcut, "title": r.title, "body": r.body}
                    for r in selectors.canned_replies_list()
                ],
                "macros": [{"id": m.pk, "name": m.name} for m in selectors.macros_list()],
                "people": [
                    {"id": p["id"], "name": p["name"]} for p in selectors.mention_candidates(business=self.business)
                ],
                "notifications": selectors.notifications_for_user(user=request.user),  # type: ignore[arg-type]
                "unread": selectors.notifications_unread(user_id=self.user_id),
            }
        )


class ConversationLabelsView(CollabView):
    """GET ?conversations=1,2,3 → labels of each; POST {conversation_id, label_ids} sets them."""

    class Input(serializers.Serializer):  # type: ignore[type-arg]
        conversation_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        label_ids = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=20
        )

    def get(self, request: Request) -> Response:
        ids = _ids_param(request.query_params.get("conversations", ""))
        found = selectors.labels_for_conversations(conversation_ids=ids)
        return Response({"labels": {str(cid): labels for cid, labels in found.items()}})

    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        if not data.is_valid():
            return invalid(data)
        labels = services.conversation_labels_set(
            business=self.business,
            user=request.user,  # type: ignore[arg-type]
            conversation_id=data.validated_data["conversation_id"],
            label_ids=data.validated_data["label_ids"],
        )
        return Response({"labels": [selectors.label_shape(label) for label in labels]})


class MacroApplyView(CollabView):
    class Input(serializers.Serializer):  # type: ignore[type-arg]
        conversation_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)

    def post(self, request: Request, macro_id: int) -> Response:
        data = self.Input(data=request.data)
        if not data.is_valid():
            return invalid(data)
        outcome = services.macro_apply(
            business=self.business,
            user=request.user,  # type: ignore[arg-type]
            macro_id=macro_id,
            conversation_id=data.validated_data["conversation_id"],
        )
        labels = selectors.labels_for_conversations(conversation_ids=[outcome.conversation.pk])[outcome.conversation.pk]
        return Response(
            {
                "done": outcome.done,
                "conversation": conversation_payload(outcome.conversation),
                "labels": labels,
                "reply_id": outcome.reply.pk if outcome.reply else None,
            }
        )


class NotificationsView(CollabView):
    """GET the list; POST {ids: [...]} or {all: true} marks them read."""

    def get(self, request: Request) -> Response:
        return Response(
            {
                "notifications": selectors.notifications_for_user(user=request.user),  # type: ignore[arg-type]
                "unread": selectors.notifications_unread(user_id=self.user_id),
            }
        )

    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        ids = None if body.get("all") is True else body.get("ids")
        if ids is None and body.get("all") is not True:
            return Response({"error": {"code": "invalid", "message": _("Send ids or all: true.")}}, status=400)
        services.notifications_mark_read(business=self.business, user=request.user, ids=ids)  # type: ignore[arg-type]
        return Response({"unread": selectors.notifications_unread(user_id=self.user_id)})


class SearchView(CollabView):
    """GET ?q=&status=&label=&assignee=me|none|<id>&from=YYYY-MM-DD&to=YYYY-MM-DD&page="""

    class Input(serializers.Serializer):  # type: ignore[type-arg]
        q = serializers.CharField(required=False, allow_blank=True, max_length=200, trim_whitespace=True)
        status = serializers.ChoiceField(
            required=False, allow_blank=True, choices=["open", "pending", "resolved", "snoozed"]
        )
        label = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)  # type: ignore[assignment]
        assignee = serializers.RegexField(r"^(me|none|\d{1,18})$", required=False, allow_blank=True)
        date_from = serializers.DateField(required=False)
        date_to = serializers.DateField(required=False)
        page = serializers.IntegerField(required=False, min_value=1, max_value=1000)

    def get(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if v != ""}
        if "from" in params:
            params["date_from"] = params.pop("from")
        if "to" in params:
            params["date_to"] = params.pop("to")
        data = self.Input(data=params)
        if not data.is_valid():
            return invalid(data)
        values = data.validated_data
        date_from: date | None = values.get("date_from")
        date_to: date | None = values.get("date_to")
        if date_from and date_to and date_to < date_from:
            return Response(
                {"error": {"code": "invalid", "message": _("The end date is before the start date.")}}, status=400
            )
        filters = SearchFilters(
            query=values.get("q", "").replace("\x00", ""),
            status=values.get("status", ""),
            label_id=values.get("label"),
            assignee=values.get("assignee", ""),
            date_from=date_from,
            date_to=date_to,
        )
        result = search_conversations(user_id=self.user_id, filters=filters, page=values.get("page", 1))
        ids = [row["id"] for row in result["conversations"]]
        labels = selectors.labels_for_conversations(conversation_ids=ids)
        for row in result["conversations"]:
            row["labels"] = labels.get(row["id"], [])
        return Response(result)
