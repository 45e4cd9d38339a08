"""Platform staff reading a business's conversations in the admin. Every look is recorded in the
audit log (who, when, which business, which conversation; never message text) before anything
is shown, and the business's owners see those records on their privacy page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from audit.services import audit_record
from messaging.models import Conversation, Message
from tenancy.models import PUBLIC_SCHEMA, Business

STAFF_ACCESS_ACTION = "staff.viewed_conversations"


def _business(request: HttpRequest, business_id: int) -> Business:
    if not request.user.is_staff:
        raise PermissionDenied
    business = Business.objects.exclude(schema_name=PUBLIC_SCHEMA).filter(pk=business_id).first()
    if business is None:
        raise Http404
    return business


def staff_access_record(*, request: HttpRequest, business: Business, target: str) -> None:
    audit_record(
        action=STAFF_ACCESS_ACTION,
        actor=request.user,  # type: ignore[arg-type]
        business=business,
        target=target,
        data={"path": request.path[:200]},
    )


def staff_conversations_view(request: HttpRequest, business_id: int) -> HttpResponse:
    business = _business(request, business_id)
    staff_access_record(request=request, business=business, target=_("conversation list"))
    with schema_context(business.schema_name):
        conversations = list(
            Conversation.objects.select_related("contact__customer").order_by("-last_message_at")[:200]
        )
    return render(
        request,
        "customers/admin_conversations.html",
        {
            **admin.site.each_context(request),
            "title": business.display_name,
            "business": business,
            "conversations": conversations,
        },
    )


def staff_conversation_view(request: HttpRequest, business_id: int, conversation_id: int) -> HttpResponse:
    business = _business(request, business_id)
    with schema_context(business.schema_name):
        conversation = Conversation.objects.select_related("contact__customer").filter(pk=conversation_id).first()
        if conversation is None:
            raise Http404
        staff_access_record(
            request=request, business=business, target=_("conversation #%(id)d") % {"id": conversation.pk}
        )
        messages: list[Any] = list(Message.objects.filter(conversation=conversation).order_by("-id")[:200])
    messages.reverse()
    return render(
        request,
        "customers/admin_conversation.html",
        {
            **admin.site.each_context(request),
            "title": f"{business.display_name} · #{conversation.pk}",
            "business": business,
            "conversation": conversation,
            "messages_list": messages,
        },
    )
