from __future__ import annotations

import pytest
import time_machine
from django.utils import timezone
from django_tenants.utils import tenant_context

from assignment import selectors
from assignment.demo import DEMO_CAPACITY, QUEUED, seed
from assignment.models import AgentStatus, AssignmentSettings
from messaging.models import Conversation
from tenancy.demo import DemoWorld
from tests.conftest import World


def test_demo_gives_the_airline_auto_assignment_statuses_and_a_queue(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_agent_1=world.agent_a, airline_owner=world.owner_a)
    seed(demo)
    with tenant_context(world.business_a):
        settings = AssignmentSettings.objects.get(pk=1)
        assert settings.mode == "balanced" and settings.hours_enabled and settings.away_message
        # Jonas is away only because his inbox is closed: opening it brings him online.
        assert AgentStatus.objects.get(user=world.agent_a).auto_away
        queued = Conversation.objects.filter(contact__customer__phone_number__in=[q[0] for q in QUEUED])
        assert queued.count() == 3
        positions = sorted(selectors.queue_position(conversation=c) or 0 for c in queued)
        assert positions[0] >= 1 and len(set(positions)) == 3
        # Nobody starts over capacity, and there is room to take someone from the queue.
        loads = [row["open"] for row in selectors.team_availability(business=world.business_a)]
        assert settings.capacity >= DEMO_CAPACITY and max(loads) < settings.capacity
    seed(demo)  # idempotent
    with tenant_context(world.business_a):
        assert Conversation.objects.filter(contact__customer__phone_number__in=[q[0] for q in QUEUED]).count() == 3
    with tenant_context(world.business_b):
        assert AssignmentSettings.objects.get(pk=1).mode == "off"


# The demo is loaded at any hour: at 15:30 UTC the dice once left ~2 open conversations per agent.
@pytest.mark.parametrize("hour", [None, 3, 9, 15, 21])
def test_demo_capacity_fits_the_busy_inbox(world: World, hour: int | None) -> None:
    """After collab's few hundred bulk-loaded conversations: no agent over capacity, a few
    customers in the queue, and an agent who comes online has room to take one of them —
    now, and loaded at other hours of the day."""
    if hour is None:
        _busy_inbox(world)
        return
    at = timezone.now().replace(hour=hour, minute=30)
    with time_machine.travel(at, tick=True):
        _busy_inbox(world)


def _busy_inbox(world: World) -> None:
    from collab import demo as collab_demo

    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(airline_agent_1=world.agent_a, airline_owner=world.owner_a)
    with tenant_context(world.business_a):
        # Conversations live-server tests committed to this schema would queue beside the demo's.
        Conversation.objects.all().delete()
    collab_demo.seed(demo)
    seed(demo)
    with tenant_context(world.business_a):
        settings = AssignmentSettings.objects.get(pk=1)
        loads = {row["id"]: row["open"] for row in selectors.team_availability(business=world.business_a)}
        assert sum(loads.values()) > len(loads) * 2  # the inbox is busy
        assert max(loads.values()) < settings.capacity
        assert 3 <= selectors.queue_length() <= 20
    assert any(f"up to {settings.capacity} open per agent" in line for line in demo.lines)
