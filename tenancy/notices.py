"""Dashboard notices: news an app has for whoever runs a business, shown on the dashboard home.

The tenant core knows no app: each app that has news registers a provider here from its
AppConfig.ready(), and the dashboard asks every provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils.functional import Promise

if TYPE_CHECKING:
    from tenancy.models import Business


@dataclass(frozen=True)
class DashboardNotice:
    title: str
    body: str
    level: str  # "info", "success" or "warning"
    url: str  # where the manager acts on it
    link_text: str | Promise


NoticeProvider = Callable[["Business"], Iterable[DashboardNotice]]

_providers: list[NoticeProvider] = []


def register(provider: NoticeProvider) -> NoticeProvider:
    """Add a provider (once, however often ready() runs); usable as a decorator."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def dashboard_notices(*, business: Business) -> list[DashboardNotice]:
    return [notice for provider in _providers for notice in provider(business)]
