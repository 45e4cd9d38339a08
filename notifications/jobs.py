"""Notifications background jobs. Each takes the business's schema name and enters it itself."""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from config.jobs import defer_job
from notifications import services, webhooks
from tenancy.models import PUBLIC_SCHEMA, Business

logger = logging.getLogger("parley.notifications")


@app.task(name=services.DELIVER_JOB, queue="notifications")
def deliver(schema_name: str, notification_ids: list[int]) -> int:
    business = Business.objects.get(schema_name=schema_name)
    with schema_context(schema_name):
        done = services.notifications_deliver_queued(business=business, notification_ids=notification_ids)
    logger.info("delivered %d notifications of %s", done, schema_name)
    return done


@app.task(name=webhooks.SEND_JOB, queue="webhooks")
def webhook_send(schema_name: str, delivery_id: int) -> str:
    business = Business.objects.get(schema_name=schema_name)
    with schema_context(schema_name):
        return webhooks.webhook_delivery_attempt(business=business, delivery_id=delivery_id)


@app.task(name="notifications.webhook_dispatch", queue="webhooks")
def webhook_dispatch(schema_name: str) -> int:
    business = Business.objects.get(schema_name=schema_name)
    with schema_context(schema_name):
        return webhooks.webhook_dispatch_stream(business=business)


@app.periodic(cron="* * * * *")
@app.task(name="notifications.webhook_dispatch_all", queue="webhooks", queueing_lock="webhook_dispatch_all")
def webhook_dispatch_all(timestamp: int) -> None:
    """Every minute: each business's new stream events become webhook deliveries."""
    for schema_name in Business.objects.exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True):
        # A business whose dispatch still waits keeps it; the others are queued all the same.
        lock = f"webhook_dispatch:{schema_name}"
        defer_job(webhook_dispatch.name, queueing_lock=lock, skip_if_queued=True, schema_name=schema_name)
