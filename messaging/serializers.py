"""What the inbox and chat pages read over HTTP (fetch): their query parameters and the pages'
shapes. The public API's shapes are in messaging/api/serializers.py.

A conversation and a message look the same in a page as in a websocket frame: the output
serializers are made from the shapes declared for the events (messaging.events.ConversationShape,
MessageShape, checked against every emitted frame in tests/messaging/test_event_schemas.py), so a
field added there reaches both without a second declaration, and values are written as the stored
frames write them (DjangoJSONEncoder: times in UTC, to the millisecond)."""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from messaging.events import ConversationActivityEvent, ConversationShape, MessageShape
from messaging.models import Conversation
from messaging.selectors import LIST_PAGE_MAX, LIST_PAGE_SIZE, LIST_TABS, SORTS, ConversationFilters

SEARCH_MAX = 100
_ENCODER = DjangoJSONEncoder()


class FrameText(serializers.Field):
    """A string of an event frame: text as it is; a time as the frames' encoder writes it."""

    def to_representation(self, value: Any) -> Any:
        return value if isinstance(value, str) else _ENCODER.default(value)


def _field(hint: Any, **kwargs: Any) -> serializers.Field:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        (rest,) = [arg for arg in args if arg is not type(None)]
        return _field(rest, allow_null=True, **kwargs)
    if origin is Literal:
        return serializers.ChoiceField(choices=list(args), **kwargs)
    if origin is list:
        child = _field(args[0])
        if isinstance(child, serializers.Serializer):
            return type(child)(many=True, **kwargs)
        return serializers.ListField(child=child, **kwargs)
    if origin is dict and args[0] is str:
        return serializers.DictField(child=_field(args[1]), **kwargs)
    if typing.is_typeddict(hint):
        return shape_serializer(hint)(**kwargs)
    simple = {int: serializers.IntegerField, bool: serializers.BooleanField, float: serializers.FloatField}
    if hint in simple:
        return simple[hint](**kwargs)
    if hint is str:
        return FrameText(**kwargs)
    if hint is Any:
        return serializers.JSONField(**kwargs)
    raise TypeError(f"no serializer field for {hint!r}: teach messaging.serializers._field")


@cache
def shape_serializer(shape: type) -> type[serializers.Serializer]:
    """An output serializer with the fields of a declared shape (a TypedDict), for its dicts."""
    fields = {name: _field(hint) for name, hint in get_type_hints(shape).items()}
    return type(f"{shape.__name__}Out", (serializers.Serializer,), fields)


ConversationOut = shape_serializer(ConversationShape)
MessageOut = shape_serializer(MessageShape)
ActivityOut = shape_serializer(ConversationActivityEvent)


# --- output: the pages -------------------------------------------------------------------------


class InboxCountsOut(serializers.Serializer):
    """Conversations with unread customer messages, per tab; `queue`: how many wait in it."""

    mine = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    all = serializers.IntegerField()
    queue = serializers.IntegerField()


class InboxListOut(serializers.Serializer):
    conversations = ConversationOut(many=True)
    next = serializers.CharField(allow_null=True)  # the cursor of the next page; null: the end
    sort = serializers.ChoiceField(choices=list(SORTS))
    counts = InboxCountsOut()


class AgentLoadOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["online", "away", "offline"])
    open = serializers.IntegerField()
    unread = serializers.IntegerField()


class InboxTeamOut(serializers.Serializer):
    counts = InboxCountsOut()
    team = AgentLoadOut(many=True)


class MessagePageOut(serializers.Serializer):
    """Messages oldest first; `has_more`: older ones exist (ask again with `before`)."""

    messages = MessageOut(many=True)
    has_more = serializers.BooleanField()


class InboxThreadOut(MessagePageOut):
    # The header needs the conversation even when it is not in the loaded list (an old link).
    conversation = ConversationOut()
    # What happened to it (assigned, snoozed…) within the page's stretch of the thread.
    activity = ActivityOut(many=True)


# --- input: query parameters -------------------------------------------------------------------


class SearchField(serializers.CharField):
    # PostgreSQL text cannot hold NUL: a search with one matches as if it were not there.
    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(str(data).replace("\x00", ""))


class InboxListQuery(serializers.Serializer):
    """?tab=mine|unassigned|queue|all &status=open,pending &assignee=<id>|none &labels=1,2
    &since=&until=<ISO time> &q= &sort=recent|waiting|queue &cursor=<next> &limit=. Extend with a
    field here and one in selectors.ConversationFilters (labels: the labels app's registered filter)."""

    tab = serializers.ChoiceField(choices=LIST_TABS, default="all")
    status = serializers.CharField(allow_blank=True, default="", max_length=100)
    assignee = serializers.CharField(allow_blank=True, default="", max_length=20)
    labels = serializers.CharField(allow_blank=True, default="", max_length=400)
    since = serializers.DateTimeField(required=False, default=None)
    until = serializers.DateTimeField(required=False, default=None)
    q = SearchField(max_length=SEARCH_MAX, allow_blank=True, default="")
    sort = serializers.ChoiceField(choices=list(SORTS), default="recent")
    cursor = serializers.CharField(allow_blank=True, default="", max_length=400)
    limit = serializers.IntegerField(min_value=1, max_value=LIST_PAGE_MAX, default=LIST_PAGE_SIZE)

    def validate_status(self, value: str) -> tuple[str, ...]:
        statuses = tuple(s for s in value.split(",") if s)
        unknown = [s for s in statuses if s not in Conversation.Status.values]
        if unknown:
            raise serializers.ValidationError(_("Unknown status: %(status)s") % {"status": ", ".join(unknown)})
        return statuses

    def validate_assignee(self, value: str) -> int | str | None:
        if value in ("", "none"):
            return value or None
        if not value.isdigit():
            raise serializers.ValidationError(_("Give an agent's id, or none."))
        return int(value)

    def validate_labels(self, value: str) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise serializers.ValidationError(_("Give label ids as numbers separated by commas.")) from None

    def filters(self) -> ConversationFilters:
        data = self.validated_data
        assignee = data["assignee"]
        return ConversationFilters(
            tab=data["tab"],
            statuses=data["status"],
            assignee_id=assignee if isinstance(assignee, int) else None,
            unassigned=assignee == "none",
            label_ids=data["labels"],
            since=data["since"],
            until=data["until"],
            query=data["q"].strip(),
        )


class HistoryQuery(serializers.Serializer):
    # A message id: the page holds the messages before it.
    before = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
