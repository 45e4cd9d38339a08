"""Deferring Procrastinate jobs in the caller's Django transaction, wherever the caller runs.

`app.configure_task(...).defer()` goes through the app's current connector. In a web request that
is Django's connection, so the job commits (or rolls back) with the writes that need it. Inside a
running job it is not: a worker swaps in its own connection pool, so a job deferred there commits
at once, on its own — before the writes it is about (a report job could run, find no row and stop)
or without them (the writes rolled back). Code that runs in both places defers through here: always
Django's connection of this thread, in its transaction, and many jobs in one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from procrastinate.contrib.django import app
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.manager import JobManager


@functools.cache
def _manager() -> JobManager:
    return JobManager(connector=DjangoConnector())


def defer_atomic(name: str, jobs: Sequence[tuple[dict[str, Any], str | None]], **options: Any) -> None:
    """Defer one job of task `name` per (keyword arguments, queueing lock) in the current
    transaction of Django's connection, in one statement. `options` as for `configure_task`
    (queue, schedule_at, …). An unknown task name raises instead of queueing a job nobody runs."""
    if not jobs:
        return
    template = app.configure_task(name, allow_unknown=False, **options).job
    _manager().batch_defer_jobs(
        [template.evolve(task_kwargs=dict(kwargs), queueing_lock=lock) for kwargs, lock in jobs]
    )
