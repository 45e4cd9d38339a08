"""The dashboard's sections: one list, so navigation and empty states cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Section:
    key: str
    url_name: str
    title: str | Promise
    manage_only: bool
    empty_text: str | Promise


SECTIONS = [
    Section(
        "inbox",
        "inbox",
        _("Inbox"),
        False,
        _("Conversations with your customers will appear here, live, for every agent on your team."),
    ),
    Section(
        "contacts",
        "contacts",
        _("Contacts"),
        False,
        _("Everyone who has written to you becomes a contact, with notes your whole team can read."),
    ),
    Section(
        "templates",
        "templates",
        _("Templates"),
        True,
        _("Approved message templates let you write to customers outside the 24-hour window."),
    ),
    Section(
        "verification",
        "verification",
        _("Verification"),
        True,
        _("Verify your phone number and apply for the green badge so customers know it's really you."),
    ),
    Section(
        "billing",
        "billing",
        _("Billing"),
        True,
        _("You pay per conversation. Usage, invoices and your payment method will be shown here."),
    ),
    Section(
        "team", "team", _("Team"), True, _("Give agents a seat so they can answer customers from the shared inbox.")
    ),
    Section(
        "privacy",
        "privacy",
        _("Privacy"),
        True,
        _("How long conversations are kept, your customers' consents, data exports and staff access."),
    ),
    Section(
        "api",
        "developers",
        _("API"),
        True,
        _("Send notifications such as flight times or delivery confirmations from your own systems."),
    ),
]
SECTIONS_BY_KEY = {section.key: section for section in SECTIONS}


def render_empty_section(request: HttpRequest, key: str) -> HttpResponse:
    section = SECTIONS_BY_KEY[key]
    return render(request, "dashboard/empty_section.html", {"section": key, "section_info": section})
