"""The inbox's setup page: labels, canned replies and macros. Every member reads it (agents
need to know the shortcuts); owners and admins change it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from collab import selectors, services
from collab.errors import CollabError
from collab.models import Label
from messaging.models import Conversation
from tenancy.access import member_required


def _macro_description(
    macro: Any, labels: dict[int, str], replies: dict[int, str], people: dict[int, str]
) -> list[str]:
    actions = macro.actions
    parts = []
    names = [labels[i] for i in actions.get("labels") or [] if i in labels]
    if names:
        parts.append(_("Label: %(names)s") % {"names": ", ".join(names)})
    if actions.get("canned_reply") in replies:
        parts.append(_("Reply: /%(s)s") % {"s": replies[actions["canned_reply"]]})
    assign = actions.get("assign")
    if assign == "me":
        parts.append(_("Assign to whoever applies it"))
    elif assign == "nobody":
        parts.append(_("Unassign"))
    elif assign in people:
        parts.append(_("Assign to %(name)s") % {"name": people[assign]})
    if actions.get("status"):
        parts.append(_("Status: %(s)s") % {"s": Conversation.Status(actions["status"]).label})
    return parts


def _post(request: HttpRequest, business: Any) -> None:
    user: Any = request.user
    action = request.POST.get("action", "")
    p = request.POST
    if action == "label_create":
        label = services.label_create(business=business, user=user, name=p.get("name", ""), colour=p.get("colour", ""))
        flash.success(request, _("Label “%(name)s” added.") % {"name": label.name})
    elif action == "label_delete":
        services.label_delete(business=business, user=user, label_id=p.get("id"))
        flash.success(request, _("Label deleted."))
    elif action == "canned_save":
        reply = services.canned_reply_save(
            business=business,
            user=user,
            reply_id=p.get("id") or None,
            shortcut=p.get("shortcut", ""),
            title=p.get("title", ""),
            body=p.get("body", ""),
        )
        flash.success(request, _("Canned reply /%(s)s saved.") % {"s": reply.shortcut})
    elif action == "canned_delete":
        services.canned_reply_delete(business=business, user=user, reply_id=p.get("id"))
        flash.success(request, _("Canned reply deleted."))
    elif action == "macro_save":
        actions = {
            "labels": p.getlist("labels"),
            "canned_reply": p.get("canned_reply") or None,
            "assign": p.get("assign") or None,
            "status": p.get("status") or None,
        }
        macro = services.macro_save(business=business, user=user, name=p.get("name", ""), actions=actions)
        flash.success(request, _("Macro “%(name)s” saved.") % {"name": macro.name})
    elif action == "macro_delete":
        services.macro_delete(business=business, user=user, macro_id=p.get("id"))
        flash.success(request, _("Macro deleted."))
    else:
        flash.error(request, _("Unknown action."))


@member_required()
def inbox_setup(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        try:
            _post(request, business)
        except CollabError as error:
            flash.error(request, error.message)
        return redirect("inbox_setup")
    labels = selectors.labels_list()
    replies = selectors.canned_replies_list()
    people = selectors.mention_candidates(business=business)
    label_names = {label.pk: label.name for label in labels}
    reply_names = {reply.pk: reply.shortcut for reply in replies}
    people_names = {person["id"]: person["name"] for person in people}
    macros = [(m, _macro_description(m, label_names, reply_names, people_names)) for m in selectors.macros_list()]
    return render(
        request,
        "collab/setup.html",
        {
            "section": "inbox",
            "labels": labels,
            "colours": Label.Colour.choices,
            "replies": replies,
            "macros": macros,
            "people": people,
            "statuses": [(v, label) for v, label in Conversation.Status.choices],
            "placeholders": {k: "{{" + k + "}}" for k in ("name", "first_name", "agent", "business")},
            "can_manage": request.membership.can_manage,  # type: ignore[attr-defined]
        },
    )
