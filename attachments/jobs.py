"""The daily retention job: each business's expired attachments leave storage."""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from attachments.services import attachments_expire
from config.jobs import defer_job
from tenancy.models import PUBLIC_SCHEMA, Business

logger = logging.getLogger("parley.attachments")


@app.task(name="attachments.expire", queue="attachments")
def expire_attachments(schema_name: str) -> int:
    with schema_context(schema_name):
        removed = attachments_expire()
    if removed:
        logger.info("removed %d expired attachments of %s", removed, schema_name)
    return removed


@app.periodic(cron="47 3 * * *")
@app.task(name="attachments.expire_all", queue="attachments")
def expire_all_attachments(timestamp: int) -> None:
    for schema_name in Business.objects.exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True):
        defer_job(
            expire_attachments.name,
            queueing_lock=f"attachments-expire:{schema_name}",
            skip_if_queued=True,
            schema_name=schema_name,
        )
