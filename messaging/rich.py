"""Rich parts of a send (issue 13): a quoted reply, an attachment, interactive buttons or a
list, and a customer's tap on one of them. `check_rich` validates the shapes before a send joins
a group (no database); `resolve` runs inside the send core's transaction, on the locked
conversation, and decides what the references point at (a refusal is the request's outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _

from messaging.errors import MessagingError, MessagingErrorCode
from messaging.ids import client_int

if TYPE_CHECKING:
    from attachments.models import Attachment
    from messaging.models import Conversation, Message

MAX_BUTTONS = 3
MAX_LIST_OPTIONS = 10
MAX_BUTTON_TITLE = 25  # templates' button labels (notifications.models.Template)
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_OPTION_ID = 64


@dataclass(frozen=True)
class RichParts:
    reply_to_id: int | None = None
    attachment_id: int | None = None
    interactive: dict[str, Any] | None = None
    # A tap: the interactive message and the option's id (the option's title becomes the body).
    choice_message_id: int | None = None
    choice_id: str = ""
    # Set by `resolve`, inside the transaction.
    reply_to: Message | None = None
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def body_optional(self) -> bool:
        """A file or a tap says enough without text."""
        return self.attachment_id is not None or self.choice_message_id is not None


def _invalid(message: str) -> MessagingError:
    return MessagingError(MessagingErrorCode.INVALID, message)


def _option_text(value: Any, *, limit: int, what: str) -> str:
    text = value.replace("\x00", "").strip() if isinstance(value, str) else ""
    if not text or len(text) > limit:
        raise _invalid(_("Each %(what)s needs a title of at most %(max)d characters.") % {"what": what, "max": limit})
    return text


def clean_interactive(value: Any) -> dict[str, Any] | None:
    """Up to three quick-reply buttons, or a list of up to ten options (each with a stable id the
    customer's tap comes back with)."""
    if value in (None, ""):
        return None
    if not isinstance(value, dict) or value.get("type") not in ("buttons", "list"):
        raise _invalid(_("interactive must be buttons or a list."))
    kind = value["type"]
    options = value.get("options")
    most = MAX_BUTTONS if kind == "buttons" else MAX_LIST_OPTIONS
    if not isinstance(options, list) or not 1 <= len(options) <= most:
        raise _invalid(
            _("Buttons take 1 to %(buttons)d options; a list 1 to %(rows)d.")
            % {"buttons": MAX_BUTTONS, "rows": MAX_LIST_OPTIONS}
        )
    cleaned: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, option in enumerate(options):
        if isinstance(option, str):
            option = {"title": option}
        if not isinstance(option, dict):
            raise _invalid(_("Each option needs a title."))
        title = _option_text(
            option.get("title"),
            limit=MAX_BUTTON_TITLE if kind == "buttons" else MAX_ROW_TITLE,
            what=_("button") if kind == "buttons" else _("option"),
        )
        option_id = option.get("id") or f"opt{index + 1}"
        if not isinstance(option_id, str) or len(option_id) > MAX_OPTION_ID or option_id in seen:
            raise _invalid(_("Each option needs its own id of at most 64 characters."))
        seen.add(option_id)
        description = option.get("description")
        description = (
            description.strip()[:MAX_ROW_DESCRIPTION] if kind == "list" and isinstance(description, str) else ""
        )
        cleaned.append({"id": option_id, "title": title, "description": description})
    button = value.get("button")
    # A list opens from a button with this label; quick-reply buttons need none.
    label = ""
    if kind == "list":
        label = _option_text(button, limit=MAX_BUTTON_TITLE, what=_("button")) if button else _("Choose")
    return {"type": kind, "options": cleaned, "button": label}


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _optional_id(value: Any) -> int | None:
    return None if _absent(value) else client_int(value)


def check_rich(
    *, reply_to: Any = None, attachment_id: Any = None, interactive: Any = None, choice: Any = None
) -> RichParts | None:
    """Shapes only. `choice` is {"message_id": <id>, "option_id": "<id>"}."""
    if _absent(reply_to) and _absent(attachment_id) and _absent(interactive) and _absent(choice):
        return None  # a plain text message, most sends: no parts made and compared
    parts = RichParts(
        reply_to_id=_optional_id(reply_to),
        attachment_id=_optional_id(attachment_id),
        interactive=clean_interactive(interactive),
    )
    if choice not in (None, ""):
        if not isinstance(choice, dict) or not isinstance(choice.get("option_id"), str):
            raise _invalid(_("choice takes message_id and option_id."))
        parts = replace(parts, choice_message_id=client_int(choice.get("message_id")), choice_id=choice["option_id"])
    if parts == RichParts():
        return None
    return parts


def resolve(
    *, parts: RichParts, conversation: Conversation, author_key: str, origin: str, body: str
) -> tuple[RichParts, str]:
    """Inside the send core's transaction: the quoted message (this conversation's, visible to the
    sender), the tapped option (of a business message to this customer), the attachment (the
    sender's own upload, not sent yet). Returns the parts with their rows, and the body (a tap's
    body is the option's title)."""
    from attachments.models import Attachment
    from messaging.models import Message

    visible = Message.objects.filter(conversation_id=conversation.pk, deleted_at__isnull=True)
    if origin != "agent":
        visible = visible.exclude(direction=Message.Direction.INTERNAL)
    reply_to: Message | None = None
    choice_id = ""
    if parts.choice_message_id is not None:
        if origin != "customer":
            raise _invalid(_("Only the customer can choose an option."))
        asked = (
            visible.prefetch_related("attachments")
            .filter(pk=parts.choice_message_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        options = (asked.interactive or {}).get("options", []) if asked else []
        option = next((o for o in options if o.get("id") == parts.choice_id), None)
        if asked is None or option is None:
            raise _invalid(_("This option is no longer available."))
        reply_to, choice_id = asked, option["id"]
        body = body or option["title"]
    elif parts.reply_to_id is not None:
        reply_to = (
            visible.select_related("author_user").prefetch_related("attachments").filter(pk=parts.reply_to_id).first()
        )
        if reply_to is None:
            raise _invalid(_("The message you reply to does not exist."))
    attachments: list[Attachment] = []
    if parts.attachment_id is not None:
        found = (
            Attachment.objects.select_for_update()
            .filter(pk=parts.attachment_id, uploader_key=author_key, message__isnull=True, removed_at__isnull=True)
            .first()
        )
        if found is None or found.conversation_id not in (None, conversation.pk):
            raise _invalid(_("This file cannot be sent (it was sent already, or it expired). Upload it again."))
        attachments.append(found)
    if not body and not attachments:
        raise MessagingError(MessagingErrorCode.EMPTY, _("Write a message first."))
    return replace(parts, reply_to=reply_to, choice_id=choice_id, attachments=attachments), body


def preview(body: str, parts: RichParts | None) -> str:
    """The conversation list's one line: the text, else what was sent."""
    if body or parts is None or not parts.attachments:
        return body[:140]
    kind = parts.attachments[0].kind
    return {"image": _("📷 Photo"), "audio": _("🎤 Audio"), "document": _("📄 Document")}.get(kind, _("File"))
