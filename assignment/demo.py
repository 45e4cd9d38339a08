"""Demo assignment: the airline assigns automatically (balanced, business hours in Berlin) and has
customers waiting in its queue; Jonas comes online when he opens the inbox, Mia chose "away".
The bakery assigns by hand and answers with an away message outside its hours.

The capacity fits the busy inbox collab.demo loaded before (runs after it): at least
DEMO_CAPACITY, and always a seat above the busiest agent's open conversations, so nobody is
over capacity and the first agent who opens the inbox takes a few from the queue while the rest
keep waiting — a queue with places in line, not one that drains or never moves.

Idempotent: settings and statuses are set again; a queued customer who already wrote is left alone."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer
from assignment import selectors
from assignment.models import AgentStatus, AssignmentSettings
from messaging.models import Contact, Conversation, Message
from messaging.services import message_send_customer
from tenancy.demo import DemoWorld

QUEUED = [
    ("+4915112345101", "Hannah Becker", "DE", "Hi! My booking AU 318 shows no seat. Can I pick one?", 4),
    ("+436641234102", "Tobias Gruber", "AT", "Is there still space for a second bag on AU 207 on Friday?", 9),
    ("+41791234103", "Lea Frei", "CH", "I need to change my name on the ticket, there is a typo.", 15),
]

DEMO_CAPACITY = 6

AIRLINE_HOURS = {**{str(d): ["08:00", "20:00"] for d in range(5)}, "5": ["09:00", "14:00"], "6": None}
BAKERY_HOURS = {**{str(d): ["07:00", "18:00"] for d in range(6)}, "6": None}


def seed(world: DemoWorld) -> None:
    airline, bakery = world.airline, world.bakery
    with tenant_context(airline):
        _queue(airline)
        capacity = _capacity()
        # Written directly, not through the services: the demo must not serve its own queue now;
        # the first agent who opens the inbox does (agent_connected → online → the queue drains).
        AssignmentSettings.objects.update_or_create(
            pk=1,
            defaults={
                "mode": AssignmentSettings.Mode.BALANCED,
                "capacity": capacity,
                "auto_return_minutes": 30,
                "only_assignee_replies": False,
                "hours_enabled": True,
                "time_zone": "Europe/Berlin",
                "hours": AIRLINE_HOURS,
                "away_message": (
                    "Thanks for writing to Aurora Air! Our team is back at 08:00 (Berlin time). "
                    "For urgent changes to today's flights, call +49 69 1234 5678."
                ),
            },
        )
        statuses = {
            "airline_agent_1": ("away", True),
            "airline_agent_2": ("away", False),
            "airline_owner": ("offline", False),
        }
        for key, (status, auto_away) in statuses.items():
            if key in world.users:
                AgentStatus.objects.update_or_create(
                    user=world.users[key], defaults={"status": status, "auto_away": auto_away}
                )
        waiting = selectors.queue_length()
    with tenant_context(bakery):
        AssignmentSettings.objects.update_or_create(
            pk=1,
            defaults={
                "mode": AssignmentSettings.Mode.OFF,
                "hours_enabled": True,
                "time_zone": "Europe/Vienna",
                "hours": BAKERY_HOURS,
                "away_message": "Danke für Ihre Nachricht! Wir sind ab 7:00 wieder für Sie da.",
            },
        )
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    world.lines.append(
        f"Assignment: the airline assigns automatically (balanced, up to {capacity} open per agent); "
        f"{waiting} customers wait in its queue until an agent opens the inbox. Settings: Dashboard → Assignment."
    )


def _capacity() -> int:
    """DEMO_CAPACITY, or one more than the busiest agent holds (nobody starts over capacity)."""
    busiest = (
        Conversation.objects.filter(assignee__isnull=False, status__in=selectors.LOAD_STATUSES)
        .values("assignee_id")
        .annotate(n=Count("pk"))
        .aggregate(most=Max("n"))["most"]
    )
    return max(DEMO_CAPACITY, (busiest or 0) + 1)


def _queue(business: object) -> None:
    now = timezone.now()
    for phone, name, country, text, minutes in QUEUED:
        customer, _created = Customer.objects.get_or_create(
            phone_number=phone, defaults={"display_name": name, "country_code": country, "verified_at": now}
        )
        if Conversation.objects.filter(contact__customer=customer).exists():
            continue
        result = message_send_customer(business=business, customer=customer, body=text, client_msg_id="demo-queue")  # type: ignore[arg-type]
        at = now - timedelta(minutes=minutes)
        Conversation.objects.filter(pk=result.message.conversation_id).update(
            last_message_at=at, waiting_since=at, queued_at=at
        )
        Message.objects.filter(pk=result.message.pk).update(created_at=at)
        Contact.objects.filter(customer=customer).update(name=name)
