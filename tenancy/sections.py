"""The dashboard's sections: one list, so navigation and empty states cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
        _("Conversations with your customers, live, for every agent on your team."),
    ),
    Section(
        "reports",
        "reports",
        _("Reports"),
        False,
        _("How fast your team answers and resolves, per day, per agent and per label."),
    ),
    Section(
        "contacts",
        "contacts",
        _("Contacts"),
        False,
        _("Everyone who has written to you becomes a contact, with notes your whole team can read."),
    ),
    Section(
        "assignment",
        "assignment_settings",
        _("Assignment"),
        True,
        _("Who answers which conversation: auto-assignment, capacity, business hours and the away message."),
    ),
    Section(
        "templates",
        "templates",
        _("Templates"),
        True,
        _("Approved message templates, to write to customers outside the 24-hour window."),
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
        _("You pay per conversation: usage, invoices and your subscription."),
    ),
    Section(
        "team",
        "team",
        _("Team"),
        True,
        _("Give agents a seat so they can answer customers from the shared inbox."),
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
        _("An API to send notifications such as flight times from your own systems."),
    ),
]
SECTIONS_BY_KEY = {section.key: section for section in SECTIONS}


# The Overview card's live figures. The tenant core knows no app: each app registers a provider
# for its section from its AppConfig.ready(); a card without one shows its empty_text.
FiguresProvider = Callable[..., list[str]]  # (*, business, user) -> lines of text
_figures: dict[str, FiguresProvider] = {}


def register_figures(key: str, provider: FiguresProvider) -> None:
    if key not in SECTIONS_BY_KEY:
        raise ValueError(f"no dashboard section {key!r}")
    _figures[key] = provider


def section_figures(section: Section, *, business: Any, user: Any) -> list[str]:
    provider = _figures.get(section.key)
    return provider(business=business, user=user) if provider else []


def render_empty_section(request: HttpRequest, key: str) -> HttpResponse:
    section = SECTIONS_BY_KEY[key]
    return render(request, "dashboard/empty_section.html", {"section": key, "section_info": section})


# The Overview's live strip: a few headline numbers above the cards (insights: open, waiting,
# median first response today, this month's cost), refreshed in place by the page. A provider
# gets the viewer's membership too: a figure from a page the viewer may not open (the cost, from
# Billing: owners and admins, `membership.can_manage`) must not reach them here either.
LiveProvider = Callable[..., list[tuple[str, str]]]  # (*, business, user, membership) -> (label, value) pairs
_live: list[LiveProvider] = []


def register_live_figures(provider: LiveProvider) -> None:
    if provider not in _live:
        _live.append(provider)


def live_figures(*, business: Any, user: Any, membership: Any) -> list[tuple[str, str]]:
    return [pair for provider in _live for pair in provider(business=business, user=user, membership=membership)]
