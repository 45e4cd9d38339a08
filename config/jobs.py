"""Platform jobs: deferring jobs in the caller's transaction, and recovering jobs whose worker died.

## Deferring

`app.configure_task(...).defer()` goes through the app's current connector. In a web request that
is Django's connection, so the job commits (or rolls back) with the writes that need it. Inside a
running job it is not: a worker swaps in its own connection pool, so a job deferred there commits
at once, on its own — before the writes it is about (a report job could run, find no row and stop)
or without them (the writes rolled back). Code that runs in both places defers through here: always
Django's connection of this thread, in its transaction, and many jobs in one statement.

It is also the one way an app queues a job by its task name (`defer_job`, `defer_atomic` for
many): an app's jobs module calls its services, so the services never import it back, and a
misspelt name raises instead of queueing a job nobody runs.

## Recovering stalled jobs

A Procrastinate worker marks a job `doing` when it takes it. If the worker process is killed
(kill -9, OOM, a lost machine) the job stays `doing` for ever: nothing else would run it again.
Workers write a heartbeat every `update_heartbeat_interval` seconds (10 by default) into
`procrastinate_workers`; this periodic job, run by whichever worker's periodic deferrer gets
to it first each minute, asks Procrastinate for the `doing` jobs whose worker has sent no
heartbeat for STALLED_AFTER_SECONDS and puts them back to `todo` (`retry_job`), so another
worker runs them. A job that is only slow keeps its worker's heartbeat fresh and is never
touched.

A job that is retried this way may have done part of its work before the crash. Jobs that
talk to the outside world are written for that: billing reports carry the usage record id as
Stripe's meter-event identifier (Stripe refuses a second event with it), and SMS and webhook
sends record the attempt before making it and never repeat one whose outcome is unknown
(verification.jobs.send_sms, notifications.webhooks.webhook_delivery_attempt).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from procrastinate import JobContext
from procrastinate.contrib.django import app
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.manager import JobManager

from config.sql import unpipelined

logger = logging.getLogger("parley.jobs")


def _load_redis_clients() -> None:
    """Import what a worker's first job would otherwise import: the Redis clients of the cache
    (a delivery job's pacing) and of the channel layer (its events), which Django and Channels
    load lazily. A worker imports every app's jobs module when it starts (Procrastinate's
    autodiscovery), so this runs then: measured, a fresh worker's first delivery job of 100
    notifications took 160 ms of CPU against ~37 ms for the next ones, 95 ms of it these
    imports, paid while the batch's other jobs waited behind it."""
    import django.core.cache.backends.redis  # noqa: F401
    import redis  # noqa: F401

    import config.layers  # noqa: F401


_load_redis_clients()

# Three missed heartbeats (Procrastinate's default interval is 10 s, and its own worker pruning
# uses 30 s too): long enough that a busy but live worker is never taken for dead.
STALLED_AFTER_SECONDS = 30.0
RECOVER_STALLED_JOB = "config.retry_stalled_jobs"


async def retry_stalled_jobs_now(
    *, manager: JobManager | None = None, seconds_since_heartbeat: float = STALLED_AFTER_SECONDS
) -> list[int]:
    """Put every job of a dead worker back to `todo`; returns their ids."""
    manager = manager or app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    retried = []
    for job in stalled:
        await manager.retry_job(job)
        assert job.id is not None
        retried.append(job.id)
        logger.warning("job %s (%s) of a dead worker is retried", job.id, job.task_name)
    return retried


@app.periodic(cron="* * * * *")
@app.task(name=RECOVER_STALLED_JOB, queue="maintenance", queueing_lock=RECOVER_STALLED_JOB, pass_context=True)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Every minute: jobs left `doing` by a worker that stopped sending heartbeats run again."""
    return len(await retry_stalled_jobs_now(manager=context.app.job_manager))


def defer_atomic(name: str, jobs: Sequence[tuple[dict[str, Any], str | None]], **options: Any) -> None:
    """Defer one job of task `name` per (keyword arguments, queueing lock) in the current
    transaction of Django's connection, in one statement. `options` as for `configure_task`
    (queue, schedule_at, …). An unknown task name raises instead of queueing a job nobody runs."""
    if not jobs:
        return
    job = app.configure_task(name, allow_unknown=False, **options).job
    # Procrastinate's own batch (JobManager.batch_defer_jobs) binds an array of its composite
    # type, which psycopg dumps field by field in Python: 7% of a notifications delivery job,
    # which defers a hundred billing reports. The same function is called here with the rows
    # as one JSON text, turned into that array by PostgreSQL, in order.
    rows = json.dumps(
        [
            {
                "queue_name": job.queue,
                "task_name": job.task_name,
                "priority": job.priority,
                "lock": job.lock,
                "queueing_lock": lock,
                "args": kwargs,
                "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at is not None else None,
            }
            for kwargs, lock in jobs
        ],
        cls=DjangoJSONEncoder,
    )
    with connection.cursor() as cursor:
        cursor.execute(_DEFER_JOBS_SQL, [rows])


_DEFER_JOBS_SQL = (
    "SELECT procrastinate_defer_jobs_v1(ARRAY("
    "SELECT ROW(j.queue_name, j.task_name, j.priority, j.lock, j.queueing_lock, j.args, j.scheduled_at)"
    "::procrastinate_job_to_defer_v1 "
    "FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS (queue_name varchar, task_name varchar, priority integer, "
    "lock text, queueing_lock text, args jsonb, scheduled_at timestamptz)) WITH ORDINALITY "
    "AS j(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n) ORDER BY j.n))"
)


def defer_job(
    task_name: str,
    /,
    *,
    queueing_lock: str | None = None,
    schedule_at: datetime | None = None,
    skip_if_queued: bool = False,
    **job_kwargs: Any,
) -> bool:
    """Defer one job of task `task_name` with `job_kwargs`, as `defer_atomic` does.

    `queueing_lock`: at most one such job waits at a time. A second one raises AlreadyEnqueued,
    unless `skip_if_queued`: then the waiting job is enough, this returns False, and the insert
    ran in a savepoint, so the caller's transaction goes on (a periodic fan-out over every
    business does not stop at one whose job still waits). Without it no savepoint is taken: the
    send path defers inside its hot transaction. Returns whether a job was queued.
    """
    options = {"schedule_at": schedule_at} if schedule_at is not None else {}
    if not skip_if_queued:
        defer_atomic(task_name, [(job_kwargs, queueing_lock)], **options)
        return True
    try:
        # Out of a pipeline (config.sql.pipelined): the lock's violation must be raised in here,
        # not at the pipeline's next read.
        with unpipelined(), transaction.atomic():
            defer_atomic(task_name, [(job_kwargs, queueing_lock)], **options)
    # Through Django's connection the lock's unique violation can surface as Django's error.
    except (AlreadyEnqueued, IntegrityError):
        return False
    return True
