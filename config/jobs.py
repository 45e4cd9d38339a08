"""Deferring a background job by its task name: the one way every app does it.

An app's jobs module calls its services, so the services queue those jobs by name instead of
importing the module back; the periodic fan-out jobs use it too. Through Django's connection the
job is inserted in the caller's transaction: it exists exactly when the caller's writes commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.exceptions import AlreadyEnqueued


def defer_job(
    task_name: str,
    /,
    *,
    queueing_lock: str | None = None,
    schedule_at: datetime | None = None,
    skip_if_queued: bool = False,
    **job_kwargs: Any,
) -> bool:
    """Queue the registered task `task_name` (its queue and retry policy) with `job_kwargs`; a
    misspelt name raises instead of queueing a job nobody runs.

    `queueing_lock`: at most one such job waits at a time. A second one raises AlreadyEnqueued,
    unless `skip_if_queued`: then the waiting job is enough, this returns False, and the insert
    ran in a savepoint, so the caller's transaction goes on. (Without it no savepoint is taken:
    the send path defers inside its hot transaction.) Returns whether a job was queued.
    """
    options: dict[str, Any] = {"queueing_lock": queueing_lock, "schedule_at": schedule_at}
    task = procrastinate_app.configure_task(
        task_name, allow_unknown=False, **{k: v for k, v in options.items() if v is not None}
    )
    if not skip_if_queued:
        task.defer(**job_kwargs)
        return True
    try:
        with transaction.atomic():
            task.defer(**job_kwargs)
    # Through Django's connection the lock's unique violation can surface as Django's error.
    except (AlreadyEnqueued, IntegrityError):
        return False
    return True
