"""Collaboration use cases: labels, canned replies, macros and @mention notifications.

Each runs in the business's schema (the request's, or a `schema_context` entered by the caller),
owns its transaction and publishes its frames after commit. Assigning, setting a status and
replying go through messaging's services (and so through the one send core); a macro only
strings them together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from collab import events, selectors
from collab.errors import CollabError, CollabErrorCode
from collab.models import AgentNotification, CannedReply, ConversationLabel, Label, Macro
from customers.selectors import customer_has_blocked
from messaging import selectors as messaging_selectors
from messaging import services as messaging_services
from messaging.errors import MessagingError
from messaging.models import Conversation, Message
from messaging.sending import check_agent_send, without_nul
from tenancy.models import Business

MAX_LABELS_PER_CONVERSATION = 20


def _membership(business: Business, user: User) -> Membership:
    membership = Membership.objects.filter(business_id=business.pk, user_id=user.pk).first()
    if membership is None:
        raise CollabError(CollabErrorCode.NOT_FOUND, _("This item does not exist."))
    return membership


def _manager(business: Business, user: User) -> None:
    if not _membership(business, user).can_manage:
        raise CollabError(CollabErrorCode.FORBIDDEN, _("Only the business's owners and admins can change this."))


def _conversation(conversation_id: Any) -> Conversation:
    try:
        return messaging_selectors.conversation_for_agent(conversation_id=conversation_id)
    except MessagingError as error:
        raise CollabError(CollabErrorCode.NOT_FOUND, error.message) from None


def _clean_text(value: Any, *, limit: int, what: str) -> str:
    if not isinstance(value, str):
        raise CollabError(CollabErrorCode.INVALID, _("%(what)s must be text.") % {"what": what})
    text = without_nul(value).strip()
    if not text:
        raise CollabError(CollabErrorCode.INVALID, _("%(what)s cannot be empty.") % {"what": what})
    if len(text) > limit:
        raise CollabError(
            CollabErrorCode.INVALID, _("%(what)s is too long (at most %(n)d characters).") % {"what": what, "n": limit}
        )
    return text


# --- labels -------------------------------------------------------------------------------------


def label_create(*, business: Business, user: User, name: Any, colour: Any) -> Label:
    _manager(business, user)
    name = _clean_text(name, limit=40, what=_("The name"))
    if colour not in Label.Colour.values:
        raise CollabError(CollabErrorCode.INVALID, _("Pick one of the colours."))
    if Label.objects.filter(name__iexact=name).exists():
        raise CollabError(CollabErrorCode.DUPLICATE, _("A label with this name exists already."))
    try:
        with transaction.atomic():
            return Label.objects.create(name=name, colour=colour)
    except IntegrityError:
        raise CollabError(CollabErrorCode.DUPLICATE, _("A label with this name exists already.")) from None


def label_delete(*, business: Business, user: User, label_id: Any) -> None:
    _manager(business, user)
    with transaction.atomic():
        label = Label.objects.select_for_update().filter(pk=selectors.parse_id(label_id)).first()
        if label is None:
            raise CollabError(CollabErrorCode.NOT_FOUND, _("This item does not exist."))
        # Macros that applied it simply stop doing so.
        for macro in Macro.objects.select_for_update().all():
            labels = macro.actions.get("labels") or []
            if label.pk in labels:
                macro.actions["labels"] = [x for x in labels if x != label.pk]
                macro.save(update_fields=["actions", "updated_at"])
        label.delete()


def conversation_labels_set(*, business: Business, user: User, conversation_id: Any, label_ids: Any) -> list[Label]:
    """The conversation carries exactly these labels afterwards."""
    _membership(business, user)
    wanted = _label_ids(label_ids)
    return _labels_change(business, user, conversation_id, add=wanted, replace=True)


def conversation_labels_add(*, business: Business, user: User, conversation_id: Any, label_ids: Any) -> list[Label]:
    _membership(business, user)
    return _labels_change(business, user, conversation_id, add=_label_ids(label_ids), replace=False)


def _label_ids(label_ids: Any) -> set[int]:
    if not isinstance(label_ids, list) or len(label_ids) > MAX_LABELS_PER_CONVERSATION:
        raise CollabError(
            CollabErrorCode.INVALID,
            _("Send a list of at most %(n)d label ids.") % {"n": MAX_LABELS_PER_CONVERSATION},
        )
    ids = {selectors.parse_id(x) for x in label_ids}
    if len(ids) != Label.objects.filter(pk__in=ids).count():
        raise CollabError(CollabErrorCode.INVALID, _("One of these labels does not exist."))
    return ids


def _labels_change(
    business: Business, user: User, conversation_id: Any, *, add: set[int], replace: bool
) -> list[Label]:
    conversation = _conversation(conversation_id)
    with transaction.atomic():
        # One writer per conversation at a time: the lock orders concurrent label changes.
        Conversation.objects.select_for_update(of=("self",)).filter(pk=conversation.pk).first()
        current = set(ConversationLabel.objects.filter(conversation=conversation).values_list("label_id", flat=True))
        removed = current - add if replace else set()
        added = add - current
        if removed:
            ConversationLabel.objects.filter(conversation=conversation, label_id__in=removed).delete()
        ConversationLabel.objects.bulk_create(
            [ConversationLabel(conversation=conversation, label_id=i, added_by=user) for i in sorted(added)]
        )
        labels = list(Label.objects.filter(pk__in=(current - removed) | added).order_by("name"))
        if added or removed:
            events.publish_labels(
                schema_name=business.schema_name,
                conversation_id=conversation.pk,
                labels=[selectors.label_shape(label) for label in labels],
            )
    return labels


# --- canned replies --------------------------------------------------------------------------


def canned_reply_save(
    *, business: Business, user: User, shortcut: Any, title: Any, body: Any, reply_id: Any = None
) -> CannedReply:
    """Create (no `reply_id`) or change a canned reply."""
    _manager(business, user)
    raw = _clean_text(shortcut, limit=40, what=_("The shortcut")).lstrip("/")
    short = slugify(raw)
    if not short or short != raw.lower():
        raise CollabError(
            CollabErrorCode.INVALID, _("A shortcut uses only letters, digits, hyphens and underscores, e.g. “refund”.")
        )
    title = _clean_text(title, limit=100, what=_("The title"))
    body = _clean_text(body, limit=4096, what=_("The text"))
    with transaction.atomic():
        reply = CannedReply() if reply_id in (None, "") else selectors.canned_reply_get(reply_id=reply_id)
        if CannedReply.objects.filter(shortcut=short).exclude(pk=reply.pk).exists():
            raise CollabError(CollabErrorCode.DUPLICATE, _("The shortcut /%(s)s is taken.") % {"s": short})
        reply.shortcut, reply.title, reply.body = short, title, body
        try:
            with transaction.atomic():
                reply.save()
        except IntegrityError:
            raise CollabError(CollabErrorCode.DUPLICATE, _("The shortcut /%(s)s is taken.") % {"s": short}) from None
    return reply


def canned_reply_delete(*, business: Business, user: User, reply_id: Any) -> None:
    _manager(business, user)
    with transaction.atomic():
        reply = selectors.canned_reply_get(reply_id=reply_id)
        for macro in Macro.objects.select_for_update().filter(actions__canned_reply=reply.pk):
            macro.actions["canned_reply"] = None
            macro.save(update_fields=["actions", "updated_at"])
        reply.delete()


# --- macros ------------------------------------------------------------------------------------


def _macro_actions(business: Business, actions: Any) -> dict[str, Any]:
    if not isinstance(actions, dict):
        raise CollabError(CollabErrorCode.INVALID, _("A macro's actions are an object."))
    labels = sorted(_label_ids(actions.get("labels") or []))
    canned = actions.get("canned_reply")
    canned = selectors.canned_reply_get(reply_id=canned).pk if canned not in (None, "") else None
    assign = actions.get("assign")
    if assign in ("", None):
        assign = None
    elif assign not in ("me", "nobody"):
        member = Membership.objects.filter(business_id=business.pk, user_id=selectors.parse_id(assign)).first()
        if member is None:
            raise CollabError(CollabErrorCode.INVALID, _("Only members of this business can be assigned."))
        assign = member.user_id
    status = actions.get("status") or None
    if status is not None and status not in Conversation.Status.values:
        raise CollabError(CollabErrorCode.INVALID, _("Unknown conversation status."))
    if not (labels or canned or assign or status):
        raise CollabError(CollabErrorCode.INVALID, _("Give the macro at least one action."))
    return {"labels": labels, "canned_reply": canned, "assign": assign, "status": status}


def macro_save(*, business: Business, user: User, name: Any, actions: Any, macro_id: Any = None) -> Macro:
    _manager(business, user)
    name = _clean_text(name, limit=60, what=_("The name"))
    cleaned = _macro_actions(business, actions)
    with transaction.atomic():
        macro = Macro() if macro_id in (None, "") else selectors.macro_get(macro_id=macro_id)
        if Macro.objects.filter(name__iexact=name).exclude(pk=macro.pk).exists():
            raise CollabError(CollabErrorCode.DUPLICATE, _("A macro with this name exists already."))
        macro.name, macro.actions = name, cleaned
        macro.save()
    return macro


def macro_delete(*, business: Business, user: User, macro_id: Any) -> None:
    _manager(business, user)
    selectors.macro_get(macro_id=macro_id).delete()


@dataclass
class MacroOutcome:
    conversation: Conversation
    done: list[str] = field(default_factory=list)
    reply: Message | None = None


def macro_apply(*, business: Business, user: User, macro_id: Any, conversation_id: Any) -> MacroOutcome:
    """Apply a macro to a conversation in one click: its canned reply (sent through the send
    core), its labels, the assignment, then the status (a reply before resolving). The reply goes
    first and is checked before that (window closed, blocked), so a refused reply changes nothing."""
    _membership(business, user)
    macro = selectors.macro_get(macro_id=macro_id)
    conversation = _conversation(conversation_id)
    labels = [i for i in macro.actions.get("labels") or [] if Label.objects.filter(pk=i).exists()]
    assign = macro.actions.get("assign")
    status = macro.actions.get("status")
    body = ""
    if macro.actions.get("canned_reply"):
        reply = CannedReply.objects.filter(pk=macro.actions["canned_reply"]).first()
        if reply is None:
            raise CollabError(CollabErrorCode.REFUSED, _("This macro's canned reply was deleted."))
        body = selectors.canned_reply_text(
            body=reply.body,
            contact_name=conversation.contact.display_name,
            agent_name=user.get_short_name(),
            business_name=business.display_name,
        )
    client_msg_id = f"macro-{macro.pk}-{uuid.uuid4().hex[:16]}"
    try:
        if body:
            check_agent_send(
                business=business, user=user, conversation_id=conversation.pk, body=body, client_msg_id=client_msg_id
            )
            # The writer refuses these too, but by then the labels would be on: ask first.
            if conversation.window_expires_at is None or conversation.window_expires_at <= timezone.now():
                raise CollabError(
                    CollabErrorCode.REFUSED,
                    _("The 24-hour service window is closed: this macro's reply cannot be sent, so nothing was done."),
                )
            if customer_has_blocked(customer_id=conversation.contact.customer_id, business_id=business.pk):
                raise CollabError(CollabErrorCode.REFUSED, _("This customer blocked your business: nothing was done."))
        outcome = MacroOutcome(conversation=conversation)
        # The reply first: the send core may still refuse it (another agent holds the
        # conversation, the business is suspended), and then nothing else has happened either.
        if body:
            result = messaging_services.message_send_agent(
                business=business, user=user, conversation_id=conversation.pk, body=body, client_msg_id=client_msg_id
            )
            outcome.reply = result.message
            outcome.done.append("reply")
        if labels:
            conversation_labels_add(business=business, user=user, conversation_id=conversation.pk, label_ids=labels)
            outcome.done.append("labels")
        if assign is not None:
            assignee = {"me": user.pk, "nobody": None}.get(assign, assign)
            messaging_services.conversation_assign(
                business=business, user=user, conversation_id=conversation.pk, assignee_id=assignee
            )
            outcome.done.append("assign")
        if status:
            messaging_services.conversation_set_status(
                business=business, user=user, conversation_id=conversation.pk, status=status
            )
            outcome.done.append("status")
    except MessagingError as error:
        raise CollabError(CollabErrorCode.REFUSED, error.message) from None
    outcome.conversation = _conversation(conversation.pk)
    return outcome


# --- @mentions and the notification list ---------------------------------------------------------


def note_mentions_notify(*, business: Business, author: User, message: Message) -> list[AgentNotification]:
    """An internal note was committed: each member it names with @ (except its author) gets a
    notification, live on their open inboxes and in their list. Registered with messaging
    (`messaging.services.on_note_created`) from CollabConfig.ready()."""
    if message.kind != Message.Kind.NOTE:
        return []
    user_ids = [uid for uid in selectors.mentioned_user_ids(business=business, body=message.body) if uid != author.pk]
    if not user_ids:
        return []
    excerpt = message.body if len(message.body) <= 200 else message.body[:199] + "…"
    made = []
    with transaction.atomic():
        for user_id in user_ids:
            notification, created = AgentNotification.objects.get_or_create(
                user_id=user_id,
                message=message,
                defaults={"conversation_id": message.conversation_id, "actor": author, "excerpt": excerpt},
            )
            if not created:
                continue
            made.append(notification)
            notification = AgentNotification.objects.select_related("conversation__contact__customer", "actor").get(
                pk=notification.pk
            )
            events.publish_mention(
                schema_name=business.schema_name,
                user_id=user_id,
                notification=selectors.notification_shape(notification),
                unread=selectors.notifications_unread(user_id=user_id),
            )
    return made


def notifications_mark_read(*, business: Business, user: User, ids: Any = None) -> int:
    """Mark the user's notifications read: the listed ids, or all of them (`ids` None)."""
    _membership(business, user)
    qs = AgentNotification.objects.filter(user_id=user.pk, read_at__isnull=True)
    if ids is not None:
        if not isinstance(ids, list) or len(ids) > 500:
            raise CollabError(CollabErrorCode.INVALID, _("Send a list of notification ids."))
        qs = qs.filter(pk__in=[selectors.parse_id(i) for i in ids])
    return qs.update(read_at=timezone.now())
