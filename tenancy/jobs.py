"""Tenancy's background jobs: keeping the pool of spare schemas full (tenancy.spares)."""

from __future__ import annotations

from procrastinate.contrib.django import app

from tenancy import spares


@app.task(name=spares.REFILL_TASK, queue="tenancy", queueing_lock=spares.REFILL_TASK)
def spares_refill() -> int:
    """Queued by every sign-up: copy spares until the pool is full again."""
    return spares.spares_refill()


@app.periodic(cron="*/10 * * * *")
@app.task(name="tenancy.spares_refill_periodic", queue="tenancy", queueing_lock="tenancy.spares_refill_periodic")
def spares_refill_periodic(timestamp: int) -> int:
    """A safety net: a refill job that failed, or spares left behind by a release whose
    migrations ran without `parley_setup`, are made good within ten minutes."""
    return spares.spares_refill()
