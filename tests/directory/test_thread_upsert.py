"""The customers' threads upsert carries another app's statement (`alongside`): a send group
records its customers' contacts with the business in the statement that touches their threads
(one statement of the group fewer), and the statement still runs when no thread is touched."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Customer
from customers.models import BusinessContact
from customers.services import customer_contacts_record_statement
from directory.models import CustomerThread
from directory.services import ThreadTouch, customer_threads_touch_later
from tests.conftest import World, fresh_mobile


def _customers(count: int) -> list[Customer]:
    now = timezone.now()
    return [
        Customer.objects.create(phone_number=fresh_mobile(), country_code="DE", verified_at=now) for _ in range(count)
    ]


def test_contacts_are_recorded_in_the_threads_statement(world: World) -> None:
    business = world.business_a
    customers = _customers(2)
    ids = [c.pk for c in customers]
    first = timezone.now() - timedelta(minutes=5)
    later = first + timedelta(minutes=3)

    for at in (first, later):
        contacts = customer_contacts_record_statement(business_id=business.pk, customer_ids=ids, at=at)
        with CaptureQueriesContext(connection) as captured:
            read = customer_threads_touch_later(
                business_id=business.pk,
                touches=[ThreadTouch(pk, at, unread_delta=1) for pk in ids],
                alongside=[contacts, None],
            )
            states = read()
        assert len(captured.captured_queries) == 1, [q["sql"] for q in captured.captured_queries]
        assert sorted(states) == ids and all(state.last_activity_at == at for state in states.values())

    rows = BusinessContact.objects.filter(business=business, customer_id__in=ids)
    # First contact kept, last contact moved on; the threads counted both touches.
    assert sorted((r.first_contact_at, r.last_contact_at) for r in rows) == [(first, later)] * 2
    threads = CustomerThread.objects.filter(business=business, customer_id__in=ids)
    assert sorted((t.unread_count, t.last_activity_at) for t in threads) == [(2, later)] * 2


def test_the_statement_alongside_runs_when_no_thread_is_touched(world: World) -> None:
    business = world.business_b
    [customer] = _customers(1)
    at = timezone.now()
    contacts = customer_contacts_record_statement(business_id=business.pk, customer_ids=[customer.pk], at=at)

    read = customer_threads_touch_later(business_id=business.pk, touches=[], alongside=[contacts])

    assert read() == {}
    assert BusinessContact.objects.filter(business=business, customer=customer, last_contact_at=at).exists()
    assert not CustomerThread.objects.filter(business=business, customer=customer).exists()
    assert customer_contacts_record_statement(business_id=business.pk, customer_ids=[], at=at) is None
