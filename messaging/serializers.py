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
from rest_framework import serializers

from messaging.events import ConversationShape, MessageShape
from messaging.models import Conversation
from messaging.selectors import TABS

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


# --- output: the pages -------------------------------------------------------------------------


class InboxCountsOut(serializers.Serializer):
    """Conversations with unread customer messages, per tab."""

    mine = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    all = serializers.IntegerField()


class InboxListOut(serializers.Serializer):
    conversations = ConversationOut(many=True)
    counts = InboxCountsOut()


class MessagePageOut(serializers.Serializer):
    """Messages oldest first; `has_more`: older ones exist (ask again with `before`)."""

    messages = MessageOut(many=True)
    has_more = serializers.BooleanField()


class InboxThreadOut(MessagePageOut):
    # The header needs the conversation even when it is not in the loaded list (an old link).
    conversation = ConversationOut()


# --- input: query parameters -------------------------------------------------------------------


class SearchField(serializers.CharField):
    # PostgreSQL text cannot hold NUL: a search with one matches as if it were not there.
    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(str(data).replace("\x00", ""))


class InboxListQuery(serializers.Serializer):
    tab = serializers.ChoiceField(choices=TABS, default="all")
    status = serializers.ChoiceField(choices=Conversation.Status.values, allow_blank=True, default="")
    q = SearchField(max_length=SEARCH_MAX, allow_blank=True, default="")


class HistoryQuery(serializers.Serializer):
    # A message id: the page holds the messages before it.
    before = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
