"""The REST API on a business's host, /api/v1/: one view per operation. Views check the shape
of the input, call a service or selector, and shape the output; rules live in the services."""

from __future__ import annotations

import json
import math
from typing import Any

from django.urls import Resolver404, resolve
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from attachments.errors import AttachmentError
from attachments.services import attachment_upload
from messaging.api import serializers as s
from messaging.api.base import ApiView, IdempotentPost, problem
from messaging.selectors import (
    conversation_messages_newest_first,
    conversations_newest_first,
    events_after,
    first_retained_event_id,
    last_event_id,
)
from notifications import selectors, services
from notifications.errors import ErrorCode, NotificationError

PAGE_LIMIT = 100
EVENT_LIMIT = 1000


def _business(request: Request) -> Any:
    return request._request.tenant  # type: ignore[attr-defined]


def _int_param(request: Request, name: str, default: int, *, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError, OverflowError):
        raise NotificationError(ErrorCode.INVALID, _("%(name)s must be a whole number.") % {"name": name}) from None
    if value < 0:
        raise NotificationError(ErrorCode.INVALID, _("%(name)s cannot be negative.") % {"name": name})
    return min(value, maximum) if maximum is not None else value


def _input(serializer_class: type, data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class MessageSendView(IdempotentPost):
    """Send one message: an approved template with its parameters, or free text inside the
    customer's 24-hour service window. The answer says whether it was sent or why it failed,
    and the price charged."""

    required_scope = "send"

    @extend_schema(
        request=s.MessageSendIn,
        responses={201: s.NotificationOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _input(s.MessageSendIn, request.data)
        template = data.get("template")
        send = services.send_request_clean(
            to=data["to"],
            template=dict(template) if template else None,
            text=data.get("text"),
            media_id=data.get("media_id"),
            interactive=data.get("interactive"),
        )
        notification = services.notification_send(
            business=_business(request),
            api_key=request.user.key,  # type: ignore[union-attr]
            request=send,
        )
        return Response(s.NotificationOut(notification).data, status=status.HTTP_201_CREATED)


class MediaUploadView(ApiView):
    """Upload a file (multipart field `file`): a JPEG, PNG or WebP photo, a PDF or audio, checked
    by its content. Send it with `media_id`. The same Idempotency-Key returns the first upload."""

    required_scope = "send"
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        responses={201: s.MediaOut, 200: s.MediaOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request) -> Response:
        key = request.user.key  # type: ignore[union-attr]
        try:
            attachment, created = attachment_upload(
                business=_business(request),
                uploader_key=f"api:{key.pk}",
                file=request.FILES.get("file"),
                upload_key=request.headers.get("Idempotency-Key", ""),
            )
        except AttachmentError as error:
            retry_after = None if error.retry_after is None else max(1, math.ceil(error.retry_after))
            return problem(str(error.code), error.message, error.http_status, retry_after=retry_after)
        return Response(s.MediaOut(attachment).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MessageBatchView(IdempotentPost):
    """Send one approved template to up to 1,000 recipients: accepted at once (202), delivered
    by background jobs; read each message's status by its id, or follow the event stream."""

    required_scope = "send"

    @extend_schema(
        request=s.BatchSendIn,
        responses={202: s.BatchAcceptedOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        recipients = data.get("recipients")
        if isinstance(recipients, list) and len(recipients) > services.MAX_BATCH:
            # Before the serializer walks a huge list.
            raise NotificationError(
                ErrorCode.BATCH_TOO_LARGE, _("At most %(max)d recipients per batch.") % {"max": services.MAX_BATCH}
            )
        clean = _input(s.BatchHeadIn, data)
        accepted = services.notifications_accept_batch(
            business=_business(request),
            api_key=request.user.key,  # type: ignore[union-attr]
            template=clean["template"],
            language=clean.get("language"),
            recipients=recipients,  # each checked there (shape, number, parameters), errors by index
        )
        body = {
            "batch_id": str(accepted.batch_id),
            "accepted": len(accepted.notifications),
            "messages": [{"id": n.pk, "to": n.to} for n in accepted.notifications],
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class ConsentView(IdempotentPost):
    """Record a consent choice your business collected itself (your website, a form at the
    counter) for a Parley customer: it joins the consent ledger with source "api", and every
    send respects it. An opt-in cannot lift an opt-out the customer made in Parley."""

    required_scope = "send"

    @extend_schema(
        request=s.ConsentIn,
        responses={201: s.ConsentOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _input(s.ConsentIn, request.data)
        customer = services.consent_record_from_api(
            business=_business(request), to=data["to"], category=data["category"], granted=data["granted"]
        )
        body = {"to": customer.phone_number, "category": data["category"], "granted": data["granted"], "source": "api"}
        return Response(s.ConsentOut(body).data, status=status.HTTP_201_CREATED)


class MessageDetailView(ApiView):
    """A message sent through the API, with its status timeline."""

    @extend_schema(responses={200: s.NotificationDetailOut})
    def get(self, request: Request, notification_id: int) -> Response:
        notification = selectors.notification_get(notification_id=notification_id)
        return Response(s.NotificationDetailOut(notification).data)


class TemplateListView(IdempotentPost):
    """List the business's templates, or create one (it goes to staff review)."""

    def get_permissions(self) -> Any:
        self.required_scope = "send" if self.request.method == "POST" else "read"
        return super().get_permissions()

    @extend_schema(responses={200: s.TemplateListOut})
    def get(self, request: Request) -> Response:
        return Response({"templates": s.TemplateOut(selectors.templates_list(), many=True).data})

    @extend_schema(request=s.TemplateIn, responses={201: s.TemplateOut})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _input(s.TemplateIn, request.data)
        content = services.template_content_clean(**data)
        template = services.template_create(business=_business(request), actor=None, content=content)
        return Response(s.TemplateOut(template).data, status=status.HTTP_201_CREATED)


class ConversationListView(ApiView):
    """Conversations, most recent first; `before` (a conversation id) pages back."""

    @extend_schema(
        parameters=[OpenApiParameter("before", int), OpenApiParameter("limit", int)],
        responses={200: s.ConversationPageOut},
    )
    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, maximum=PAGE_LIMIT)
        rows, has_more = conversations_newest_first(before=_int_param(request, "before", 0), limit=limit)
        items = [
            {
                "id": c.pk,
                "contact": {
                    "id": c.contact.pk,
                    "name": c.contact.display_name,
                    "phone": c.contact.customer.phone_number,
                },
                "status": c.status,
                "last_message_at": c.last_message_at,
                "window_expires_at": c.window_expires_at,
            }
            for c in rows
        ]
        return Response({"conversations": s.ConversationOut(items, many=True).data, "has_more": has_more})


class ConversationMessagesView(ApiView):
    """A conversation's messages, newest first (internal notes stay in the inbox)."""

    @extend_schema(
        parameters=[OpenApiParameter("before", int), OpenApiParameter("limit", int)], responses={200: s.MessagePageOut}
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        limit = _int_param(request, "limit", 50, maximum=PAGE_LIMIT)
        page = conversation_messages_newest_first(
            conversation_id=conversation_id, before=_int_param(request, "before", 0), limit=limit
        )
        if page is None:
            raise NotificationError(ErrorCode.NOT_FOUND, _("This conversation does not exist."))
        rows, has_more = page
        return Response({"messages": s.MessageOut(rows, many=True).data, "has_more": has_more})


class EventListView(ApiView):
    """The business's event stream after `after`, in id order with no gaps: a system that was
    down asks from the last id it processed and gets exactly what it missed."""

    @extend_schema(
        parameters=[OpenApiParameter("after", int, required=True), OpenApiParameter("limit", int)],
        responses={200: s.EventPageOut},
    )
    def get(self, request: Request) -> Response:
        after = _int_param(request, "after", 0)
        limit = _int_param(request, "limit", EVENT_LIMIT, maximum=EVENT_LIMIT) or EVENT_LIMIT
        if after + 1 < first_retained_event_id() and after < last_event_id():
            raise NotificationError(
                ErrorCode.EVENTS_EXPIRED, _("Events before this point are no longer kept (30 days).")
            )
        rows = events_after(after=after, limit=limit + 1)
        events = []
        for event_id, type_, frame in rows[:limit]:
            data = json.loads(frame)
            data.pop("id", None)
            data.pop("type", None)
            events.append({"id": event_id, "type": type_, "data": data})
        next_after = events[-1]["id"] if events else after
        return Response({"events": events, "next_after": next_after, "has_more": len(rows) > limit})


@extend_schema(exclude=True)
class NotFoundView(ApiView):
    """Any other path under /api/v1/: a problem+json 404 a client can read, not the site's HTML
    page, and a hint when the path only differs by a trailing slash."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def _answer(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        message = _("There is no API endpoint at %(path)s.") % {"path": request.path}
        if request.path.endswith("/"):
            try:
                resolve(request.path.rstrip("/"))
            except Resolver404:
                pass
            else:
                message += " " + _("API paths have no trailing slash: %(path)s") % {"path": request.path.rstrip("/")}
        return problem(ErrorCode.NOT_FOUND, message, status.HTTP_404_NOT_FOUND)

    get = post = put = patch = delete = _answer  # HEAD follows GET
