"""Browser pages: the agents' shared inbox, contacts, and the customer's chat page.

Live traffic goes over the websockets (messaging.consumers); these views render the first state
and serve the list and history pages as JSON (DRF views with serializers for both ways). The last event id is read *before* the state, so the client's
resume may repeat an update it already has (clients merge by id) but never misses one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assignment.selectors import agent_status_of, customer_queue_state, team_availability
from config.websocket import client_close_codes, socket_url
from customers.selectors import customer_has_blocked
from customers.session import customer_from_session
from messaging import selectors, services
from messaging.errors import MessagingError, MessagingErrorCode
from messaging.serializers import (
    HistoryQuery,
    InboxListOut,
    InboxListQuery,
    InboxTeamOut,
    InboxThreadOut,
    MessagePageOut,
)
from tenancy.access import IsMember, member_required
from tenancy.sections import render_empty_section

_STAND_IN = 10**18  # an id no conversation has, reversed into a URL template for the JS


def _search_query(request: HttpRequest) -> str:
    # PostgreSQL text cannot hold NUL: a query with one would fail the request instead of matching nothing.
    return request.GET.get("q", "").replace("\x00", "")[:100]


def _thread_strings() -> dict[str, str]:
    """What both thread pages (inbox and chat) show: history, ticks, typing, connection."""
    return {
        "loadEarlier": _("Load earlier messages"),
        "typing": _("%(name)s is typing…"),
        "sent": _("Sent"),
        "delivered": _("Delivered"),
        "read": _("Read"),
        "failed": _("Not sent"),
        "sending": _("Sending…"),
        "reconnecting": _("Connection lost. Reconnecting…"),
        "you": _("You"),
        "newMessage": _("New message from %(name)s: %(body)s"),
        **_rich_strings(),
    }


def _rich_strings() -> dict[str, str]:
    """Attachments, quotes, reactions, buttons, edits and deletes (static/parley/rich.js)."""
    return {
        "attach": _("Attach a file"),
        "file": _("File"),
        "uploading": _("Uploading %(name)s…"),
        "uploadFailed": _("The upload failed."),
        "retry": _("Retry"),
        "removeFile": _("Remove the file"),
        "dropHere": _("Drop the file to attach it"),
        "reply": _("Reply"),
        "replyingTo": _("Replying to %(name)s"),
        "cancelReply": _("Cancel the reply"),
        "jumpToOriginal": _("Show the original message"),
        "react": _("React"),
        "removeReaction": _("Remove your reaction"),
        "edit": _("Edit"),
        "delete": _("Delete"),
        "confirmDelete": _("Delete this message for everyone?"),
        "save": _("Save"),
        "cancel": _("Cancel"),
        "edited": _("edited"),
        "deleted": _("This message was deleted."),
        "fileExpired": _("File expired"),
        "fileDeleted": _("File deleted"),
        "photo": _("Photo"),
        "document": _("Document"),
        "audio": _("Audio"),
        "open": _("Open %(name)s"),
        "chose": _("Chose: %(title)s"),
        "reactedWith": _("%(names)s reacted with %(emoji)s"),
        "addButtons": _("Buttons"),
        "quickReplies": _("Quick-reply buttons the customer can tap"),
        "buttonLabel": _("Button %(n)s"),
    }


def _inbox_strings() -> dict[str, str]:
    # Tab labels and the empty-thread hint are in the template.
    return {
        **_thread_strings(),
        "noConversations": _("No conversations here."),
        "customerTyping": _("The customer is typing…"),
        "alsoViewing": _("Also viewing: %(names)s"),
        "online": _("Online"),
        "claim": _("Claim"),
        "unassign": _("Unassign"),
        "resolve": _("Resolve"),
        "reopen": _("Reopen"),
        "assignedTo": _("Assigned to %(name)s"),
        "unassignedLabel": _("Unassigned"),
        "note": _("Internal note"),
        "windowOpen": _("Service window open until %(time)s."),
        "windowClosed": _("The 24-hour service window is closed: only approved templates can be sent."),
        "customer": _("Customer"),
        # Authors without a name: the away message, and messages sent through the API.
        "automaticReply": _("Automatic reply"),
        "api": _("API"),
        "phone": _("Phone"),
        "status_open": _("Open"),
        "status_pending": _("Pending"),
        "status_snoozed": _("Snoozed"),
        "status_resolved": _("Resolved"),
        "unread": _("%(count)s unread"),
        # issue 12: assignment, lifecycle, the team
        "queued": _("In queue"),
        "snooze": _("Snooze…"),
        "snooze1h": _("For an hour"),
        "snoozeTomorrow": _("Until tomorrow 09:00"),
        "snoozeNextWeek": _("Until next Monday 09:00"),
        "snoozeUntilReply": _("Until the customer writes"),
        "snoozedUntil": _("Snoozed until %(time)s"),
        "transferNote": _("Note for the new assignee (optional)"),
        "heldBy": _("%(name)s is handling this conversation."),
        "parley": _("Parley"),
        "actAssigned": _("%(who)s assigned this to %(assignee)s"),
        "actAutoAssigned": _("Assigned to %(assignee)s automatically"),
        "actTransferred": _("%(who)s transferred this to %(assignee)s"),
        "actUnassigned": _("%(who)s unassigned this"),
        "actBackToQueue": _("Back in the queue"),
        "actReturned": _("Back in the queue: no reply in time"),
        "actStatus": _("%(who)s set the status to %(status)s"),
        "actSnoozed": _("%(who)s snoozed this until the customer writes"),
        "actSnoozedUntil": _("%(who)s snoozed this until %(time)s"),
        "actWoken": _("The snooze ended"),
        "teamSummary": _("Team: %(online)s of %(total)s online"),
        "teamLoad": _("%(open)s open · %(unread)s unread"),
        "agent_online": _("Online"),
        "agent_away": _("Away"),
        "agent_offline": _("Offline"),
        "loadingMore": _("Loading more…"),
    }


def _chat_strings() -> dict[str, str]:
    return {
        **_thread_strings(),
        "empty": _("Say hello: your messages go straight to the business's team."),
        # issue 12: the place in line (ordinals by Intl.PluralRules' category).
        "queuePlace": _("You are %(place)s in line."),
        "ordinal_one": _("%(n)sst"),
        "ordinal_two": _("%(n)snd"),
        "ordinal_few": _("%(n)srd"),
        "ordinal_other": _("%(n)sth"),
        "queueEstimate": _("Estimated wait: about %(minutes)s min."),
        "queueNoEstimate": _("An agent will be with you as soon as one is free."),
        "closedUntil": _("We are closed right now and will reply from %(time)s."),
        "closed": _("We are closed right now and will reply as soon as we are back."),
    }


class PageJsonView(APIView):
    """JSON a page reads with fetch(): session GETs, answered in the page's language. Errors are
    `{"error": {"code", "message"}}` (codes from MessagingErrorCode; `fields` for bad parameters)."""

    renderer_classes = [JSONRenderer]
    schema = None  # not part of the public API's schema (/api/v1/schema/)
    http_method_names = ["get", "head", "options"]

    def handle_exception(self, exc: Exception) -> Response:
        extra: dict[str, Any] = {}
        if isinstance(exc, MessagingError):
            code, message = str(exc.code), exc.message
            status = 404 if exc.code == MessagingErrorCode.NOT_FOUND else 400
        elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            code, message, status = MessagingErrorCode.UNAUTHENTICATED, _("Please sign in."), 401
        elif isinstance(exc, exceptions.PermissionDenied):
            code, message, status = MessagingErrorCode.FORBIDDEN, str(exc.detail), 403
        elif isinstance(exc, exceptions.ValidationError):
            code, message, status = MessagingErrorCode.INVALID, _("The request is not valid."), 400
            extra["fields"] = exc.detail
        elif isinstance(exc, exceptions.APIException):
            code, message, status = str(exc.default_code), str(exc.detail), exc.status_code
        else:
            self.raise_uncaught_exception(exc)
        return Response({"error": {"code": str(code), "message": message, **extra}}, status=status)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@member_required()
def inbox(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    last_event_id = selectors.last_event_id()
    user: Any = request.user
    # The first page of the default view (open conversations, newest first); more pages as the agent scrolls.
    first_page = selectors.conversation_page(user=user, filters=selectors.ConversationFilters(statuses=("open",)))
    config = {
        "last_event_id": last_event_id,
        "me": {"id": user.pk, "name": user.get_short_name(), "status": agent_status_of(user_id=user.pk)},
        "team": selectors.team_members(business=business),
        "availability": team_availability(business=business),
        "conversations": first_page["conversations"],
        "next": first_page["next"],
        "counts": selectors.inbox_counts(user=user),
        "urls": {
            "conversations": reverse("inbox_conversations"),
            "counts": reverse("inbox_counts"),
            # The JS puts the conversation's id where the stand-in number is reversed.
            "messages": reverse("inbox_messages", args=[_STAND_IN]).replace(str(_STAND_IN), "{id}"),
            "socket": socket_url("ws_inbox"),
            "upload": reverse("inbox_attachment_upload"),
        },
        "strings": _inbox_strings(),
        "close_codes": client_close_codes(),
    }
    return render(request, "messaging/inbox.html", {"section": "inbox", "inbox_config": config})


class InboxConversationsView(PageJsonView):
    """A keyset page of the inbox list (issue 12: no cap, infinite scroll) for a tab, statuses,
    assignee, labels, dates, search and sort, with this agent's counts per tab. `next` is the
    cursor of the following page (null at the end)."""

    permission_classes = [IsMember]

    def get(self, request: Request) -> Response:
        query = InboxListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        user: Any = request.user
        try:
            page = selectors.conversation_page(
                user=user, filters=query.filters(), sort=data["sort"], cursor=data["cursor"], limit=data["limit"]
            )
        except selectors.BadCursor:
            raise exceptions.ValidationError({"cursor": [_("This page link is not valid any more.")]}) from None
        return Response(InboxListOut({**page, "counts": selectors.inbox_counts(user=user)}).data)


class InboxCountsView(PageJsonView):
    """This agent's counts per tab, and each agent's status, open and unread conversations."""

    permission_classes = [IsMember]

    def get(self, request: Request) -> Response:
        business: Any = request.tenant  # type: ignore[attr-defined]
        counts = selectors.inbox_counts(user=request.user)  # type: ignore[arg-type]
        return Response(InboxTeamOut({"counts": counts, "team": team_availability(business=business)}).data)


class InboxMessagesView(PageJsonView):
    """A page of one conversation's messages (notes included), before `before`."""

    permission_classes = [IsMember]

    def get(self, request: Request, conversation_id: int) -> Response:
        query = _query(HistoryQuery, request)
        page = selectors.inbox_thread_page(conversation_id=conversation_id, before=query.get("before"))
        return Response(InboxThreadOut(page).data)


@member_required()
def contacts(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        try:
            services.contact_update(
                business=business,
                user=request.user,  # type: ignore[arg-type]
                contact_id=request.POST.get("contact_id"),
                name=request.POST.get("name", ""),
                notes=request.POST.get("notes", ""),
            )
        except MessagingError as error:
            flash.error(request, error.message)
        else:
            flash.success(request, _("Contact saved."))
        return redirect("contacts")
    query = _search_query(request)
    rows = selectors.contacts_list(query=query)
    if not rows and not query:
        return render_empty_section(request, "contacts")
    return render(request, "messaging/contacts.html", {"section": "contacts", "contacts": rows, "query": query})


def chat(request: HttpRequest) -> HttpResponse:
    """The business's public chat page for customers."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    customer = customer_from_session(request.session)
    context: dict[str, Any] = {"customer": customer, "sign_in_next": request.build_absolute_uri()}
    if customer is not None:
        last_event_id = selectors.last_event_id()
        page = MessagePageOut(selectors.chat_history_page(customer=customer)).data
        context["blocked"] = blocked = customer_has_blocked(customer_id=customer.pk, business_id=business.pk)
        # issue 12: the customer's place in line and estimated wait, or closed outside business hours.
        context["queue"] = customer_queue_state(conversation=selectors.conversation_for_customer(customer=customer))
        context["chat_config"] = {
            "last_event_id": last_event_id,
            "messages": page["messages"],
            "has_more": page["has_more"],
            "business_name": business.display_name,
            "blocked": blocked,  # nothing to send: the page offers no composer, nor buttons to tap
            "urls": {
                "messages": reverse("chat_messages"),
                "queue": reverse("chat_queue"),
                "socket": socket_url("ws_chat"),
                "upload": reverse("chat_attachment_upload"),
            },
            "me": f"customer:{customer.pk}",  # whose reactions are "mine" (static/parley/rich.js)
            "queue": context["queue"],
            "strings": _chat_strings(),
            "close_codes": client_close_codes(),
        }
    return render(request, "messaging/chat.html", context)


class ChatMessagesView(PageJsonView):
    """A page of the signed-in customer's conversation (never notes), before `before`."""

    # The customer's sign-in lives in the session (customers.session), not in request.user.
    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        customer = customer_from_session(request.session)
        if customer is None:
            raise exceptions.NotAuthenticated()
        query = _query(HistoryQuery, request)
        return Response(MessagePageOut(selectors.chat_history_page(customer=customer, before=query.get("before"))).data)
