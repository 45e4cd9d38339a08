"""PARLEY_* settings read on every websocket send (the group commit's bounds, the loop's slots,
the database threads), kept once read until a setting changes (tests' `override_settings`).

Each read of `settings.X` goes through Django's lazy settings object, two Python calls deep
(`LazyObject.__getattribute__`): ~9 reads a send came to 1.1% of a server process's CPU at
1,000 msgs/s (perf's on-CPU samples, issue 9)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_read: dict[str, Any] = {}


def tunable[T](name: str, default: T) -> T:
    """`getattr(settings, name, default)`, kept. A name is read with one default everywhere."""
    try:
        return _read[name]  # type: ignore[no-any-return]
    except KeyError:
        value = _read[name] = getattr(settings, name, default)
        return value  # type: ignore[no-any-return]


@receiver(setting_changed)
def _forget(**kwargs: Any) -> None:
    # Any setting: a default may be made of another one (PARLEY_WS_MAX_SENDS of the batch's).
    _read.clear()
