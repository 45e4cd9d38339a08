"""Notifications background jobs. Each takes the business's schema name and enters it itself."""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from notifications import services
from tenancy.models import Business

logger = logging.getLogger("parley.notifications")


@app.task(name=services.DELIVER_JOB, queue="notifications")
def deliver(schema_name: str, notification_ids: list[int]) -> int:
    business = Business.objects.get(schema_name=schema_name)
    with schema_context(schema_name):
        done = services.notifications_deliver_queued(business=business, notification_ids=notification_ids)
    logger.info("delivered %d notifications of %s", done, schema_name)
    return done
