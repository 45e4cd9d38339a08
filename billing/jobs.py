"""Billing background jobs: report each usage record to Stripe until Stripe has it.

Billing's tables live in the public schema, so these jobs take record or event ids and never a
tenant schema: they do not enter any business's schema.
"""

from __future__ import annotations

import logging
import random

from django.conf import settings
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.contrib.django import app
from procrastinate.jobs import Job

from billing import services

logger = logging.getLogger("parley.billing")


class CappedBackoff(BaseRetryStrategy):
    """Retry forever, waiting base * 2^attempts seconds (with jitter) but never more than the cap.

    Forever on purpose: a report must never be dropped. Without a Stripe key the job keeps
    waiting here, so reports go out on their own once a key is configured.
    """

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        base = float(settings.BILLING_RETRY_BASE_SECONDS)
        cap = float(settings.BILLING_RETRY_MAX_SECONDS)
        wait = min(cap, base * (2 ** min(job.attempts, 20)))
        wait = wait * random.uniform(0.5, 1.0)  # jitter spreads a burst of retries out
        return RetryDecision(retry_in={"seconds": int(wait)})


@app.task(name=services.REPORT_USAGE_RECORD, queue="billing", retry=CappedBackoff())
def report_usage_record(record_id: str) -> None:
    outcome = services.usage_record_report(record_id=record_id)
    logger.info("usage record %s: %s", record_id, outcome)


@app.task(name=services.REPORT_USAGE_RECORDS, queue="billing", retry=CappedBackoff())
def report_usage_records(record_ids: list[str]) -> None:
    outcomes = services.usage_records_report(record_ids=record_ids)
    logger.info("usage records: %s", outcomes)


@app.task(name=services.CANCEL_USAGE_RECORD, queue="billing", retry=CappedBackoff())
def cancel_usage_record(record_id: str) -> None:
    outcome = services.usage_record_cancel_in_stripe(record_id=record_id)
    logger.info("usage record %s cancel: %s", record_id, outcome)


@app.periodic(cron="*/15 * * * *")
@app.task(name="billing.requeue_unreported", queue="billing", queueing_lock="billing.requeue_unreported")
def requeue_unreported(timestamp: int) -> None:
    """Safety net: any record still pending after half an hour gets its report queued again."""
    queued = services.usage_reports_requeue()
    if queued:
        logger.warning("requeued %d unreported usage records", queued)


@app.task(name=services.PROCESS_STRIPE_EVENT, queue="billing", retry=CappedBackoff())
def process_stripe_event(event_id: str) -> None:
    services.stripe_event_process(event_id=event_id)
