"""Reliability check 4: kill -9 a Procrastinate worker mid-job; jobs are retried and nothing is
sent twice for one identifier.

Three local providers stand in for the outside world: a fake Stripe (tests/billing/fake_stripe,
which like Stripe refuses a second meter event with an identifier it already has), a fake
Twilio and a webhook receiver. Each holds its first request open after doing the work, so the
worker is killed at the worst moment: the provider has the meter event, the text, the webhook,
and the worker never hears back. A second worker then starts as in production; the periodic
stalled-job recovery (config.jobs.retry_stalled_jobs) must put the dead worker's jobs back,
and the jobs must not repeat anything: the meter event goes again with the same identifier
(refused as a duplicate, so counted once), the text and the webhook whose outcome is unknown
are not sent again, and everything else is sent exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing import stripe_gateway
from billing.models import UsageRecord
from billing.services import conversation_charge_for_message
from notifications import webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from reliability.report import record
from tests.billing.fake_stripe import FakeStripe, running
from tests.conftest import ROOT, World, unique
from tests.conftest import test_database_url as server_database_url  # not collected as a test
from verification.jobs import seal, send_sms
from verification.models import SmsDispatch

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
EACH = 6  # jobs of each kind
RECOVERY_TIMEOUT = 240.0  # stalled after 30 s without heartbeat, recovery runs every minute


@dataclass
class HoldingStripe(FakeStripe):
    """Holds the first meter event's answer (after accepting it) until `release` is set."""

    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        answer = super().handle(method, path, params)
        if path == "/v1/billing/meter_events" and not self.held.is_set():
            self.held.set()
            self.release.wait(120)
        return answer


@dataclass
class Providers:
    """A fake Twilio and a webhook receiver on one port; each holds its first request open
    (after recording it) until `release` is set."""

    url: str = ""
    sms: list[tuple[str, str]] = field(default_factory=list)  # (to, body)
    webhooks: list[str] = field(default_factory=list)  # Parley-Delivery ids
    sms_held: threading.Event = field(default_factory=threading.Event)
    webhook_held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any], threading.Event | None]:
        with self.lock:
            if path.endswith("/Messages.json"):
                form = dict(parse_qsl(body.decode()))
                self.sms.append((form.get("To", ""), form.get("Body", "")))
                hold = None if self.sms_held.is_set() else self.sms_held
                return 201, {"sid": f"SM{uuid.uuid4().hex}"}, hold
            if path == "/hook":
                self.webhooks.append(headers.get("Parley-Delivery", ""))
                hold = None if self.webhook_held.is_set() else self.webhook_held
                return 200, {"ok": True}, hold
        return 404, {}, None


@contextmanager
def providers_running(providers: Providers) -> Iterator[Providers]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer, hold = providers.take(self.path, self.headers, body)
            if hold is not None:
                hold.set()
                providers.release.wait(120)
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the worker is gone

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    providers.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield providers
    finally:
        server.shutdown()
        server.server_close()


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log_dir = ROOT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "procrastinate",
            "worker",
            "--concurrency",
            "3",
            "--queues",
            "billing,sms,webhooks,maintenance",
        ],
        cwd=ROOT,
        env=env,
        stdout=(log_dir / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return bool(condition())


def clear_queues() -> None:
    """Jobs other checks left queued would run with this check's providers: gone first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM procrastinate_jobs WHERE queue_name IN ('billing', 'sms', 'webhooks', 'maintenance') "
            "AND status IN ('todo', 'doing')"
        )


def test_worker_killed_mid_job_retries_and_sends_nothing_twice(live_db: World) -> None:
    business = live_db.business_a
    tag = unique("wcrash")
    stripe = HoldingStripe()
    providers = Providers()
    worker: subprocess.Popen[bytes] | None = None
    with running(stripe), providers_running(providers):
        clear_queues()
        with override_settings(
            STRIPE_SECRET_KEY="sk_test_fake",
            STRIPE_API_BASE=stripe.url,
            STRIPE_NETWORK_RETRIES=0,
            PARLEY_WEBHOOKS_ALLOW_PRIVATE=True,
        ):
            stripe_gateway.catalog_sync()
            # The work: usage records to report, texts to send, webhooks to deliver.
            records = [
                conversation_charge_for_message(
                    business=business,
                    conversation_id=10_000_000 + i,
                    customer_id=uuid.uuid4().int % 10**12,
                    customer_phone="+4915112345678",
                    category="utility",
                    sent_at=timezone.now() - timedelta(minutes=EACH - i),
                )
                for i in range(EACH)
            ]
            references = [f"{tag}:{i}" for i in range(EACH)]
            for i, reference in enumerate(references):
                send_sms.defer(to=f"+49151000{i:05d}", sealed_body=seal(f"Parley: {tag} {i}"), reference=reference)
            with tenant_context(business):
                endpoint = WebhookEndpoint.objects.create(
                    url=f"{providers.url}/hook",
                    secret="whsec_test",
                    event_types=["template.status"],  # not made from the stream: only these
                )
                deliveries = []
                for i in range(EACH):
                    delivery = WebhookDelivery.objects.create(
                        endpoint=endpoint,
                        event_type="template.status",
                        body=json.dumps({"n": i, "tag": tag}),
                        created_at=timezone.now(),
                    )
                    deliveries.append(delivery.pk)
                    webhooks._defer(business, delivery)
        env = dict(
            os.environ,
            DATABASE_URL=server_database_url(),
            STRIPE_SECRET_KEY="sk_test_fake",
            STRIPE_API_BASE=stripe.url,
            STRIPE_NETWORK_RETRIES="0",
            PARLEY_SMS_BACKEND="twilio",
            TWILIO_ACCOUNT_SID="ACtest",
            TWILIO_AUTH_TOKEN="token",
            TWILIO_FROM_NUMBER="+15005550006",
            TWILIO_API_BASE=providers.url,
            PARLEY_WEBHOOKS_ALLOW_PRIVATE="1",
        )
        try:
            worker = start_worker(env, f"worker-crash-1-{tag}")
            all_held = wait_for(
                lambda: stripe.held.is_set() and providers.sms_held.is_set() and providers.webhook_held.is_set(), 90
            )
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            killed = time.monotonic()
            stripe.release.set()
            providers.release.set()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM procrastinate_jobs WHERE status = 'doing' AND queue_name IN ('billing', 'sms', 'webhooks')"
                )
                stalled = [row[0] for row in cursor.fetchall()]
            worker = start_worker(env, f"worker-crash-2-{tag}")

            def finished() -> bool:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status IN ('todo', 'doing')",
                        [stalled],
                    )
                    left = cursor.fetchone()[0]
                pending_records = UsageRecord.objects.filter(pk__in=[r.pk for r in records], report_state="pending")
                with tenant_context(business):
                    pending_deliveries = WebhookDelivery.objects.filter(pk__in=deliveries, status="pending").exists()
                open_texts = SmsDispatch.objects.filter(reference__in=references, status="sending").exists()
                sms_done = SmsDispatch.objects.filter(reference__in=references).count() == EACH
                return (
                    not left and not pending_records.exists() and not pending_deliveries and sms_done and not open_texts
                )

            recovered = wait_for(finished, RECOVERY_TIMEOUT)
            recovered_in = time.monotonic() - killed
        finally:
            if worker is not None and worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(15)
                except subprocess.TimeoutExpired:
                    worker.kill()

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, status, attempts FROM procrastinate_jobs WHERE id = ANY(%s)", [stalled])
        stalled_jobs = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    retried = [job for job, (status, attempts) in stalled_jobs.items() if status == "succeeded" and attempts >= 1]
    # Stripe: each record's identifier accepted once; the held one was sent again and refused.
    identifiers = [str(r.pk) for r in records]
    meter_requests = Counter(r.params.get("identifier") for r in stripe.calls("POST", "/v1/billing/meter_events"))
    accepted_events = [i for i in identifiers if i in stripe.meter_events]
    reported = UsageRecord.objects.filter(pk__in=[r.pk for r in records], report_state="reported").count()
    # Texts: each text (one per reference) reached the provider at most once.
    bodies = Counter(body for _to, body in providers.sms if tag in body)
    texts_twice = sorted(body for body, n in bodies.items() if n > 1)
    dispatch = Counter(SmsDispatch.objects.filter(reference__in=references).values_list("status", flat=True))
    # Webhooks: each Parley-Delivery id received at most once.
    received = Counter(d for d in providers.webhooks if d in {str(pk) for pk in deliveries})
    webhooks_twice = sorted(d for d, n in received.items() if n > 1)
    with tenant_context(business):
        delivery_states = Counter(WebhookDelivery.objects.filter(pk__in=deliveries).values_list("status", flat=True))
        unknown = WebhookDelivery.objects.filter(pk__in=deliveries, last_error=webhooks.UNKNOWN_OUTCOME).count()
    passed = (
        all_held
        and recovered
        and len(stalled) == 3
        and len(retried) == len(stalled)
        and len(accepted_events) == EACH
        and reported == EACH
        and not texts_twice
        and not webhooks_twice
        and dispatch["sent"] == EACH - 1
        and dispatch["unknown"] == 1
        and delivery_states["delivered"] == EACH - 1
        and unknown == 1
    )
    record(
        check="4. Worker crash",
        tried=f"{EACH} meter reports, {EACH} texts, {EACH} webhooks queued; fake Stripe, Twilio and webhook receiver "
        f"each hold their first request after doing the work; kill -9 of the worker then, a new worker started",
        result=f"{len(stalled)} jobs left 'doing' by the dead worker, {len(retried)} retried by the stalled-job "
        f"recovery and succeeded, all done {recovered_in:.0f} s after the kill; Stripe: {len(accepted_events)} of "
        f"{EACH} identifiers accepted once, {sum(meter_requests.values())} requests (a resend refused as duplicate); "
        f"texts: {sum(bodies.values())} reached the provider for {EACH} references, {len(texts_twice)} twice "
        f"({dispatch['sent']} sent, {dispatch['unknown']} outcome unknown, not resent); webhooks: "
        f"{sum(received.values())} received for {EACH} ids, {len(webhooks_twice)} twice "
        f"({delivery_states['delivered']} delivered, {unknown} outcome unknown, not resent)",
        passed=passed,
    )
    assert all_held, "the providers never all had a request in flight"
    assert recovered, f"jobs not finished {RECOVERY_TIMEOUT:.0f} s after the kill"
    assert len(stalled) == 3, stalled
    assert len(retried) == len(stalled), stalled_jobs
    assert len(accepted_events) == EACH and reported == EACH
    assert not texts_twice, texts_twice
    assert not webhooks_twice, webhooks_twice
    assert dispatch == Counter({"sent": EACH - 1, "unknown": 1}), dispatch
    assert delivery_states == Counter({"delivered": EACH - 1, "failed": 1}) and unknown == 1, delivery_states
