"""Notifications reads, in the business's schema already entered by the caller."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from notifications.errors import ErrorCode, NotificationError
from notifications.models import ApiKey, ApiRequest, Notification, Template, WebhookDelivery, WebhookEndpoint


def _pk(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def templates_list() -> list[Template]:
    return list(Template.objects.order_by("name", "language"))


def template_get(*, template_id: Any) -> Template:
    template = Template.objects.filter(pk=_pk(template_id)).first()
    if template is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("This template does not exist."))
    return template


def api_keys_list() -> list[ApiKey]:
    return list(ApiKey.objects.select_related("created_by").order_by("revoked_at", "-created_at"))


def api_requests_recent(*, limit: int = 50) -> list[ApiRequest]:
    return list(ApiRequest.objects.select_related("api_key").order_by("-id")[:limit])


def notification_get(*, notification_id: Any) -> Notification:
    notification = Notification.objects.select_related("message").filter(pk=_pk(notification_id)).first()
    if notification is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("This message does not exist."))
    return notification


def webhook_endpoints_list() -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.order_by("-is_active", "-created_at"))


def webhook_deliveries_recent(*, limit: int = 30) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.select_related("endpoint").order_by("-created_at", "-id")[:limit])
