"""The dashboard's sections: one list, so navigation and empty states cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Section:
    key: str
    url_name: str
    title: str | Promise
    manage_only: bool
    empty_text: str | Promise
    # "app.module.function" giving the Overview card's live figures (keyword-only business
    # and user, returning lines of text); without one the card shows empty_text.
    figures: str = ""


SECTIONS = [
    Section(
        "inbox",
        "inbox",
        _("Inbox"),
        False,
        _("Conversations with your customers, live, for every agent on your team."),
        "messaging.dashboard.inbox_figures",
    ),
    Section(
        "contacts",
        "contacts",
        _("Contacts"),
        False,
        _("Everyone who has written to you becomes a contact, with notes your whole team can read."),
        "messaging.dashboard.contacts_figures",
    ),
    Section(
        "templates",
        "templates",
        _("Templates"),
        True,
        _("Not available yet: approved message templates, to write to customers outside the 24-hour window."),
    ),
    Section(
        "verification",
        "verification",
        _("Verification"),
        True,
        _("Verify your phone number and apply for the green badge so customers know it's really you."),
        "verification.dashboard.verification_figures",
    ),
    Section(
        "billing",
        "billing",
        _("Billing"),
        True,
        _("You pay per conversation: usage, invoices and your subscription."),
        "billing.dashboard.billing_figures",
    ),
    Section(
        "team",
        "team",
        _("Team"),
        True,
        _("Give agents a seat so they can answer customers from the shared inbox."),
        "accounts.dashboard.team_figures",
    ),
    Section(
        "api",
        "developers",
        _("API"),
        True,
        _("Not available yet: an API to send notifications such as flight times from your own systems."),
    ),
]
SECTIONS_BY_KEY = {section.key: section for section in SECTIONS}


def section_figures(section: Section, *, business: Any, user: Any) -> list[str]:
    return import_string(section.figures)(business=business, user=user) if section.figures else []


def render_empty_section(request: HttpRequest, key: str) -> HttpResponse:
    section = SECTIONS_BY_KEY[key]
    return render(request, "dashboard/empty_section.html", {"section": key, "section_info": section})
