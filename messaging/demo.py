"""Demo conversations: an airline's flight changes and baggage questions, a bakery's cake orders.

Idempotent: a customer who already has a conversation with the business is left alone. Messages go through the
real services (window, block and billing rules included), with timestamps moved back afterwards
so the inbox looks lived-in.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, User
from directory.models import CustomerThread
from insights.models import Cycle
from messaging.models import Contact, Conversation, Message
from messaging.services import message_send_agent, message_send_customer
from tenancy.demo import DemoWorld
from tenancy.models import Business

DEMO_CUSTOMERS = [
    ("+4915112345001", "Sophie Hartmann", "DE"),
    ("+4917612345002", "Lukas Meier", "DE"),
    ("+436641234003", "Elif Yilmaz", "AT"),
    ("+41791234004", "Noah Keller", "CH"),
]

AIRLINE_THREADS = [
    [
        ("c", "Hi, my flight AU 412 to Lisbon tomorrow shows a new departure time. Is that right?"),
        (
            "a",
            "Hello, yes: AU 412 now leaves at 10:40 instead of 09:15 because of a crew change. Your seat 14A stays the same.",
        ),
        ("c", "Thanks. Will I still make my connection in Lisbon?"),
        ("a", "Your connection to Porto is at 15:05, so you have over two hours. I've added a note to your booking."),
        ("c", "Perfect, thank you!"),
    ],
    [
        ("c", "My suitcase didn't arrive in Vienna (flight AU 207). What do I do?"),
        ("n", "Bag tag 0AU123456 traced to Frankfurt, arrives on AU 209 tonight."),
        (
            "a",
            "I'm sorry! Your bag was left in Frankfurt and comes on tonight's AU 209. We'll deliver it to your hotel by tomorrow morning.",
        ),
        ("c", "Hotel Sacher, room 312. Can I buy toiletries meanwhile?"),
    ],
    [
        ("c", "Can I bring my bike on the flight to Zurich next week?"),
    ],
]

BAKERY_THREADS = [
    [
        ("c", "Guten Tag! Could I order a chocolate cake for 12 people for Saturday?"),
        ("a", "Gerne! A Sachertorte for 12 is 38 €. Would you like a message on it?"),
        ("c", "Yes please: 'Alles Gute, Oma!' and pick-up at 11:00."),
        ("a", "Noted: Saturday 11:00, Sachertorte for 12 with 'Alles Gute, Oma!'. See you then!"),
    ],
    [
        ("c", "Do you have gluten-free bread on Fridays?"),
        ("a", "Yes, buckwheat loaves every Friday from 7:00. We can put one aside for you."),
    ],
    [
        ("c", "Is the strawberry tart available for 8 people this Sunday?"),
    ],
]


def _customers(world: DemoWorld) -> list[Customer]:
    if world.customers:
        return list(world.customers.values())
    customers = []
    for phone, name, country in DEMO_CUSTOMERS:
        customer, _created = Customer.objects.get_or_create(
            phone_number=phone,
            defaults={"display_name": name, "country_code": country, "verified_at": timezone.now()},
        )
        customers.append(customer)
    world.customers.update({c.phone_number: c for c in customers})
    return customers


def _believable_times(last: datetime, kinds: list[str], *, seed: int) -> list[datetime]:
    """Timestamps for a thread's messages, ending at `last`: two to nine minutes between
    messages, a few seconds before an internal note."""
    rng = random.Random(seed)
    gaps = [
        timedelta(seconds=rng.randrange(5, 40))
        if kind == "note"
        else timedelta(minutes=rng.randrange(2, 9), seconds=rng.randrange(60))
        for kind in kinds[1:]
    ]
    times = [last]
    for gap in reversed(gaps):
        times.insert(0, times[0] - gap)
    return times


def _seed_business(business: Business, agents: list[User], customers: list[Customer], threads: list) -> None:
    with tenant_context(business):
        now = timezone.now()
        for index, (customer, lines) in enumerate(zip(customers, threads, strict=False)):
            if Conversation.objects.filter(contact__customer=customer).exists():
                continue
            agent = agents[index % len(agents)]
            conversation_id = None
            for number, (who, text) in enumerate(lines):
                if who == "c":
                    result = message_send_customer(
                        business=business, customer=customer, body=text, client_msg_id=f"demo-{number}"
                    )
                    conversation_id = result.message.conversation_id
                else:
                    message_send_agent(
                        business=business,
                        user=agent,
                        conversation_id=conversation_id,
                        body=text,
                        client_msg_id=f"demo-{number}",
                        kind="note" if who == "n" else "text",
                    )
            # Spread the threads over the last hours, oldest first, and the messages of a thread
            # over minutes, as people type: replies take a few minutes, notes follow at once.
            assert conversation_id is not None
            conversation = Conversation.objects.get(pk=conversation_id)
            last = now - timedelta(hours=3 * (len(threads) - index))
            sent = list(Message.objects.filter(conversation=conversation).order_by("pk"))
            times = _believable_times(last, [m.kind for m in sent], seed=index)
            for message, at in zip(sent, times, strict=True):
                Message.objects.filter(pk=message.pk).update(
                    created_at=at,
                    delivered_at=at + timedelta(seconds=20) if message.delivered_at else None,
                    read_at=at + timedelta(minutes=1) if message.read_at else None,
                )
            last_customer = max(
                at for m, at in zip(sent, times, strict=True) if m.direction == Message.Direction.INBOUND
            )
            # The service cycle was stamped by the triggers as the messages went in, all within a
            # second: move it with them, or the reports show a first response of "0 s".
            first_reply = next(
                (
                    at
                    for m, at in zip(sent, times, strict=True)
                    if m.direction == Message.Direction.OUTBOUND and m.kind != "note"
                ),
                None,
            )
            Cycle.objects.filter(conversation_id=conversation.pk).update(
                started_at=times[0], first_response_at=first_reply
            )
            Conversation.objects.filter(pk=conversation.pk).update(
                last_message_at=times[-1], window_expires_at=last_customer + timedelta(hours=24)
            )
            CustomerThread.objects.filter(customer=customer, business_id=business.pk).update(last_activity_at=times[-1])
            if customer.display_name:
                Contact.objects.filter(pk=conversation.contact_id).update(name=customer.display_name)
    connection.set_schema_to_public()  # type: ignore[attr-defined]


def seed(world: DemoWorld) -> None:
    announce = not world.customers  # the verification step already lists its customers
    customers = _customers(world)
    airline_agents = [world.users[k] for k in ("airline_agent_1", "airline_agent_2") if k in world.users]
    bakery_agents = [world.users[k] for k in ("bakery_agent",) if k in world.users]
    _seed_business(world.airline, airline_agents or [world.users["airline_owner"]], customers, AIRLINE_THREADS)
    _seed_business(
        world.bakery, bakery_agents or [world.users["bakery_owner"]], customers[1:] + customers[:1], BAKERY_THREADS
    )
    world.lines.append("Inbox: conversations about flight changes and baggage (airline), cake orders (bakery).")
    if announce:
        world.lines.append("Customers (sign in at /me/ with the code from the SMS outbox):")
        world.lines.extend(f"    {c.display_name or 'customer':<18} {c.phone_number}" for c in customers)
