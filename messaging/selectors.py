"""Messaging reads. They run in the business's schema already entered by the caller, so "another
business's conversation" cannot even be named: its id simply does not exist here."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from accounts.models import Customer, Membership, User
from messaging.errors import not_found
from messaging.ids import conversation_pk
from messaging.models import AgentPresence, Contact, Conversation, Event, Message, StreamCounter
from messaging.payloads import conversation_payload, message_payload
from tenancy.models import Business

PAGE_SIZE = 30
RESUME_LIMIT = 1000
PRESENCE_TTL = timedelta(seconds=75)

TABS = ("mine", "unassigned", "all")
LIST_TABS = (*TABS, "queue")
LIST_PAGE_SIZE = 40
LIST_PAGE_MAX = 100


def last_event_id() -> int:
    """The newest committed event id (the counter, so it survives pruning of old events)."""
    return int(StreamCounter.objects.filter(pk=1).values_list("last_id", flat=True).first() or 0)


def first_retained_event_id() -> int:
    """The oldest event still kept; when pruning left none, the next id to be handed out (a
    client that saw less than the counter's last id has missed pruned events either way)."""
    oldest = Event.objects.aggregate(m=Min("id"))["m"]
    return int(oldest) if oldest is not None else last_event_id() + 1


def conversation_for_agent(*, conversation_id: Any) -> Conversation:
    conversation = (
        Conversation.objects.select_related("contact__customer", "assignee")
        .filter(pk=conversation_pk(conversation_id))
        .first()
    )
    if conversation is None:
        raise not_found()
    return conversation


def conversation_for_customer(*, customer: Customer) -> Conversation | None:
    return Conversation.objects.select_related("contact__customer").filter(contact__customer=customer).first()


def _tab_filter(tab: str, user: User) -> Q:
    if tab == "mine":
        return Q(assignee_id=user.pk)
    if tab == "unassigned":
        return Q(assignee__isnull=True)
    if tab == "queue":
        return _in_queue()
    return Q()


def _in_queue() -> Q:
    # Open and unassigned, waiting for an agent (assignment serves it oldest first).
    return Q(status=Conversation.Status.OPEN, assignee__isnull=True, queued_at__isnull=False)


# --- the inbox list: keyset pages ----------------------------------------------------------------


@dataclass(frozen=True)
class ConversationFilters:
    """What the list shows. Extend by adding a field and, for another app's data (labels), a
    registered filter (`register_conversation_filter`): the selector knows no other app."""

    tab: str = "all"  # mine, unassigned, queue, all
    statuses: tuple[str, ...] = ()  # any of Conversation.Status; empty: every status
    assignee_id: int | None = None
    unassigned: bool = False
    label_ids: tuple[int, ...] = ()  # applied by the labels app's registered filter
    since: datetime | None = None  # last message at or after
    until: datetime | None = None  # last message before
    query: str = ""  # contact name, or a phone number when number-like
    extra: dict[str, Any] = field(default_factory=dict)  # more parameters for registered filters


ConversationFilter = Callable[[QuerySet[Conversation], ConversationFilters], QuerySet[Conversation]]
_registered_filters: list[ConversationFilter] = []


def register_conversation_filter(fn: ConversationFilter) -> ConversationFilter:
    """Another app narrows the list by its own data (e.g. labels by `filters.label_ids`)."""
    if fn not in _registered_filters:
        _registered_filters.append(fn)
    return fn


# Sort name -> (ordering fields, which way the keyset moves on). "waiting": customers who wait
# for an answer, longest first; "queue": the order auto-assignment serves them.
SORTS: dict[str, tuple[str, str]] = {
    "recent": ("last_message_at", "desc"),
    "waiting": ("waiting_since", "asc"),
    "queue": ("queued_at", "asc"),
}


class BadCursor(ValueError):
    pass


def encode_cursor(sort: str, value: datetime, pk: int) -> str:
    raw = json.dumps([sort, value.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, value, pk = json.loads(raw)
        if name != sort or not isinstance(pk, int):
            raise BadCursor(cursor)
        return datetime.fromisoformat(value), pk
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as error:
        raise BadCursor(cursor) from error


def _number_like(query: str) -> str:
    # Only a number-like search matches phone numbers (a name with digits must not match any phone).
    if query and all(ch.isdigit() or ch in " +()-./" for ch in query):
        return "".join(ch for ch in query if ch.isdigit() or ch == "+")
    return ""


def conversations_filtered(*, user: User, filters: ConversationFilters) -> QuerySet[Conversation]:
    qs = Conversation.objects.filter(_tab_filter(filters.tab if filters.tab in LIST_TABS else "all", user))
    statuses = [s for s in filters.statuses if s in Conversation.Status.values]
    if statuses:
        qs = qs.filter(status__in=statuses)
    if filters.assignee_id is not None:
        qs = qs.filter(assignee_id=filters.assignee_id)
    if filters.unassigned:
        qs = qs.filter(assignee__isnull=True)
    if filters.since is not None:
        qs = qs.filter(last_message_at__gte=filters.since)
    if filters.until is not None:
        qs = qs.filter(last_message_at__lt=filters.until)
    if filters.query:
        match = Q(contact__name__icontains=filters.query) | Q(contact__customer__display_name__icontains=filters.query)
        digits = _number_like(filters.query)
        if digits:
            match |= Q(contact__customer__phone_number__contains=digits)
        qs = qs.filter(match)
    for narrow in _registered_filters:
        qs = narrow(qs, filters)
    return qs


def conversation_page(
    *, user: User, filters: ConversationFilters, sort: str = "recent", cursor: str = "", limit: int = LIST_PAGE_SIZE
) -> dict[str, Any]:
    """One keyset page of the inbox list: `conversations` and `next` (the cursor of the page after,
    None at the end). Keyset, not offset: a deep page costs what the first does, and conversations
    that move while an agent scrolls are neither skipped nor shown twice within a sort key."""
    if sort not in SORTS:
        sort = "recent"
    if filters.tab == "queue":
        sort = "queue"
    column, direction = SORTS[sort]
    limit = max(1, min(int(limit), LIST_PAGE_MAX))
    qs = conversations_filtered(user=user, filters=filters).filter(**{f"{column}__isnull": False})
    if cursor:
        value, pk = decode_cursor(cursor, sort)
        op = "lt" if direction == "desc" else "gt"
        # `column <= value` (or >=) is redundant with the OR below but is what PostgreSQL can use
        # as an index condition: without it a deep page walked the index from the top, filtering
        # every row it passed (about 17,000 at 100,000 conversations).
        qs = qs.filter(**{f"{column}__{op}e": value}).filter(
            Q(**{f"{column}__{op}": value}) | Q(**{column: value, f"pk__{op}": pk})
        )
    order = [f"-{column}", "-pk"] if direction == "desc" else [column, "pk"]
    rows = list(qs.select_related("contact__customer", "assignee").order_by(*order)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return {
        "conversations": [conversation_payload(c) for c in rows],
        "next": encode_cursor(sort, getattr(last, column), last.pk) if more and last is not None else None,
        "sort": sort,
    }


def inbox_counts(*, user: User) -> dict[str, int]:
    """This agent's counts: conversations with unread customer messages per tab (open and
    pending work; snoozed and resolved wait), and how many wait in the queue. One query."""
    active = Q(status__in=[Conversation.Status.OPEN, Conversation.Status.PENDING])
    unread = Q(unread_count__gt=0) & active
    counts = Conversation.objects.aggregate(
        **{tab: Count("pk", filter=unread & _tab_filter(tab, user)) for tab in TABS},
        queue=Count("pk", filter=_in_queue()),
    )
    return {key: int(value) for key, value in counts.items()}


def messages_page(
    *, conversation: Conversation, before: Any = None, include_notes: bool, limit: int = PAGE_SIZE
) -> dict[str, Any]:
    """A page of messages older than `before` (a message id), oldest first, for scrolling back."""
    qs = (
        Message.objects.select_related("author_user", "reply_to__author_user")
        .prefetch_related("attachments", "reactions", "reply_to__attachments")
        .filter(conversation=conversation)
    )
    if not include_notes:
        qs = qs.exclude(kind=Message.Kind.NOTE)
    if before not in (None, ""):
        with contextlib.suppress(TypeError, ValueError):
            qs = qs.filter(id__lt=int(before))
    rows = list(qs.order_by("-id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    name = conversation.contact.display_name
    return {"messages": [message_payload(m, contact_name=name) for m in rows], "has_more": has_more}


def conversation_activity(*, conversation_id: int, after: int, before_message: Any = None) -> list[dict[str, Any]]:
    """The conversation.activity events of a thread page's stretch: after event `after`, and
    before the message `before_message` (the oldest one the client had; None: up to now). As
    their frames; kept as long as the stream keeps events."""
    qs = Event.objects.filter(conversation_id=conversation_id, type="conversation.activity", id__gt=after)
    if before_message not in (None, ""):
        bound = None
        with contextlib.suppress(TypeError, ValueError):
            bound = (
                Message.objects.filter(conversation_id=conversation_id, pk=int(before_message))
                .values_list("event_id", flat=True)
                .first()
            )
        if bound is None:
            return []
        qs = qs.filter(id__lt=bound)
    return [json.loads(frame) for frame in qs.order_by("id").values_list("frame", flat=True)[:200]]


def inbox_thread_page(*, conversation_id: Any, before: int | None = None) -> dict[str, Any]:
    """An agent's page of a conversation (notes included), with the conversation itself: the
    header needs it even when it is not in the loaded list (an old link)."""
    conversation = conversation_for_agent(conversation_id=conversation_id)
    page = messages_page(conversation=conversation, before=before, include_notes=True)
    activity = conversation_activity(
        conversation_id=conversation.pk,
        after=page["messages"][0]["event_id"] if page["messages"] and page["has_more"] else 0,
        before_message=before,
    )
    return {**page, "conversation": conversation_payload(conversation), "activity": activity}


def chat_history_page(*, customer: Customer, before: int | None = None) -> dict[str, Any]:
    """The customer's page of their conversation with this business (no notes); empty before
    their first message."""
    conversation = conversation_for_customer(customer=customer)
    if conversation is None:
        return {"messages": [], "has_more": False}
    return messages_page(conversation=conversation, before=before, include_notes=False)


# --- the REST API (messaging.api): keyset pages, newest first -------------------------------------


def _newest_first_page(qs: Any, *, before: int, limit: int) -> tuple[list[Any], bool]:
    """Up to `limit` rows with ids below `before` (0: from the newest), and whether more exist."""
    if before:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def conversations_newest_first(*, before: int = 0, limit: int) -> tuple[list[Conversation], bool]:
    return _newest_first_page(Conversation.objects.select_related("contact__customer"), before=before, limit=limit)


def conversation_messages_newest_first(
    *, conversation_id: int, before: int = 0, limit: int
) -> tuple[list[Message], bool] | None:
    """A conversation's messages without internal notes; None: no such conversation."""
    if not Conversation.objects.filter(pk=conversation_id).exists():
        return None
    qs = Message.objects.filter(conversation_id=conversation_id).exclude(kind=Message.Kind.NOTE)
    return _newest_first_page(qs, before=before, limit=limit)


def events_after(*, after: int, limit: int) -> list[tuple[int, str, str]]:
    """Stored events after `after`, in id order: (id, type, frame)."""
    return list(Event.objects.filter(id__gt=after).order_by("id").values_list("id", "type", "frame")[:limit])


def events_for_customer(*, conversation_id: int, after: int, limit: int = RESUME_LIMIT) -> list[tuple[int, str]]:
    return list(
        Event.objects.filter(conversation_id=conversation_id, audience=Event.Audience.EVERYONE, id__gt=after)
        .order_by("id")
        .values_list("id", "frame")[:limit]
    )


def presence_snapshot() -> dict[str, Any]:
    rows = (
        AgentPresence.objects.select_related("user")
        .filter(seen_at__gte=timezone.now() - PRESENCE_TTL)
        .order_by("user__full_name", "user__email")
    )
    online: dict[int, dict[str, Any]] = {}
    viewing: dict[str, list[int]] = {}
    for row in rows:
        online.setdefault(row.user_id, {"id": row.user_id, "name": row.user.get_short_name()})
        if row.conversation_id is not None:
            ids = viewing.setdefault(str(row.conversation_id), [])
            if row.user_id not in ids:
                ids.append(row.user_id)
    return {"online": list(online.values()), "viewing": viewing}


def is_member(*, business: Business, user: User) -> bool:
    """Whether `user` holds a seat in `business` (Membership lives in public)."""
    return Membership.objects.filter(business_id=business.pk, user_id=user.pk).exists()


def team_members(*, business: Business) -> list[dict[str, Any]]:
    memberships = Membership.objects.select_related("user").filter(business_id=business.pk).order_by("user__full_name")
    return [{"id": m.user_id, "name": m.user.get_short_name()} for m in memberships]


def contacts_list(*, query: str = "", limit: int = 200) -> list[Contact]:
    qs = Contact.objects.select_related("customer", "conversation").order_by("name", "id")
    if query:
        qs = qs.filter(
            Q(name__icontains=query)
            | Q(customer__display_name__icontains=query)
            | Q(customer__phone_number__icontains=query)
        )
    return list(qs[:limit])


@dataclass(frozen=True)
class InboxOverview:
    open: int
    waiting: int  # open or pending, with customer messages nobody has read yet
    messages_today: int
    contacts: int


def inbox_overview(*, now: datetime | None = None) -> InboxOverview:
    """The dashboard's figures for the business whose schema is entered. "Today" is the
    business's local day (the active time zone)."""
    midnight = timezone.localtime(now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
    conversations = Conversation.objects.aggregate(
        open=Count("pk", filter=Q(status=Conversation.Status.OPEN)),
        waiting=Count("pk", filter=Q(unread_count__gt=0) & ~Q(status=Conversation.Status.RESOLVED)),
    )
    return InboxOverview(
        open=conversations["open"],
        waiting=conversations["waiting"],
        messages_today=Message.objects.filter(created_at__gte=midnight)
        .exclude(direction=Message.Direction.INTERNAL)
        .count(),
        contacts=Contact.objects.count(),
    )


# --- realtime: what the inbox sockets replay (see messaging/README.md, "Resume") -----------------


def conversation_states_between(*, after: int, up_to: int) -> list[tuple[int, str]]:
    """The latest stored conversation.updated frame of each conversation with one in
    (after, up_to], oldest first: an agent's list, brought up to `up_to` by state, not by replaying
    every event."""
    rows = list(
        Event.objects.filter(type="conversation.updated", id__gt=after, id__lte=up_to)
        .order_by("conversation_id", "-id")
        .distinct("conversation_id")
        .values_list("id", "frame")
    )
    rows.sort()
    return rows


def conversation_states_since(*, after: int) -> tuple[int, list[tuple[int, str]]]:
    """The stream's head, and the list states changed after `after` up to it. The head is read
    first: ids commit in order, so every event up to it is already visible."""
    head = last_event_id()
    return head, conversation_states_between(after=after, up_to=head)


def events_for_conversation(*, conversation_id: int, after: int, limit: int = RESUME_LIMIT) -> list[tuple[int, str]]:
    """Every event of one conversation after `after` (agents: notes included)."""
    return list(
        Event.objects.filter(conversation_id=conversation_id, id__gt=after)
        .order_by("id")
        .values_list("id", "frame")[:limit]
    )


def conversation_last_event_id(*, conversation_id: int) -> int:
    """The newest event of the conversation (0: none kept)."""
    newest = Event.objects.filter(conversation_id=conversation_id).order_by("-id").values_list("id", flat=True).first()
    return int(newest or 0)


def seats_send(cursor: Any, *, business_id: int, user_ids: list[int]) -> None:
    """Send the lookup of these users' seats in the business on `cursor`, to be read as
    `(user id, role)` rows. Raw SQL, for the writers (the send core, the ack writer): compiling a
    queryset cost more than the answer, and in a pipeline the rows can be read after the next
    statement's answer (a queryset reads at once)."""
    cursor.execute(
        f"SELECT user_id, role FROM {Membership._meta.db_table} WHERE business_id = %s AND user_id = ANY(%s)",
        [business_id, user_ids],
    )
