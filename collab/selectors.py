"""Collaboration reads, in the business's schema the caller entered (another business's labels,
replies or notifications cannot be named here). Selectors never import services."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from collab.errors import CollabError, CollabErrorCode
from collab.events import LabelShape, NotificationShape
from collab.models import AgentNotification, CannedReply, ConversationLabel, Label, Macro
from messaging.models import Conversation
from tenancy.models import Business

NOTIFICATIONS_PAGE = 30


def label_shape(label: Label) -> LabelShape:
    return {"id": label.pk, "name": label.name, "colour": label.colour}


def labels_list() -> list[Label]:
    return list(Label.objects.order_by("name"))


def labels_for_conversations(*, conversation_ids: Iterable[int]) -> dict[int, list[LabelShape]]:
    ids = list(conversation_ids)
    found: dict[int, list[LabelShape]] = {cid: [] for cid in ids}
    rows = ConversationLabel.objects.select_related("label").filter(conversation_id__in=ids).order_by("label__name")
    for row in rows:
        found[row.conversation_id].append(label_shape(row.label))
    return found


def canned_replies_list() -> list[CannedReply]:
    return list(CannedReply.objects.order_by("shortcut"))


def canned_reply_get(*, reply_id: Any) -> CannedReply:
    reply = CannedReply.objects.filter(pk=parse_id(reply_id)).first()
    if reply is None:
        raise CollabError(CollabErrorCode.NOT_FOUND, _not_found_text())
    return reply


# A placeholder with the blanks before it: a value left empty takes them along ("Hello, …").
_PLACEHOLDER = re.compile(r"([ \t]*)\{\{\s*(name|first_name|agent|business)\s*\}\}")
# A contact without a name is shown by their number, which no greeting should use ("Hello +49").
_NUMBER_ONLY = re.compile(r"\+?[\d\s()/.-]*")


def canned_reply_text(*, body: str, contact_name: str, agent_name: str, business_name: str) -> str:
    """Fill a canned reply's placeholders; static/parley/collab.js does the same in the composer."""
    person = "" if _NUMBER_ONLY.fullmatch(contact_name.strip()) else contact_name.strip()
    values = {
        "name": person,
        "first_name": person.split()[0] if person else "",
        "agent": agent_name,
        "business": business_name,
    }

    def fill(match: re.Match[str]) -> str:
        value = values[match.group(2)]
        return match.group(1) + value if value else ""

    return _PLACEHOLDER.sub(fill, body)


def macros_list() -> list[Macro]:
    return list(Macro.objects.order_by("name"))


def macro_get(*, macro_id: Any) -> Macro:
    macro = Macro.objects.filter(pk=parse_id(macro_id)).first()
    if macro is None:
        raise CollabError(CollabErrorCode.NOT_FOUND, _not_found_text())
    return macro


def notification_shape(notification: AgentNotification) -> NotificationShape:
    conversation = notification.conversation
    return {
        "id": notification.pk,
        "kind": "mention",
        "conversation_id": notification.conversation_id,
        "contact_name": conversation.contact.display_name,
        "actor_name": notification.actor.get_short_name() if notification.actor else "",
        "excerpt": notification.excerpt,
        "created_at": notification.created_at.isoformat(),
        "read": notification.read_at is not None,
    }


def notifications_for_user(*, user: User, limit: int = NOTIFICATIONS_PAGE) -> list[NotificationShape]:
    rows = (
        AgentNotification.objects.select_related("conversation__contact__customer", "actor")
        .filter(user_id=user.pk)
        .order_by("-id")[:limit]
    )
    return [notification_shape(n) for n in rows]


def notifications_unread(*, user_id: int) -> int:
    return AgentNotification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def mention_candidates(*, business: Business) -> list[dict[str, Any]]:
    """The business's people an @mention can name: id, the name shown, and the handles that match."""
    memberships = Membership.objects.select_related("user").filter(business_id=business.pk).order_by("user__full_name")
    people = []
    for membership in memberships:
        user = membership.user
        handles = {user.get_short_name().strip().lower(), user.email.split("@")[0].lower()}
        first = user.get_short_name().split()
        if first:
            handles.add(first[0].lower())
        people.append({"id": user.pk, "name": user.get_short_name(), "handles": sorted(h for h in handles if h)})
    return people


def mentioned_user_ids(*, business: Business, body: str) -> list[int]:
    """Members named as `@Name` (display name, first name or the email's local part; any case)
    in a note. A handle must end at a non-word character, so "@mia" does not match "@miami"."""
    text = body.lower()
    found: list[int] = []
    for person in mention_candidates(business=business):
        for handle in sorted(person["handles"], key=len, reverse=True):
            if re.search(r"(?<![\w@])@" + re.escape(handle) + r"(?![\w])", text):
                found.append(person["id"])
                break
    return found


def parse_id(value: Any) -> int:
    """A client-sent id; anything that is not one is "not found" (never a 500)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CollabError(CollabErrorCode.NOT_FOUND, _not_found_text()) from None
    if not 0 < number < 2**63:
        raise CollabError(CollabErrorCode.NOT_FOUND, _not_found_text())
    return number


def _not_found_text() -> str:
    return _("This item does not exist.")


def conversations_with_labels(qs: QuerySet[Conversation], filters: Any) -> QuerySet[Conversation]:
    """The inbox list's label filter (registered with messaging.selectors from CollabConfig.ready):
    conversations carrying any of `filters.label_ids`."""
    if not filters.label_ids:
        return qs
    return qs.filter(pk__in=ConversationLabel.objects.filter(label_id__in=filters.label_ids).values("conversation_id"))
