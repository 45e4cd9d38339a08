"""Outgoing webhooks against a real local HTTP receiver that verifies signatures on its own;
the retry schedule driven by a fake clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import transaction

from accounts.models import User
from messaging.services import message_send_customer
from notifications import webhooks
from notifications.errors import NotificationError
from notifications.models import WebhookDelivery, WebhookEndpoint
from tenancy.notices import dashboard_notices
from tenancy.services import business_create
from tests.conftest import World, business_client, in_business, unique
from tests.jobs import run_queued_jobs
from tests.messaging.test_api import make_customer
from tests.notifications.conftest import template_content


@dataclass
class Receiver:
    """A webhook consumer: checks each request's signature as a customer's server would."""

    port: int = 0
    secret: str = ""
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/parley"

    def verify(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(","))
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])


def _handler_for(state: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(
                {
                    "valid": bool(state.secret) and state.verify(self.headers["Parley-Signature"], body),
                    "json": json.loads(body),
                    "signature": self.headers["Parley-Signature"],
                }
            )
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    settings.PARLEY_WEBHOOKS_ALLOW_PRIVATE = True


def test_private_and_loopback_destinations_are_refused_by_default(world: World, settings: Any) -> None:
    settings.PARLEY_WEBHOOKS_ALLOW_PRIVATE = False
    with in_business(world.business_a):
        for url in (
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.0.0.5/x",
            "http://[::1]/x",
            "ftp://x.org/",
        ):
            with pytest.raises(NotificationError):
                webhooks.webhook_endpoint_create(
                    business=world.business_a, actor=world.owner_a, url=url, event_types=["message.status"]
                )
        with pytest.raises(NotificationError):  # agents cannot manage webhooks
            webhooks.webhook_endpoint_create(
                business=world.business_a,
                actor=world.agent_a,
                url="https://example.org/",
                event_types=["message.status"],
            )


def test_signature_verifies_with_the_documented_snippet() -> None:
    namespace: dict[str, Any] = {}
    snippet = webhooks.__doc__.split("Verifying a delivery (receiver side):", 1)[1]  # type: ignore[union-attr]
    exec(compile("\n".join(line[4:] for line in snippet.splitlines()), "snippet", "exec"), namespace)
    body = b'{"type":"message.status"}'
    now = int(time.time())
    header = webhooks.signature_header(secret="whsec_x", body=body, timestamp=now)
    assert namespace["verify"]("whsec_x", header, body)
    assert not namespace["verify"]("whsec_y", header, body)
    assert not namespace["verify"]("whsec_x", header, body + b" ")
    old = webhooks.signature_header(secret="whsec_x", body=body, timestamp=now - 3600)
    assert not namespace["verify"]("whsec_x", old, body)


def test_template_decision_is_delivered_signed(world: World, receiver: Receiver, loopback_allowed: None) -> None:
    from notifications import services
    from template_reviews.models import TemplateReview
    from template_reviews.services import template_review_reject

    with in_business(world.business_a):
        endpoint = webhooks.webhook_endpoint_create(
            business=world.business_a, actor=world.owner_a, url=receiver.url, event_types=["template.status"]
        )
        receiver.secret = endpoint.secret
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
        review = TemplateReview.objects.get(business=world.business_a, template_id=template.pk)
        template_review_reject(review=review, reviewer=world.staff, reason="Too vague")
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert webhooks.webhook_delivery_attempt(business=world.business_a, delivery_id=delivery.pk) == "delivered"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    [hit] = receiver.received
    assert hit["valid"]
    assert hit["json"]["type"] == "template.status"
    assert hit["json"]["data"]["template"] == {
        "id": template.pk,
        "name": "flight_change",
        "language": "en",
        "status": "rejected",
        "reason": "Too vague",
    }


def test_retry_schedule_backs_off_for_three_days_then_disables(
    world: World, receiver: Receiver, loopback_allowed: None, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.status = 500
    start = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
    with (
        in_business(world.business_a),
        time_machine.travel(start, tick=False) as clock,
        django_capture_on_commit_callbacks(execute=True),
    ):
        endpoint = webhooks.webhook_endpoint_create(
            business=world.business_a, actor=world.owner_a, url=receiver.url, event_types=["template.status"]
        )
        for round_ in range(webhooks.DISABLE_AFTER_FAILURES):
            webhooks.webhook_enqueue(business=world.business_a, event_type="template.status", data={"n": round_})
            delivery = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id").first()
            assert delivery is not None
            waits = []
            while True:
                outcome = webhooks.webhook_delivery_attempt(business=world.business_a, delivery_id=delivery.pk)
                delivery.refresh_from_db()
                if outcome != "retry":
                    break
                assert delivery.next_attempt_at is not None
                waits.append(delivery.next_attempt_at - datetime.now(UTC))
                clock.move_to(delivery.next_attempt_at)
            assert outcome in ("failed", "disabled")
            if round_ == 0:
                assert waits[:5] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
                assert max(waits) == timedelta(hours=6)
                assert datetime.now(UTC) - delivery.created_at <= timedelta(days=3)
                assert delivery.status == "failed" and delivery.last_status_code == 500
        endpoint.refresh_from_db()
        assert not endpoint.is_active and "3 days" in endpoint.disabled_reason
    assert len(receiver.received) > 20
    assert mail.outbox and world.owner_a.email in mail.outbox[-1].to
    assert any(receiver.url in n.title for n in dashboard_notices(business=world.business_a))


@pytest.fixture
def fresh_business(live_db: World) -> Any:
    owner = User.objects.create(email=f"{unique('owner')}@hooks.test")
    return business_create(owner=owner, name="Hook Air", slug=unique("hooks")), owner


def test_stream_events_become_webhooks_sent_by_jobs(
    fresh_business: Any, receiver: Receiver, loopback_allowed: None
) -> None:
    business, owner = fresh_business
    with in_business(business):
        endpoint = webhooks.webhook_endpoint_create(
            business=business, actor=owner, url=receiver.url, event_types=["message.received"]
        )
    receiver.secret = endpoint.secret
    customer = make_customer()
    with in_business(business):
        message_send_customer(business=business, customer=customer, body="Is my flight on time?")
    from notifications.jobs import webhook_dispatch

    webhook_dispatch.defer(schema_name=business.schema_name)
    run_queued_jobs(queues=["webhooks"])
    [hit] = receiver.received
    assert hit["valid"] and hit["json"]["type"] == "message.received"
    assert hit["json"]["data"]["message"]["body"] == "Is my flight on time?"
    assert hit["json"]["business"] == business.slug
    # Dispatching again finds nothing new: each event is delivered once.
    webhook_dispatch.defer(schema_name=business.schema_name)
    run_queued_jobs(queues=["webhooks"])
    assert len(receiver.received) == 1
    # The delivery log shows it, and "send again" delivers the same body again.
    client = business_client(business, owner)
    page = client.get("/developers/").content.decode()
    assert "message.received" in page and "Send again" in page
    with in_business(business):
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert client.post(f"/developers/deliveries/{delivery.pk}/resend/").status_code == 302
    run_queued_jobs(queues=["webhooks"])
    assert len(receiver.received) == 2 and receiver.received[1]["json"] == hit["json"] and receiver.received[1]["valid"]
    with in_business(business):
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0


def test_a_slow_receiver_holds_no_lock_or_transaction_while_it_answers(
    fresh_business: Any, loopback_allowed: None
) -> None:
    """The attempt claims the delivery, commits, POSTs with no transaction open, then records:
    while one receiver sits on its request, other deliveries go out, and the slow delivery's row
    and its endpoint's row are free."""
    from django.db import connection, connections

    business, owner = fresh_business
    answer = threading.Event()
    arrived = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.set()
            answer.wait(30)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    slow_server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow_server.serve_forever, daemon=True).start()
    fast = Receiver()
    fast_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fast))
    fast.port = fast_server.server_address[1]
    threading.Thread(target=fast_server.serve_forever, daemon=True).start()
    try:
        with in_business(business):
            slow_endpoint = webhooks.webhook_endpoint_create(
                business=business,
                actor=owner,
                url=f"http://127.0.0.1:{slow_server.server_address[1]}/slow",
                event_types=["template.status"],
            )
            fast_endpoint = webhooks.webhook_endpoint_create(
                business=business, actor=owner, url=fast.url, event_types=["template.status"]
            )
            fast.secret = fast_endpoint.secret
            webhooks.webhook_enqueue(business=business, event_type="template.status", data={"n": 1})
            slow_delivery = WebhookDelivery.objects.get(endpoint=slow_endpoint)
            fast_delivery = WebhookDelivery.objects.get(endpoint=fast_endpoint)

        outcomes: dict[str, str] = {}

        def attempt_slow() -> None:
            try:
                with in_business(business):
                    outcomes["slow"] = webhooks.webhook_delivery_attempt(
                        business=business, delivery_id=slow_delivery.pk
                    )
            finally:
                connections.close_all()

        worker = threading.Thread(target=attempt_slow)
        worker.start()
        assert arrived.wait(10), "the slow receiver never got its request"
        with in_business(business):
            # No transaction of the slow attempt is open while its request is in flight …
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
                )
                assert cursor.fetchone()[0] == 0
            # … nor a lock on its delivery or endpoint: both rows can be locked at once.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id FROM {WebhookDelivery._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                    [slow_delivery.pk],
                )
                cursor.execute(
                    f"SELECT id FROM {WebhookEndpoint._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                    [slow_endpoint.pk],
                )
            # Another delivery goes out meanwhile; a second attempt at the slow one leaves it alone.
            assert webhooks.webhook_delivery_attempt(business=business, delivery_id=fast_delivery.pk) == "delivered"
            assert webhooks.webhook_delivery_attempt(business=business, delivery_id=slow_delivery.pk) == "in flight"
        assert worker.is_alive() and [hit["valid"] for hit in fast.received] == [True]
        answer.set()
        worker.join(20)
        assert outcomes["slow"] == "delivered"
        with in_business(business):
            slow_delivery.refresh_from_db()
            assert (slow_delivery.status, slow_delivery.attempts, slow_delivery.claimed_until) == ("delivered", 1, None)
    finally:
        answer.set()
        slow_server.shutdown()
        fast_server.shutdown()


def test_an_attempt_cut_off_mid_post_is_not_sent_again(
    world: World, receiver: Receiver, loopback_allowed: None
) -> None:
    """Issue 10 (worker crash): an attempt whose claim ran out without a recorded result (the
    worker died during the POST) may have reached the endpoint; the retried job does not send the same
    Parley-Delivery again, and says why in the delivery log."""
    from django.utils import timezone

    with in_business(world.business_a):
        endpoint = webhooks.webhook_endpoint_create(
            business=world.business_a, actor=world.owner_a, url=receiver.url, event_types=["template.status"]
        )
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event_type="template.status", body="{}", created_at=timezone.now()
        )
        # Claimed by an attempt whose lease ran out unrecorded: its worker died mid-POST.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=1, claimed_until=timezone.now() - timedelta(seconds=1)
        )
        assert webhooks.webhook_delivery_attempt(business=world.business_a, delivery_id=delivery.pk) == "unknown"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.last_error, delivery.claimed_until) == (
            "failed",
            webhooks.UNKNOWN_OUTCOME,
            None,
        )
        assert receiver.received == []
        # A finished attempt leaves nothing open: the next one is a normal attempt.
        again = WebhookDelivery.objects.create(
            endpoint=endpoint, event_type="template.status", body="{}", created_at=timezone.now()
        )
        assert webhooks.webhook_delivery_attempt(business=world.business_a, delivery_id=again.pk) == "delivered"
        again.refresh_from_db()
        assert again.claimed_until is None
    assert len(receiver.received) == 1
