"""The demo gives the airline a busy inbox: several agents, a few hundred conversations over
the last weeks with labels, notes, mentions, a queue, ratings and report figures."""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Membership
from collab import demo as collab_demo
from collab.models import AgentNotification, CannedReply, ConversationLabel, Macro
from insights import demo as insights_demo
from insights import selectors as insights_selectors
from insights.models import CsatResponse, Cycle
from messaging.models import Conversation, Message
from tenancy.demo import DemoWorld
from tests.conftest import World, business_client


def test_demo_busy_inbox_is_believable_fast_and_idempotent(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_agent_1=world.agent_a, airline_owner=world.owner_a)
    with tenant_context(world.business_a):
        # Conversations live-server tests committed to this schema would count beside the demo's.
        Conversation.objects.all().delete()
    started = time.monotonic()
    collab_demo.seed(demo)
    insights_demo.seed(demo)
    seconds = time.monotonic() - started
    assert Membership.objects.filter(business=world.business_a).count() >= 5
    with tenant_context(world.business_a):
        conversations = Conversation.objects.count()
        assert conversations >= 300
        assert Message.objects.count() >= 2.5 * conversations
        assert Message.objects.filter(kind="note").count() >= 40
        oldest = Conversation.objects.order_by("last_message_at").first()
        assert oldest is not None and oldest.last_message_at is not None
        assert oldest.last_message_at < timezone.now() - timedelta(days=14)
        assert Conversation.objects.filter(status="resolved").count() > conversations / 2
        queue = Conversation.objects.filter(status="open", assignee__isnull=True).count()
        assert queue >= 5
        assert ConversationLabel.objects.count() >= conversations
        assert CannedReply.objects.count() == 5 and Macro.objects.count() == 3
        assert AgentNotification.objects.count() >= 10
        assert Cycle.objects.filter(resolved_at__isnull=False).count() > conversations / 2
        assert CsatResponse.objects.count() > 50
        report = insights_selectors.report(
            business=world.business_a, start=timezone.localdate() - timedelta(days=29), end=timezone.localdate()
        )
        assert report.new >= 300 and report.median_first_response and report.csat_count > 50
        assert any(row.first_responses for row in report.agents) and any(row.conversations for row in report.labels)
        # the bulk-loaded history is searchable and its events do not replay: ids come from the counter
        assert Message.objects.values("event_id").distinct().count() == Message.objects.count()
    collab_demo.seed(demo)
    insights_demo.seed(demo)
    with tenant_context(world.business_a):
        assert Conversation.objects.count() == conversations
    print(f"demo busy inbox seeded in {seconds:.2f} s")
    page = business_client(world.business_a, world.owner_a).get("/reports/")
    assert page.status_code == 200 and b"Baggage" in page.content
    search = business_client(world.business_a, world.agent_a).get("/inbox/api/search/?q=Koffer").json()
    assert search["conversations"]
