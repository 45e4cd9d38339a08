"""Privacy-centre background jobs (issue 14). Per-business jobs take the schema name and enter
that schema themselves; the daily sweeps fan out one job per business."""

from __future__ import annotations

import logging

from django.utils.translation import gettext as _
from django_tenants.utils import schema_context
from procrastinate.contrib.django import app

from config.jobs import defer_job
from customers import privacy
from tenancy.models import PUBLIC_SCHEMA, Business

logger = logging.getLogger("parley.privacy")


@app.task(name="privacy.step", queue="privacy")
def privacy_step(request_id: str, schema_name: str) -> None:
    privacy.privacy_request_step(request_id=request_id, schema_name=schema_name)


@app.task(name="privacy.finish", queue="privacy")
def privacy_finish(request_id: str) -> None:
    privacy.privacy_request_finish(request_id=request_id)


@app.periodic(cron="*/10 * * * *")
@app.task(name="privacy.resume_stalled", queue="privacy", queueing_lock="privacy.resume_stalled")
def privacy_resume_stalled(timestamp: int) -> None:
    """A request whose worker died (or whose step failed) is queued again until it is done."""
    resumed = privacy.privacy_requests_resume_stalled()
    if resumed:
        logger.warning("resumed %d stalled privacy requests", resumed)


@app.task(name="privacy.retention", queue="privacy")
def retention_apply(schema_name: str) -> int:
    return privacy.conversations_retention_apply(schema_name=schema_name)


@app.periodic(cron="41 2 * * *")
@app.task(name="privacy.retention_all", queue="privacy", queueing_lock="privacy.retention_all")
def retention_apply_all(timestamp: int) -> None:
    """Daily: every business's retention policy, one job per business; old export files go too."""
    for schema_name in Business.objects.exclude(schema_name=PUBLIC_SCHEMA).values_list("schema_name", flat=True):
        # A business whose retention still waits keeps it; the others (and the prune) go on.
        lock = f"retention:{schema_name}"
        defer_job(retention_apply.name, queueing_lock=lock, skip_if_queued=True, schema_name=schema_name)
    privacy.exports_prune()


@app.task(name="privacy.stop_confirmation", queue="privacy")
def send_stop_confirmation(schema_name: str, customer_id: int, client_msg_id: str) -> None:
    """Tell a customer who replied STOP that the business's marketing is muted."""
    from accounts.models import Customer
    from messaging.models import Message
    from messaging.services import MessagingError, message_send_template

    business = Business.objects.get(schema_name=schema_name)
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return
    with schema_context(schema_name):
        try:
            message_send_template(
                business=business,
                customer=customer,
                template_name="parley.stop_confirmation",
                body=_(
                    "You will no longer receive marketing messages from %(name)s. Service messages still "
                    "arrive. You can change this on your Parley privacy page."
                )
                % {"name": business.display_name},
                # Inside the window the customer's STOP opened: a service message, never marketing.
                category="service",
                author_key="system:consent",
                author_kind=Message.Author.SYSTEM,
                client_msg_id=client_msg_id,
            )
        except MessagingError as error:  # a block or a suspension since: the mute stands anyway
            logger.info("STOP confirmation to %s in %s not sent: %s", customer_id, schema_name, error.code)
