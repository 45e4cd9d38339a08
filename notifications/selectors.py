"""Notifications reads, in the business's schema already entered by the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from notifications.errors import ErrorCode, NotificationError
from notifications.models import ApiKey, ApiRequest, Notification, Template, WebhookDelivery, WebhookEndpoint
from tenancy.models import Business


def pk_or_zero(value: Any) -> int:
    """An id from a URL or a form: anything that is not a number names no row (0)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def require_owner(business: Business, actor: User, refusal: str) -> None:
    """Keys and webhooks are the owner's: anyone else gets `refusal` (translated by the caller)."""
    if not Membership.objects.filter(business_id=business.pk, user_id=actor.pk, role=Membership.Role.OWNER).exists():
        raise NotificationError(ErrorCode.FORBIDDEN, refusal)


def templates_list() -> list[Template]:
    return list(Template.objects.order_by("name", "language"))


def template_get(*, template_id: Any) -> Template:
    template = Template.objects.filter(pk=pk_or_zero(template_id)).first()
    if template is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("This template does not exist."))
    return template


def api_keys_list() -> list[ApiKey]:
    return list(ApiKey.objects.select_related("created_by").order_by("revoked_at", "-created_at"))


def api_requests_recent(*, limit: int = 50) -> list[ApiRequest]:
    return list(ApiRequest.objects.select_related("api_key").order_by("-id")[:limit])


def notification_get(*, notification_id: Any) -> Notification:
    notification = Notification.objects.select_related("message").filter(pk=pk_or_zero(notification_id)).first()
    if notification is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("This message does not exist."))
    return notification


def webhook_endpoints_list() -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.order_by("-is_active", "-created_at"))


def webhook_deliveries_recent(*, limit: int = 30) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.select_related("endpoint").order_by("-created_at", "-id")[:limit])


# --- the inbox's template picker (a conversation whose 24-hour window has closed) -----------------


def inbox_conversation(*, conversation_id: Any) -> Any:
    """The conversation an agent picks a template for, with its customer (this business's schema)."""
    from messaging.models import Conversation

    conversation = (
        Conversation.objects.select_related("contact__customer").filter(pk=pk_or_zero(conversation_id)).first()
    )
    if conversation is None:
        raise NotificationError(ErrorCode.NOT_FOUND, _("This conversation does not exist."))
    return conversation


def inbox_template_choices(*, business: Business, conversation_id: Any) -> list[dict[str, Any]]:
    """The approved templates an agent may send in this conversation, each with its placeholders
    and what sending it now would cost this customer (billing's quote under the active model)."""
    from django.utils import timezone

    from billing.selectors import price_quote

    conversation = inbox_conversation(conversation_id=conversation_id)
    customer = conversation.contact.customer
    window_open = bool(conversation.window_expires_at and conversation.window_expires_at > timezone.now())
    quotes: dict[str, Any] = {}
    choices = []
    for template in Template.objects.filter(status=Template.Status.APPROVED).order_by("name", "language"):
        if template.category not in quotes:
            quotes[template.category] = price_quote(
                business=business,
                customer_id=customer.pk,
                customer_phone=customer.phone_number,
                category=template.category,
                service_window_open=window_open,
            )
        quote = quotes[template.category]
        choices.append(
            {
                "id": template.pk,
                "name": template.name,
                "language": template.language,
                "category": template.category,
                "category_label": str(template.get_category_display()),
                "header": template.header,
                "body": template.body,
                "footer": template.footer,
                "buttons": list(template.buttons),
                "placeholders": template.placeholders,
                "price": {"amount": f"{quote.amount:.4f}", "currency": "EUR", "per": quote.per, "opens": quote.opens},
            }
        )
    return choices


# --- the dashboard (notifications.dashboard, notifications.notices) -------------------------------


def template_counts() -> dict[str, int]:
    """Approved templates and templates in staff review."""
    return Template.objects.aggregate(
        approved=Count("pk", filter=Q(status=Template.Status.APPROVED)),
        pending=Count("pk", filter=Q(status=Template.Status.PENDING)),
    )


def active_api_key_count() -> int:
    return ApiKey.objects.filter(revoked_at__isnull=True).count()


def api_request_count(*, since: datetime) -> int:
    return ApiRequest.objects.filter(created_at__gte=since).count()


def webhook_endpoints_disabled(*, limit: int) -> list[tuple[str, str]]:
    """Endpoints Parley switched off: (url, reason)."""
    return list(WebhookEndpoint.objects.filter(is_active=False).values_list("url", "disabled_reason")[:limit])
