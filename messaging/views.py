"""Browser pages: the agents' shared inbox, contacts, and the customer's chat page.

Live traffic goes over the websockets (messaging.consumers); these views render the first state
and serve history pages as JSON. The last event id is read *before* the state, so the client's
resume may repeat an update it already has (clients merge by id) but never misses one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from assignment.selectors import agent_status_of, customer_queue_state, team_availability
from config.websocket import client_close_codes
from customers.selectors import customer_has_blocked
from customers.session import customer_from_session
from messaging import selectors, services
from messaging.errors import MessagingError
from messaging.payloads import conversation_payload
from tenancy.access import member_required
from tenancy.sections import render_empty_section


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
            "conversations": "/inbox/api/list/",
            "counts": "/inbox/api/counts/",
            "messages": "/inbox/api/conversations/{id}/messages/",
        },
        "strings": _inbox_strings(),
        "close_codes": client_close_codes(),
    }
    return render(request, "messaging/inbox.html", {"section": "inbox", "inbox_config": config})


@require_GET
@member_required()
def inbox_conversations(request: HttpRequest) -> HttpResponse:
    rows = selectors.inbox_conversations(
        user=request.user,  # type: ignore[arg-type]
        tab=request.GET.get("tab", "all"),
        status=request.GET.get("status", ""),
        query=_search_query(request),
    )
    return JsonResponse({"conversations": rows, "counts": selectors.inbox_counts(user=request.user)})  # type: ignore[arg-type]


@require_GET
@member_required()
def inbox_messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        conversation = selectors.conversation_for_agent(conversation_id=conversation_id)
    except MessagingError as error:
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=404)
    page = selectors.messages_page(conversation=conversation, before=request.GET.get("before"), include_notes=True)
    # The header needs the conversation even when it is not in the loaded list (an old link).
    page["conversation"] = conversation_payload(conversation)
    # What happened to it (assigned, snoozed…) within this page's stretch of the thread.
    page["activity"] = selectors.conversation_activity(
        conversation_id=conversation.pk,
        after=page["messages"][0]["event_id"] if page["messages"] and page["has_more"] else 0,
        before_message=request.GET.get("before"),
    )
    return JsonResponse(page)


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
        conversation = selectors.conversation_for_customer(customer=customer)
        page = (
            selectors.messages_page(conversation=conversation, include_notes=False)
            if conversation
            else {"messages": [], "has_more": False}
        )
        context["blocked"] = customer_has_blocked(customer_id=customer.pk, business_id=business.pk)
        context["queue"] = customer_queue_state(conversation=conversation)
        context["chat_config"] = {
            "last_event_id": last_event_id,
            "messages": page["messages"],
            "has_more": page["has_more"],
            "business_name": business.display_name,
            "urls": {"messages": "/chat/messages/", "queue": "/chat/queue/"},
            "queue": context["queue"],
            "strings": _chat_strings(),
            "close_codes": client_close_codes(),
        }
    return render(request, "messaging/chat.html", context)


@require_GET
def chat_messages(request: HttpRequest) -> HttpResponse:
    customer = customer_from_session(request.session)
    if customer is None:
        return JsonResponse({"error": {"code": "unauthenticated", "message": _("Please sign in.")}}, status=401)
    conversation = selectors.conversation_for_customer(customer=customer)
    if conversation is None:
        return JsonResponse({"messages": [], "has_more": False})
    return JsonResponse(
        selectors.messages_page(conversation=conversation, before=request.GET.get("before"), include_notes=False)
    )
