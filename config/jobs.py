"""Platform jobs: recovering jobs whose worker died.

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

import logging

from procrastinate import JobContext
from procrastinate.contrib.django import app
from procrastinate.manager import JobManager

logger = logging.getLogger("parley.jobs")

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
