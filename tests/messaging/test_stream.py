"""The event stream under concurrency: ids are dense and become visible in order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django_tenants.utils import tenant_context

from accounts.models import User
from messaging.models import Event, Message
from messaging.services import message_send_customer
from tenancy.services import business_create
from tests.conftest import World, unique
from tests.messaging.conftest import last_event_id, make_customer


def test_concurrent_writers_leave_no_gap_and_commit_in_id_order(live_db: World) -> None:
    # A business of its own: the count below is exact, and the shared businesses collect other
    # tests' committed agents, sockets and jobs, any of which may append an event meanwhile
    # (CI twice saw a 61st event here, right after the test's 60, in business A).
    owner = User.objects.create(email=f"{unique('owner')}@stream.test")
    business = business_create(owner=owner, name="Stream Ltd", slug=unique("stream"))
    customers = [make_customer() for _ in range(6)]
    start = last_event_id(business)
    seen_max: list[int] = []
    failures: list[list[int]] = []
    stop = threading.Event()

    def writer(index: int) -> None:
        try:
            with tenant_context(business):
                for n in range(5):
                    message_send_customer(
                        business=business, customer=customers[index], body=f"{index}-{n}", client_msg_id=f"{n}"
                    )
        finally:
            connection.close()

    def watcher() -> None:
        # Whatever a reader sees must be a prefix: never id N+1 without N.
        try:
            with tenant_context(business):
                while not stop.is_set():
                    ids = list(Event.objects.filter(id__gt=start).order_by("id").values_list("id", flat=True))
                    if ids != list(range(start + 1, start + 1 + len(ids))):
                        failures.append(ids)
                    seen_max.append(len(ids))
        finally:
            connection.close()

    watch = threading.Thread(target=watcher)
    watch.start()
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(writer, range(6)))
    stop.set()
    watch.join()

    with tenant_context(business):
        ids = list(Event.objects.filter(id__gt=start).order_by("id").values_list("id", flat=True))
        assert ids == list(range(start + 1, start + 1 + 60))  # 30 messages × (created + updated)
        messages = Message.objects.filter(event_id__gt=start).order_by("event_id")
        assert messages.count() == 30
    assert seen_max  # the watcher really looked
    assert failures == []
