"""Limits (throughput, tiers, quality) and batch sends delivered by real Procrastinate jobs."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Customer, User
from billing.models import UsageRecord
from customers.services import customer_block
from messaging.models import Message
from notifications.models import Notification
from template_reviews.models import SendingLimits
from tenancy.services import business_create
from tests.conftest import World, fresh_mobile, in_business, run_concurrently, unique
from tests.jobs import run_queued_jobs
from tests.messaging.test_api import Api, api_for, assert_problem, make_customer, send_flight
from tests.notifications.conftest import approved_template


def frozen_second() -> datetime:
    # A second no earlier run used, so the shared Redis has no count for it.
    return datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))


def test_the_81st_message_in_a_second_is_refused_with_retry_after(world: World) -> None:
    api = api_for(world)
    with time_machine.travel(frozen_second(), tick=False):
        answers = [api.post("messages", {"to": "+4915100000000", "text": "hi"}) for _ in range(81)]
    assert [a.status_code for a in answers[:80]] == [201] * 80
    refused = assert_problem(answers[80], 429, "rate_limited")
    assert answers[80]["Retry-After"] == "1"
    assert "80" in refused["title"]


def test_staff_raise_the_throughput_limit(world: World) -> None:
    SendingLimits.objects.create(business=world.business_a, messages_per_second=2)
    api = api_for(world)
    with time_machine.travel(frozen_second(), tick=False):
        codes = [api.post("messages", {"to": "+4915100000000", "text": "hi"}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_tier_limits_unique_customers_per_24_hours(world: World) -> None:
    SendingLimits.objects.create(business=world.business_a, tier_override=2)
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    api = api_for(world)
    first, second, third = make_customer(), make_customer(), make_customer()
    # A second of its own: the throughput counter (shared Redis) must not be what refuses.
    with time_machine.travel(frozen_second(), tick=False):
        assert send_flight(api, first.phone_number).json()["status"] == "sent"
        assert send_flight(api, second.phone_number).json()["status"] == "sent"
        body = assert_problem(send_flight(api, third.phone_number), 429, "tier_limit")
        assert "2 different customers" in body["title"]
        # Customers already reached today do not count again.
        assert send_flight(api, first.phone_number).json()["status"] == "sent"


def test_default_tiers_follow_verification(world: World) -> None:
    from notifications.limits import tier_limit

    business = world.business_b
    assert tier_limit(business=business) == (2_000 if business.phone_verified_at else 250)
    business.phone_verified_at = None
    assert tier_limit(business=business) == 250


def test_red_quality_pauses_marketing_but_not_utility(world: World) -> None:
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
        approved_template(
            world.business_a, world.staff, name="sale", category="marketing", header="", body="Sale {{p}}"
        )
    api = api_for(world)
    customers = [make_customer() for _ in range(20)]
    for customer in customers:
        assert send_flight(api, customer.phone_number).json()["status"] == "sent"
    from notifications.limits import quality_rating

    with in_business(world.business_a):
        assert quality_rating(business=world.business_a).rating == "green"
        customer_block(customer=customers[0], business=world.business_a)
        assert quality_rating(business=world.business_a).rating == "yellow"  # 1 of 20 = 5%
        customer_block(customer=customers[1], business=world.business_a)
        assert quality_rating(business=world.business_a).rating == "red"  # 10%
    cache.delete(f"t.{world.business_a.schema_name}.quality")
    fresh = make_customer()
    paused = api.post("messages", {"to": fresh.phone_number, "template": {"name": "sale", "parameters": {"p": "1"}}})
    assert_problem(paused, 422, "template_paused")
    assert send_flight(api, fresh.phone_number).json()["status"] == "sent"
    page = world.business_a  # the dashboard shows the rating
    from tests.conftest import business_client

    html = business_client(page, world.owner_a).get("/templates/").content.decode()
    assert "Red" in html


def test_batch_is_refused_whole_when_an_entry_is_bad(world: World) -> None:
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    api = api_for(world)
    recipients: list[dict[str, Any]] = [
        {"to": make_customer().phone_number, "parameters": {"flight": "1", "time": "2"}},
        {"to": "nope", "parameters": {"flight": "1", "time": "2"}},
        {"to": make_customer().phone_number, "parameters": {"flight": "1"}},
        # A NUL in the number, as the single send refuses it; a value of NULs alone is no value.
        {"to": make_customer().phone_number + "\x00", "parameters": {"flight": "1", "time": "2"}},
        {"to": make_customer().phone_number, "parameters": {"flight": "\x00", "time": "2"}},
    ]
    body = assert_problem(
        api.post("messages/batch", {"template": "flight_change", "recipients": recipients}), 400, "invalid"
    )
    assert body["errors"] == {
        "1": {"code": "invalid_phone", "message": body["errors"]["1"]["message"]},
        "2": {"code": "missing_parameter", "message": body["errors"]["2"]["message"]},
        "3": {"code": "invalid_phone", "message": "Null characters are not allowed."},
        "4": {"code": "invalid", "message": body["errors"]["4"]["message"]},
    }
    too_many = [{"to": "+4915100000000"}] * 1001
    assert_problem(
        api.post("messages/batch", {"template": "flight_change", "recipients": too_many}), 413, "batch_too_large"
    )
    with in_business(world.business_a):
        assert not Notification.objects.exists()


def test_batch_entries_of_the_wrong_shape_are_named_by_index(world: World) -> None:
    """Recipients are checked by the service, not a nested serializer: every shape error still
    refuses the whole batch and names its entry."""
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    api = api_for(world)
    good = {"to": make_customer().phone_number, "parameters": {"flight": "1", "time": "2"}}
    recipients: list[Any] = [
        good,
        "+4915100000000",  # not an object
        {"to": 4915100000000, "parameters": {"flight": "1", "time": "2"}},  # not text
        {"to": "+49" + "1" * 40, "parameters": {"flight": "1", "time": "2"}},  # too long
        {"to": good["to"], "parameters": ["1", "2"]},  # parameters not an object
        {"to": good["to"], "parameters": {"flight": "1", "time": "2", "gate": "B"}},  # unknown name
    ]
    body = assert_problem(
        api.post("messages/batch", {"template": "flight_change", "recipients": recipients}), 400, "invalid"
    )
    assert {index: error["code"] for index, error in body["errors"].items()} == {
        "1": "invalid",
        "2": "invalid_phone",
        "3": "invalid_phone",
        "4": "invalid",
        "5": "unknown_parameter",
    }
    assert_problem(api.post("messages/batch", {"template": "flight_change", "recipients": "all"}), 400, "invalid")
    assert_problem(api.post("messages/batch", {"recipients": [good]}), 400, "invalid")
    with in_business(world.business_a):
        assert not Notification.objects.exists()


@pytest.fixture
def fresh_business(live_db: World) -> Any:
    owner = User.objects.create(email=f"{unique('owner')}@batch.test")
    return business_create(owner=owner, name="Batch Air", slug=unique("batch")), owner


def test_batch_is_accepted_at_once_and_delivered_by_jobs(live_db: World, fresh_business: Any) -> None:
    business, owner = fresh_business
    from notifications import services

    with in_business(business):
        approved_template(business, live_db.staff)
        secret = services.api_key_create(business=business, actor=owner, name="batch", scopes=["send", "read"]).secret
    from tests.conftest import business_client

    api = Api(business_client(business), secret)
    customers = [make_customer() for _ in range(3)]
    customer_block(customer=customers[2], business=business)
    stranger = "+4915100000001"
    params = {"flight": "LH 1", "time": "09:00"}
    recipients = [{"to": c.phone_number, "parameters": params} for c in customers] + [
        {"to": stranger, "parameters": params}
    ]
    response = api.post("messages/batch", {"template": "flight_change", "recipients": recipients})
    assert response.status_code == 202, response.content
    accepted = response.json()
    assert accepted["accepted"] == 4
    ids = [m["id"] for m in accepted["messages"]]
    assert [api.get(f"messages/{i}").json()["status"] for i in ids] == ["accepted"] * 4
    run_queued_jobs(queues=["notifications"])
    answers = [api.get(f"messages/{i}").json() for i in ids]
    # Each id is its recipient's, in the order they were posted.
    assert [a["to"] for a in answers] == [m["to"] for m in accepted["messages"]] == [r["to"] for r in recipients]
    assert [a["status"] for a in answers] == ["sent", "sent", "failed", "failed"]
    assert [a["failure"]["code"] for a in answers[2:]] == ["blocked", "not_a_customer"]
    assert all(float(a["price"]["amount"]) > 0 for a in answers[:2])
    # Running the jobs again sends nothing twice.
    run_queued_jobs(queues=["notifications"])
    with in_business(business):
        assert Notification.objects.filter(batch_id=accepted["batch_id"], status="sent").count() == 2


def test_a_batch_job_keeps_to_the_tier(live_db: World, fresh_business: Any) -> None:
    """The delivery job decides the tier for its whole chunk at once: customers reached in the
    last 24 hours are free, each new one takes a place until the limit, the rest fail."""
    business, owner = fresh_business
    SendingLimits.objects.create(business=business, tier_override=3)
    from notifications import services

    with in_business(business):
        approved_template(business, live_db.staff)
        secret = services.api_key_create(business=business, actor=owner, name="tier", scopes=["send", "read"]).secret
    from tests.conftest import business_client

    api = Api(business_client(business), secret)
    reached = [make_customer(), make_customer()]
    with time_machine.travel(frozen_second(), tick=False):
        for customer in reached:
            assert send_flight(api, customer.phone_number).json()["status"] == "sent"
    new = [make_customer() for _ in range(3)]
    params = {"flight": "LH 1", "time": "09:00"}
    # Already reached customers are free wherever they stand in the chunk.
    order = [new[0], reached[0], new[1], new[2], reached[1]]
    response = api.post(
        "messages/batch",
        {"template": "flight_change", "recipients": [{"to": c.phone_number, "parameters": params} for c in order]},
    )
    assert response.status_code == 202, response.content
    ids = [m["id"] for m in response.json()["messages"]]
    run_queued_jobs(queues=["notifications"])
    answers = [api.get(f"messages/{i}").json() for i in ids]
    assert [a["status"] for a in answers] == ["sent", "sent", "failed", "failed", "sent"]
    assert [a["failure"]["code"] for a in answers if a["status"] == "failed"] == ["tier_limit", "tier_limit"]


@pytest.mark.parametrize(("chunks", "size", "tier", "reached_before"), [(2, 100, 150, 0), (3, 60, 100, 30)])
def test_concurrent_chunks_reach_exactly_the_tier(
    live_db: World, fresh_business: Any, chunks: int, size: int, tier: int, reached_before: int
) -> None:
    """Delivery workers' chunks for one business near its tier, written at the same time (each
    thread on its own connection, released together): exactly `tier` different customers are
    reached, the rest fail with the tier's reason and are not billed. Customers reached earlier
    stay free to message again."""
    from notifications import services

    business, _owner = fresh_business
    SendingLimits.objects.create(business=business, tier_override=tier, messages_per_second=100_000)
    customers = Customer.objects.bulk_create(
        [
            Customer(
                phone_number=fresh_mobile(), display_name=f"Tier {i}", country_code="DE", verified_at=timezone.now()
            )
            for i in range(chunks * size)
        ]
    )
    params = {"flight": "LH 1", "time": "09:00"}
    with in_business(business):
        approved_template(business, live_db.staff)
        for customer in customers[:reached_before]:  # reached before: they count, and stay free
            services.notification_send(
                business=business,
                api_key=None,
                request=services.send_request_clean(
                    to=customer.phone_number, template={"name": "flight_change", "parameters": params}
                ),
            )
        accepted = services.notifications_accept_batch(
            business=business,
            api_key=None,
            template="flight_change",
            language="en",
            recipients=[{"to": c.phone_number, "parameters": params} for c in customers],
        )
    ids = [n.pk for n in accepted.notifications]
    parts = iter([ids[i * size : (i + 1) * size] for i in range(chunks)])
    lock = threading.Lock()

    def deliver() -> int:
        with lock:
            part = next(parts)
        with schema_context(business.schema_name):
            return services.notifications_deliver_queued(business=business, notification_ids=part)

    assert sorted(run_concurrently(chunks, deliver)) == [size] * chunks
    with in_business(business):
        outcomes = list(Notification.objects.filter(batch_id=accepted.batch_id))
        reached = set(
            Message.objects.filter(kind="template", direction="out").values_list(
                "conversation__contact__customer_id", flat=True
            )
        )
    sent = [n for n in outcomes if n.status == "sent"]
    failed = [n for n in outcomes if n.status == "failed"]
    assert len(reached) == tier
    assert len(sent) == tier  # the customers reached before are in the batch again, free
    assert len(failed) == chunks * size - tier
    assert {n.failure_code for n in failed} == {"tier_limit"}
    assert all(n.price == 0 for n in failed)
    billed = UsageRecord.objects.filter(business=business)
    assert billed.count() == tier  # one conversation each, none for a refused send
    assert set(billed.values_list("customer_id", flat=True)) == reached


@pytest.mark.parametrize(("tier", "second_waits"), [(250, False), (100, True)])
def test_far_below_the_tier_writers_share_its_lock_near_it_they_take_turns(
    live_db: World, fresh_business: Any, tier: int, second_waits: bool
) -> None:
    """One writer holds the tier's lock (its transaction is open) while a second reads the tier
    for one new customer. Far below the tier (count + its own + 100 for the other holder fits)
    the second goes ahead at once; nearer, it takes the lock alone and waits for the first to
    commit (here it gives up after lock_timeout: PostgreSQL's own clock, not the test's)."""
    from django.db import OperationalError, connection, transaction

    from notifications.limits import TierAllowance

    business, _owner = fresh_business
    SendingLimits.objects.create(business=business, tier_override=tier, messages_per_second=100_000)
    first, second = Customer.objects.bulk_create(
        [Customer(phone_number=fresh_mobile(), display_name="Tier", verified_at=timezone.now()) for _ in range(2)]
    )
    holding, done = threading.Event(), threading.Event()
    outcome: list[str] = []

    def hold() -> None:
        try:
            with schema_context(business.schema_name), transaction.atomic():
                TierAllowance.now(business=business, customer_ids=[first.pk])
                holding.set()
                done.wait(30)
        finally:
            connection.close()

    def read() -> None:
        holding.wait(30)
        try:
            with schema_context(business.schema_name), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '1s'")
                allowance = TierAllowance.now(business=business, customer_ids=[second.pk])
                outcome.append("went ahead" if allowance.take(second.pk) else "refused")
        except OperationalError:
            outcome.append("waited")
        finally:
            done.set()
            connection.close()

    threads = [threading.Thread(target=hold), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcome == ["waited" if second_waits else "went ahead"]
