"""The chat page's satisfaction survey in a browser: it appears as soon as the business
resolves (the customer's socket hears of the resolve), with or without a reply before it, and
redraws of the thread (ticks, acks) do not make it ask again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from insights.models import InsightSettings
from messaging.services import conversation_set_status
from tests.collab.helpers import agent_writes, customer_writes
from tests.conftest import LiveServer, World
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page


@pytest.fixture
def csat_on(live_db: World) -> Iterator[None]:
    """Business A asks for ratings during the test, committed (the server process reads it), and
    as it was afterwards: later tests in the session see its own setting, not this one."""
    with schema_context(live_db.business_a.schema_name):
        settings, _created = InsightSettings.objects.get_or_create(pk=1)
        before = settings.csat_enabled
        InsightSettings.objects.filter(pk=1).update(csat_enabled=True)
    connection.set_schema_to_public()
    try:
        yield
    finally:
        with schema_context(live_db.business_a.schema_name):
            InsightSettings.objects.filter(pk=1).update(csat_enabled=before)
        connection.set_schema_to_public()


@pytest.mark.browser
@pytest.mark.usefixtures("csat_on")
def test_survey_appears_after_reply_and_resolve_without_polling(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    business = live_db.business_a
    customer = make_customer("Clara Weber")
    with schema_context(business.schema_name):
        conversation = customer_writes(business, "Can I bring my bike?", customer=customer)
    connection.set_schema_to_public()
    context, page = signed_in_page(browser, session_key(customer=customer))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/chat/csat/" in request.url else None)
    try:
        page.goto(live_server_process.business_url(business, "/chat/"))
        expect(page.locator(".bubble-body", has_text="Can I bring my bike?")).to_be_visible()
        page.wait_for_timeout(2500)  # the page settles: resume, read ticks, acks redraw the thread
        assert len(asked) == 1, asked  # only the check on load
        survey = page.locator("#csat")
        expect(survey).to_be_hidden()
        with schema_context(business.schema_name):
            agent_writes(business, live_db.agent_a, conversation, "Yes, as special baggage.")
            conversation_set_status(
                business=business, user=live_db.agent_a, conversation_id=conversation.pk, status="resolved"
            )
        connection.set_schema_to_public()
        expect(page.locator(".bubble-body", has_text="Yes, as special baggage.")).to_be_visible()
        expect(survey).to_be_visible(timeout=8000)
        page.wait_for_timeout(3000)
        # Load, one look when the resolve was heard; the shown survey stops the looks after the reply.
        assert len(asked) == 2, asked
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.usefixtures("csat_on")
def test_survey_appears_when_resolved_without_a_reply(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    """A resolve with no reply before it (the question was answered elsewhere) shows the survey
    too, live: before, the page looked only after a reply, so it appeared after a reload."""
    business = live_db.business_a
    customer = make_customer("Jonas Fuchs")
    with schema_context(business.schema_name):
        conversation = customer_writes(business, "Never mind, found it.", customer=customer)
    connection.set_schema_to_public()
    context, page = signed_in_page(browser, session_key(customer=customer))
    try:
        page.goto(live_server_process.business_url(business, "/chat/"))
        expect(page.locator(".bubble-body", has_text="Never mind, found it.")).to_be_visible()
        page.wait_for_timeout(1500)  # the socket has joined its conversation
        survey = page.locator("#csat")
        expect(survey).to_be_hidden()
        with schema_context(business.schema_name):
            conversation_set_status(
                business=business, user=live_db.agent_a, conversation_id=conversation.pk, status="resolved"
            )
        connection.set_schema_to_public()
        expect(survey).to_be_visible(timeout=5000)
    finally:
        context.close()
