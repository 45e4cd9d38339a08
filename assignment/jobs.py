"""Assignment's background jobs. Each per-business job takes the schema name and enters it.

- `assignment.wake`: deferred by a snooze, at its time, for one conversation;
- `assignment.sweep`: per business, every minute (through `sweep_all`): auto-return, snoozes
  whose wake-up did not run, agents whose inbox went away without closing, and the queue."""

from __future__ import annotations

import logging
from typing import Any

from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from config.jobs import defer_job
from tenancy.models import PUBLIC_SCHEMA, Business

logger = logging.getLogger("parley.assignment")


def _business(schema_name: str) -> Business | None:
    return Business.objects.filter(schema_name=schema_name).first()


@app.task(name="assignment.wake", queue="assignment")
def wake(schema_name: str, conversation_id: int) -> bool:
    from assignment.services import conversation_wake

    business = _business(schema_name)
    if business is None:
        return False
    with schema_context(schema_name):
        return conversation_wake(business=business, conversation_id=conversation_id)


@app.task(name="assignment.sweep", queue="assignment")
def sweep(schema_name: str) -> dict[str, Any]:
    from assignment import services

    business = _business(schema_name)
    if business is None:
        return {}
    with schema_context(schema_name):
        result = {
            "woken": services.conversations_wake_due(business=business),
            "returned": services.conversations_return_overdue(business=business),
            "away": services.agents_away_without_inbox(business=business),
            "assigned": services.queue_drain(business=business),
        }
    if any(result.values()):
        logger.info("assignment sweep of %s: %s", schema_name, result)
    return result


@app.periodic(cron="* * * * *")
@app.task(name="assignment.sweep_all", queue="assignment")
def sweep_all(timestamp: int) -> None:
    for schema_name in Business.objects.exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True):
        # A sweep still waiting from the last minute is enough.
        defer_job(
            "assignment.sweep",
            queueing_lock=f"assignment-sweep:{schema_name}",
            skip_if_queued=True,
            schema_name=schema_name,
        )
