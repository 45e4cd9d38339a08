"""Messaging background jobs. Each per-business job takes the schema name and enters it itself."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from config.jobs import defer_job
from messaging.models import AgentPresence, Contact, Conversation, Event, Message
from tenancy.models import PUBLIC_SCHEMA, Business

logger = logging.getLogger("parley.messaging")

# Long enough for any client that was away (a laptop over a holiday); older resumes get "resync"
# and reload their state from the tables, which keep every message.
EVENT_RETENTION = timedelta(days=30)


@app.task(name="messaging.prune_events", queue="messaging")
def prune_events(schema_name: str) -> int:
    cutoff = timezone.now() - EVENT_RETENTION
    with schema_context(schema_name):
        deleted, _rows = Event.objects.filter(created_at__lt=cutoff).delete()
        # Inbox connections of a crashed server leave presence rows behind.
        AgentPresence.objects.filter(seen_at__lt=timezone.now() - timedelta(hours=1)).delete()
    if deleted:
        logger.info("pruned %d events of %s", deleted, schema_name)
    return deleted


@app.periodic(cron="23 3 * * *")
@app.task(name="messaging.prune_all_events", queue="messaging")
def prune_all_events(timestamp: int) -> None:
    for schema_name in Business.objects.exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True):
        # A business whose prune still waits keeps it; the others are queued all the same.
        defer_job(prune_events.name, queueing_lock=f"prune:{schema_name}", skip_if_queued=True, schema_name=schema_name)


# The business's tables the send core reads in every group (messaging.sending.STATISTICS_AT_MESSAGES).
ANALYZED_MODELS = (Message, Conversation, Contact, Event)


@app.task(name="messaging.tables_analyze", queue="messaging")
def tables_analyze(schema_name: str) -> bool:
    """Planner statistics for a growing business's tables now, not at autovacuum's next round.
    False if the business is gone (its schema dropped)."""
    if not Business.objects.filter(schema_name=schema_name).exists():
        return False
    quote = connection.ops.quote_name
    tables = ", ".join(f"{quote(schema_name)}.{quote(model._meta.db_table)}" for model in ANALYZED_MODELS)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")
    logger.info("analyzed the tables of %s", schema_name)
    return True
