"""Demo privacy centre: a customer who talks to both businesses has consents worth seeing, the
bakery keeps conversations for a year, and the airline's owner sees one staff look in the log.

Runs after messaging's demo step (it needs the conversations). Idempotent: consent records repeat
nothing once the customer has any, and the other rows are created once.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from accounts.models import Customer
from audit.models import AuditEvent
from customers.models import BusinessContact, ConsentRecord
from customers.services import consent_record
from customers.staff_access import STAFF_ACCESS_ACTION
from directory.models import CustomerThread
from tenancy.demo import DemoWorld
from tenancy.models import Business


def privacy_customer(world: DemoWorld) -> Customer | None:
    """The first of the demo's customers who talks to both businesses (messaging's demo gives
    one the airline's and the bakery's threads): whose privacy centre has something on each."""
    customers = list(world.customers.values())
    both = set(
        CustomerThread.objects.filter(customer__in=customers, business__in=[world.airline, world.bakery])
        .values("customer")
        .annotate(businesses=Count("business", distinct=True))
        .filter(businesses=2)
        .values_list("customer", flat=True)
    )
    return next((customer for customer in customers if customer.pk in both), None)


def seed(world: DemoWorld) -> None:
    customer = privacy_customer(world)
    if customer is not None:
        _consents(world, customer)
    Business.objects.filter(pk=world.bakery.pk).update(conversation_retention_days=365)
    if not AuditEvent.objects.filter(action=STAFF_ACCESS_ACTION, business=world.airline).exists():
        AuditEvent.objects.create(
            action=STAFF_ACCESS_ACTION,
            actor=world.staff,
            business=world.airline,
            target="conversation list",
            data={"path": f"/admin/customers/businessconversations/{world.airline.pk}/conversations/"},
        )
    if customer is not None:
        world.lines.append(
            f"Privacy centre: sign in at /me/ as {customer.phone_number} ({customer.display_name}) and open "
            "/me/privacy/; owners see /privacy/."
        )


def _consents(world: DemoWorld, customer: Customer) -> None:
    Category, Source = ConsentRecord.Category, ConsentRecord.Source
    choices = [
        (world.airline, Category.MARKETING, True, Source.CHAT, 20),
        (world.airline, Category.UTILITY, True, Source.API, 20),
        (world.bakery, Category.MARKETING, True, Source.CHAT, 9),
        (world.bakery, Category.MARKETING, False, Source.STOP, 2),
    ]
    if ConsentRecord.objects.filter(customer=customer).exists():
        return  # seeded before: replaying the history would add a second opt-in and opt-out
    now = timezone.now()
    for business, category, granted, source, days_ago in choices:
        before = ConsentRecord.objects.filter(customer=customer, business=business, category=category).count()
        consent_record(customer=customer, business=business, category=category, granted=granted, source=source)
        latest = ConsentRecord.objects.filter(customer=customer, business=business, category=category).order_by("-id")
        if latest.count() > before:  # a new row: give it a believable date
            ConsentRecord.objects.filter(pk=latest[0].pk).update(created_at=now - timedelta(days=days_ago))
    # In touch with each business before the first choice made there (the page shows both).
    first_choice = max(days_ago for *_rest, days_ago in choices) + 10
    BusinessContact.objects.filter(customer=customer, business__in=[world.airline, world.bakery]).update(
        first_contact_at=now - timedelta(days=first_choice)
    )
