"""API shapes: input serializers check what callers send, output serializers say what they get."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import Notification, Template

# --- input -------------------------------------------------------------------------------------


class TextField(serializers.CharField):
    """Text only: DRF's CharField turns any number into its text (`"text": 1e400` was sent as
    "inf"), which no caller means; anything but a JSON string is refused like any bad value."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class TemplateRefIn(serializers.Serializer):
    name = TextField(max_length=60)
    language = TextField(max_length=8, required=False, allow_blank=True)
    parameters = serializers.DictField(child=serializers.JSONField(), required=False)


class MessageSendIn(serializers.Serializer):
    to = TextField(max_length=40, help_text="E.164, e.g. +4915112345678")
    template = TemplateRefIn(required=False)
    text = TextField(max_length=4096, required=False, help_text="Free text: only inside the 24-hour window")
    media_id = serializers.IntegerField(
        min_value=1, required=False, help_text="A file uploaded with POST /api/v1/media (image, PDF or audio)"
    )
    interactive = serializers.JSONField(
        required=False,
        help_text=(
            'Quick-reply buttons or a list: {"type": "buttons", "options": [{"id": "rebook", "title": "Rebook"}]} '
            '(up to 3 buttons) or {"type": "list", "button": "Choose", "options": [...]} (up to 10). '
            "The customer's tap comes back as message.received with choice_id."
        ),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "template" in attrs and attrs.get("text"):
            raise serializers.ValidationError("Send either a template or text.")
        if "template" not in attrs and not attrs.get("text") and not attrs.get("media_id"):
            raise serializers.ValidationError("Send a template, text or a file.")
        return attrs


class MediaOut(serializers.Serializer):
    """An uploaded file: send it with `media_id` within a day, or it is removed."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["image", "document", "audio"])
    name = serializers.CharField()
    size = serializers.IntegerField()
    content_type = serializers.CharField()


class BatchRecipientIn(serializers.Serializer):
    to = TextField(max_length=40)
    parameters = serializers.DictField(child=serializers.JSONField(), required=False)


class BatchHeadIn(serializers.Serializer):
    """A batch's own fields. Its recipients are checked by the service, each error with the
    recipient's index: a nested serializer cost ~100 µs a recipient, half of a batch's accept."""

    template = TextField(max_length=60)
    language = TextField(max_length=8, required=False, allow_blank=True)


class BatchSendIn(BatchHeadIn):
    """The whole request, as the API schema documents it."""

    recipients = BatchRecipientIn(many=True, allow_empty=False, max_length=1000)  # type: ignore[call-arg]


class TemplateIn(serializers.Serializer):
    name = TextField(max_length=60)
    language = TextField(max_length=8)
    category = serializers.ChoiceField(choices=Template.Category.choices)
    header = TextField(max_length=60, required=False, allow_blank=True, default="")
    body = TextField(max_length=1024)
    footer = TextField(max_length=60, required=False, allow_blank=True, default="")
    buttons = serializers.ListField(child=TextField(max_length=25), max_length=3, required=False, default=list)


# --- output ------------------------------------------------------------------------------------


class PriceOut(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=8, decimal_places=4)
    currency = serializers.CharField()
    per = serializers.ChoiceField(
        choices=["conversation", "message", ""],
        help_text="How it was charged: the conversation this message opened (later messages of it "
        'cost 0), one template message (per-message pricing), or "" when nothing was billed.',
    )


class NotificationOut(serializers.Serializer):
    id = serializers.IntegerField()
    to = serializers.CharField()
    template = serializers.CharField(source="template_name", allow_blank=True)
    category = serializers.CharField()
    status = serializers.SerializerMethodField()
    failure = serializers.SerializerMethodField()
    price = serializers.SerializerMethodField()
    message_id = serializers.IntegerField(allow_null=True)
    conversation_id = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_status(self, obj: Notification) -> str:
        return notification_status(obj)

    def get_failure(self, obj: Notification) -> dict[str, str] | None:
        if obj.status != Notification.Status.FAILED:
            return None
        return {"code": obj.failure_code, "reason": obj.failure_reason}

    @extend_schema_field(PriceOut)
    def get_price(self, obj: Notification) -> dict[str, str]:
        # Always four places, as the rate card states prices (a freshly computed 0 has none).
        amount = Decimal(obj.price).quantize(Decimal("0.0001"))
        return {"amount": str(amount), "currency": obj.currency, "per": obj.charged_per}

    def get_conversation_id(self, obj: Notification) -> int | None:
        return obj.message.conversation_id if obj.message is not None else None


class NotificationDetailOut(NotificationOut):
    timeline = serializers.SerializerMethodField()

    def get_timeline(self, obj: Notification) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = [{"status": "accepted", "at": obj.created_at}]
        if obj.status == Notification.Status.FAILED:
            steps.append({"status": "failed", "at": obj.failed_at, "reason": obj.failure_reason})
            return steps
        if obj.sent_at:
            steps.append({"status": "sent", "at": obj.sent_at})
        message = obj.message
        if message is not None and message.delivered_at:
            steps.append({"status": "delivered", "at": message.delivered_at})
        if message is not None and message.read_at:
            steps.append({"status": "read", "at": message.read_at})
        return steps


def notification_status(obj: Notification) -> str:
    """accepted → sent → delivered → read, or failed: the message's receipts move it on."""
    if obj.status in (Notification.Status.FAILED, Notification.Status.ACCEPTED) or obj.message is None:
        return obj.status
    if obj.message.read_at:
        return "read"
    if obj.message.delivered_at:
        return "delivered"
    return "sent"


class BatchMessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    to = serializers.CharField()


class BatchAcceptedOut(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted = serializers.IntegerField()
    messages = BatchMessageOut(many=True)


class TemplateOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    language = serializers.CharField()
    category = serializers.CharField()
    header = serializers.CharField()
    body = serializers.CharField()
    footer = serializers.CharField()
    buttons = serializers.ListField(child=serializers.CharField())
    placeholders = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    rejection_reason = serializers.CharField()
    updated_at = serializers.DateTimeField()


class ContactOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField()


class ConversationOut(serializers.Serializer):
    id = serializers.IntegerField()
    contact = ContactOut()
    status = serializers.CharField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    window_expires_at = serializers.DateTimeField(allow_null=True)


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    direction = serializers.CharField()
    author_kind = serializers.CharField()
    kind = serializers.CharField()
    body = serializers.CharField()
    template = serializers.CharField(source="template_name")
    status = serializers.CharField()
    event_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)


class EventOut(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.DictField()  # type: ignore[assignment]  # the event's payload, named as in the API


class EventPageOut(serializers.Serializer):
    events = EventOut(many=True)
    next_after = serializers.IntegerField()
    has_more = serializers.BooleanField()


class TemplateListOut(serializers.Serializer):
    templates = TemplateOut(many=True)


class ConversationPageOut(serializers.Serializer):
    conversations = ConversationOut(many=True)
    has_more = serializers.BooleanField()


class MessagePageOut(serializers.Serializer):
    messages = MessageOut(many=True)
    has_more = serializers.BooleanField()


class ConsentIn(serializers.Serializer):
    to = serializers.CharField(max_length=40, help_text="E.164, e.g. +4915112345678")
    category = serializers.ChoiceField(choices=["marketing", "utility"])
    granted = serializers.BooleanField(help_text="true: opted in; false: opted out")


class ConsentOut(serializers.Serializer):
    to = serializers.CharField()
    category = serializers.CharField()
    granted = serializers.BooleanField()
    # The metaclass moves declared fields out of the class, so this does not shadow Field.source.
    source = serializers.CharField()  # type: ignore[assignment]
