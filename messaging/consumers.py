"""Websocket relays: authenticate, join the business's groups, forward frames, call services.

Every database call goes through `_db`, which enters the schema (the business's, or public for
/ws/me/) inside the worker thread and leaves it again, so no schema is ever left set on a shared
thread and no query depends on what an earlier one left there.

Ordering guarantee: a client first sends {"type": "resume", "after": <last id seen>} and gets the
missed events from PostgreSQL; afterwards live frames are forwarded only in order. A live frame
that would skip an event (the layer is at-most-once, and two commits can publish out of order)
triggers a catch-up from PostgreSQL first; a frame already sent is dropped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from config.websocket import CloseCode
from customers.session import customer_from_session
from messaging import events, selectors, services
from messaging.services import MessagingError
from tenancy.asgi import host_from_scope
from tenancy.models import PUBLIC_SCHEMA

logger = logging.getLogger("parley.messaging")
T = TypeVar("T")

CLOSE_UNAUTHENTICATED = CloseCode.UNAUTHENTICATED
CLOSE_FORBIDDEN = CloseCode.FORBIDDEN
CLOSE_NOT_FOUND = CloseCode.NOT_FOUND
# A send carries at most services.MAX_BODY characters; even fully \u-escaped that fits, with room
# for the envelope. Daphne would otherwise hand over (and json.loads would parse) up to 1 MiB.
MAX_FRAME_CHARS = 64 * 1024


@database_sync_to_async
def _db[T](schema_name: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    with schema_context(schema_name):
        return fn(**kwargs)


def origin_host(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return (urlsplit(value.decode("latin-1")).hostname or "").lower()
    return None


def scope_language(scope: dict[str, Any]) -> str:
    """The language LocaleMiddleware picks for the page's own requests (the language cookie on
    the parent domain, then Accept-Language), so error frames read like the page around them."""
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            request.META["HTTP_ACCEPT_LANGUAGE"] = value.decode("latin-1")
    return translation.get_language_from_request(request)


def parse_frame(text_data: str | None) -> Any:
    """The frame's JSON, or None for anything malformed: not JSON, nested deeper than the parser's
    recursion limit (json raises RecursionError, not ValueError, for "[" * 50000), or strings with
    lone surrogates ("\\ud800"), which no UTF-8 column can store and which would otherwise fail
    deep inside a service."""
    try:
        payload = json.loads(text_data or "")
        if "\\u" in (text_data or ""):
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return payload


class _RateLimit:
    """A small token bucket per connection, so one client cannot flood a business's stream."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class StreamConsumer(AsyncWebsocketConsumer):
    """What agents and customers share: origin check, envelope, resume and in-order delivery."""

    schema_name: str
    last: int | None

    async def connect(self) -> None:
        self.last = None
        self.sends = _RateLimit(rate=2, burst=20)
        self.frames = _RateLimit(rate=20, burst=60)
        self.typing = _RateLimit(rate=0.5, burst=3)
        self.language = scope_language(self.scope)
        business = self.scope.get("business")
        if business is None or business.is_public:
            await self.close(CLOSE_NOT_FOUND)
            return
        # OriginValidator admits every subdomain of the platform; a page on another business's
        # host must not drive this one's socket with the shared session cookie.
        if origin_host(self.scope) != host_from_scope(self.scope):
            await self.close(CLOSE_FORBIDDEN)
            return
        self.business = business
        self.schema_name = business.schema_name
        if not await self.authenticate():
            return
        await self.accept()
        await self.joined()

    async def authenticate(self) -> bool:
        raise NotImplementedError

    async def joined(self) -> None:
        pass

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=events.dumps(payload))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"id": None, "type": "error", "code": code, "message": message, **extra})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # No LocaleMiddleware here: messages (ours and the services') use the page's language.
        with translation.override(self.language):
            await self.handle_frame(text_data)

    async def handle_frame(self, text_data: str | None) -> None:
        # Limits first, so a flood of large or malformed frames costs no parsing.
        if not self.frames.allow():
            await self.send_error("rate_limited", _("Too many frames. Please slow down."))
            return
        if text_data is not None and len(text_data) > MAX_FRAME_CHARS:
            await self.send_error("bad_frame", _("This frame is too large."))
            return
        payload = parse_frame(text_data)
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            await self.send_error("bad_frame", _("Every frame must be a JSON object with a type."))
            return
        handler = getattr(self, "on_" + payload["type"].replace(".", "_"), None)
        if handler is None:
            await self.send_error("unknown_type", _("Unknown frame type."))
            return
        try:
            await handler(payload)
        except MessagingError as error:
            extra = {"client_msg_id": payload["client_msg_id"]} if payload.get("client_msg_id") else {}
            await self.send_error(error.code, error.message, **extra)
        except Exception:
            logger.exception("websocket frame %s failed", payload.get("type"))
            await self.send_error("server_error", _("Something went wrong. Please try again."))

    async def on_ping(self, payload: dict[str, Any]) -> None:
        await self.send_json({"id": None, "type": "pong"})

    async def on_resume(self, payload: dict[str, Any]) -> None:
        after = payload.get("after", 0)
        if not isinstance(after, int) or after < 0:
            raise MessagingError("invalid", _("resume needs the last event id seen (a number)."))
        self.last = after
        if after < await _db(self.schema_name, selectors.first_retained_event_id) - 1:
            # Events after `after` were pruned: the client reloads its state, then resumes.
            self.last = await _db(self.schema_name, selectors.last_event_id)
            await self.send_json({"id": None, "type": "resync"})
            return
        await self.catch_up()
        await self.send_json({"id": None, "type": "resumed", "last": self.last})

    async def fetch_after(self, after: int) -> list[tuple[int, str]]:
        raise NotImplementedError

    async def catch_up(self) -> None:
        if self.last is None:
            return
        rows = await self.fetch_after(self.last)
        for event_id, frame in rows:
            await self.send(text_data=frame)
            self.last = event_id
        if len(rows) >= selectors.RESUME_LIMIT:
            # Too far behind to replay: the client reloads its state and resumes from there.
            await self.send_json({"id": None, "type": "resync"})

    async def forward(self, message: dict[str, Any], *, gap: bool) -> None:
        if self.last is None:
            return  # not resumed yet: the resume will read this event from PostgreSQL
        if message["id"] <= self.last:
            return  # already sent (by a catch-up)
        if gap:
            await self.catch_up()
            if message["id"] <= self.last:
                return
        await self.send(text_data=message["text"])
        self.last = message["id"]

    async def conv_signal(self, message: dict[str, Any]) -> None:
        if message.get("sender") != self.channel_name:
            await self.send(text_data=message["text"])

    def check_send_rate(self) -> None:
        if not self.sends.allow():
            raise MessagingError("rate_limited", _("You are sending too fast. Please wait a moment."))

    async def accepted(self, result: services.SendResult) -> None:
        await self.send_json(
            {
                "id": None,
                "type": "message.accepted",
                "client_msg_id": result.message.client_msg_id,
                "message_id": result.message.pk,
                "event_id": result.message.event_id,
                "duplicate": result.duplicate,
            }
        )

    async def send_typing(self, conversation_id: int, **who: str) -> None:
        """To the others in the conversation's group (never back to this socket)."""
        if not self.typing.allow():
            return
        await events.send_signal(
            events.conversation_group(self.schema_name, conversation_id),
            events.LAYER_CONV_SIGNAL,
            {"type": events.TYPING, "conversation_id": conversation_id, **who},
            sender=self.channel_name,
        )


class InboxConsumer(StreamConsumer):
    """An agent's shared inbox: every event of the business, typing and presence."""

    viewing: int | None = None

    async def authenticate(self) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return False
        if not await _db(self.schema_name, selectors.is_member, business=self.business, user=user):
            await self.close(CLOSE_FORBIDDEN)
            return False
        self.user = user
        return True

    async def joined(self) -> None:
        self.inbox_group = events.inbox_group(self.schema_name)
        await self.channel_layer.group_add(self.inbox_group, self.channel_name)
        await _db(self.schema_name, services.presence_enter, user=self.user, channel_name=self.channel_name)
        await self.broadcast_presence()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "inbox_group"):
            return
        await self.channel_layer.group_discard(self.inbox_group, self.channel_name)
        if self.viewing is not None:
            await self.channel_layer.group_discard(
                events.conversation_group(self.schema_name, self.viewing), self.channel_name
            )
        await _db(self.schema_name, services.presence_leave, channel_name=self.channel_name)
        await self.broadcast_presence()

    async def broadcast_presence(self) -> None:
        snapshot = await _db(self.schema_name, selectors.presence_snapshot)
        await events.send_signal(self.inbox_group, events.LAYER_INBOX_SIGNAL, {"type": events.PRESENCE, **snapshot})

    async def fetch_after(self, after: int) -> list[tuple[int, str]]:
        return await _db(self.schema_name, selectors.events_for_agents, after=after)

    async def as_agent(self, service: Callable[..., T], /, **kwargs: Any) -> T:
        """Run a service in this business's schema on behalf of this agent."""
        return await _db(self.schema_name, service, business=self.business, user=self.user, **kwargs)

    # layer → client
    async def inbox_frame(self, message: dict[str, Any]) -> None:
        # Ids are dense per business, so anything but last+1 means a missed or late event.
        await self.forward(message, gap=self.last is not None and message["id"] != self.last + 1)

    async def conv_frame(self, message: dict[str, Any]) -> None:
        pass  # agents get every event through the inbox group already

    async def inbox_signal(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])

    # client → server
    async def on_ping(self, payload: dict[str, Any]) -> None:
        # A seat removed while the inbox is open ends the stream at the next heartbeat.
        if not await _db(self.schema_name, selectors.is_member, business=self.business, user=self.user):
            await self.close(CLOSE_FORBIDDEN)
            return
        await _db(self.schema_name, services.presence_heartbeat, channel_name=self.channel_name)
        await super().on_ping(payload)

    async def on_view(self, payload: dict[str, Any]) -> None:
        conversation_id = payload.get("conversation_id")
        if conversation_id is not None:
            conversation = await _db(
                self.schema_name, selectors.conversation_for_agent, conversation_id=conversation_id
            )
            conversation_id = conversation.pk
        if self.viewing is not None:
            await self.channel_layer.group_discard(
                events.conversation_group(self.schema_name, self.viewing), self.channel_name
            )
        self.viewing = conversation_id
        if conversation_id is not None:
            await self.channel_layer.group_add(
                events.conversation_group(self.schema_name, conversation_id), self.channel_name
            )
        await _db(
            self.schema_name, services.presence_view, channel_name=self.channel_name, conversation_id=conversation_id
        )
        await self.broadcast_presence()

    async def on_send(self, payload: dict[str, Any]) -> None:
        self.check_send_rate()
        result = await self.as_agent(
            services.message_send_agent,
            conversation_id=payload.get("conversation_id"),
            body=payload.get("body"),
            client_msg_id=payload.get("client_msg_id"),
            kind=payload.get("kind") or "text",
        )
        await self.accepted(result)

    async def on_typing(self, payload: dict[str, Any]) -> None:
        # Only for the conversation this agent has open, whose group they joined after a check.
        if self.viewing is not None and payload.get("conversation_id") == self.viewing:
            await self.send_typing(self.viewing, who="agent", name=self.user.get_short_name())

    async def on_ack(self, payload: dict[str, Any]) -> None:
        await self.as_agent(
            services.messages_mark_by_agent,
            conversation_id=payload.get("conversation_id"),
            up_to=payload.get("up_to"),
            read=bool(payload.get("read")),
        )

    async def on_assign(self, payload: dict[str, Any]) -> None:
        assignee = payload.get("assignee_id")
        if assignee == "me":
            assignee = self.user.pk
        await self.as_agent(
            services.conversation_assign,
            conversation_id=payload.get("conversation_id"),
            assignee_id=assignee,
        )

    async def on_status(self, payload: dict[str, Any]) -> None:
        await self.as_agent(
            services.conversation_set_status,
            conversation_id=payload.get("conversation_id"),
            status=payload.get("status"),
        )


class ChatConsumer(StreamConsumer):
    """A signed-in customer on a business's chat page: their one conversation with it."""

    conversation_id: int | None = None

    async def authenticate(self) -> bool:
        customer = await _db(self.schema_name, customer_from_session, session=self.scope.get("session"))
        if customer is None:
            await self.close(CLOSE_UNAUTHENTICATED)
            return False
        self.customer = customer
        return True

    async def joined(self) -> None:
        # Until the conversation exists (first message from this or another tab, or a template
        # from the business), listen on the customer's own group to learn when it appears.
        self.waiting_group: str | None = events.customer_group(self.customer.pk)
        await self.channel_layer.group_add(self.waiting_group, self.channel_name)
        await self.find_conversation()

    async def find_conversation(self) -> None:
        conversation = await _db(self.schema_name, selectors.conversation_for_customer, customer=self.customer)
        if conversation is not None:
            await self.join_conversation(conversation.pk)

    async def join_conversation(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        await self.channel_layer.group_add(
            events.conversation_group(self.schema_name, conversation_id), self.channel_name
        )
        if self.waiting_group is not None:
            await self.channel_layer.group_discard(self.waiting_group, self.channel_name)
            self.waiting_group = None

    async def me_frame(self, message: dict[str, Any]) -> None:
        if self.conversation_id is None and message.get("schema") == self.schema_name:
            await self.find_conversation()
            # Its first events were published before this socket joined: read them.
            await self.catch_up()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "waiting_group", None):
            await self.channel_layer.group_discard(self.waiting_group, self.channel_name)
        if self.conversation_id is not None:
            await self.channel_layer.group_discard(
                events.conversation_group(self.schema_name, self.conversation_id), self.channel_name
            )

    async def as_customer(self, service: Callable[..., T], /, **kwargs: Any) -> T:
        """Run a service in this business's schema on behalf of this customer."""
        return await _db(self.schema_name, service, business=self.business, customer=self.customer, **kwargs)

    async def fetch_after(self, after: int) -> list[tuple[int, str]]:
        if self.conversation_id is None:
            return []
        return await _db(
            self.schema_name, selectors.events_for_customer, conversation_id=self.conversation_id, after=after
        )

    async def conv_frame(self, message: dict[str, Any]) -> None:
        # Customer-visible ids are sparse; each frame names the previous one it follows.
        await self.forward(message, gap=self.last is not None and message["prev"] > self.last)

    async def on_send(self, payload: dict[str, Any]) -> None:
        self.check_send_rate()
        result = await self.as_customer(
            services.message_send_customer,
            body=payload.get("body"),
            client_msg_id=payload.get("client_msg_id"),
        )
        if self.conversation_id is None:
            # The first message created the conversation after this socket connected; its
            # event was published before we joined, so read it from the stream.
            await self.join_conversation(result.message.conversation_id)
            await self.catch_up()
        await self.accepted(result)

    async def on_typing(self, payload: dict[str, Any]) -> None:
        if self.conversation_id is not None:
            await self.send_typing(self.conversation_id, who="customer")

    async def on_ack(self, payload: dict[str, Any]) -> None:
        await self.as_customer(
            services.messages_mark_by_customer,
            up_to=payload.get("up_to"),
            read=bool(payload.get("read")),
        )


class MeConsumer(AsyncWebsocketConsumer):
    """The customer's /me/ page on the public host: their cross-business list changed."""

    async def connect(self) -> None:
        business = self.scope.get("business")
        if business is not None and not business.is_public:
            await self.close(CLOSE_NOT_FOUND)
            return
        if origin_host(self.scope) != settings.PARLEY_DOMAIN.lower():
            await self.close(CLOSE_FORBIDDEN)
            return
        customer = await _db(PUBLIC_SCHEMA, customer_from_session, session=self.scope.get("session"))
        if customer is None:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        self.group = events.customer_group(customer.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=events.dumps({"id": None, "type": "pong"}))

    async def me_frame(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])
