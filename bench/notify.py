"""Notifications at scale: accepted per second through the batch endpoint, and the time until
connected customers see the message.

Run: REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/notify.py --recipients 2000 --connected 50

Uses a throwaway database. Starts one Daphne process (the real ASGI app), creates a business
with an approved template, an API key and `--recipients` verified customers (limits raised so
the bench measures the machinery, not the policy), opens `--connected` customers' chat sockets,
then POSTs batches of 1,000 recipients. Prints:
- accepted/s: recipients accepted per second of POST time (validation + one INSERT per batch +
  queued jobs), and the server's CPU-seconds for them (a figure the machine's load distorts far
  less); a worker delivers meanwhile unless `--accept-only`;
- delivery: a Procrastinate worker (in this process) works the queue through the send core;
  for each connected customer, seconds from the first POST until its socket got the
  `message.created` frame (p50/p99), delivered/s from the first accepted to the last sent, and
  this process's CPU-seconds for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as production runs: DEBUG off (no query log, no debug toolbar work), which needs a real
# key; this process (the worker) and the server share it so the sessions made here are valid there.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))

from bench.throwaway_db import throwaway_database  # noqa: E402  (after the path setup)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc): a figure the machine's load does not
    distort the way wall-clock rates are."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--connected", type=int, default=50)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--accept-only",
        action="store_true",
        help="no worker while the batches are posted: accepted/s of the endpoint alone (then delivery)",
    )
    args = parser.parse_args()
    with throwaway_database(keep=args.keep):
        run(args.recipients, min(args.connected, args.recipients), accept_only=args.accept_only)


def setup(recipients: int) -> tuple[Any, str, list[Any]]:
    from django.core.management import call_command
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from accounts.models import Customer, User
    from notifications import services
    from template_reviews.models import SendingLimits, TemplateReview
    from template_reviews.services import template_review_approve
    from tenancy.services import business_create

    call_command("parley_setup", verbosity=0)
    owner = User.objects.create_user("bench-owner@example.com", "x" * 12)
    staff = User.objects.create_user("bench-staff@example.com", "x" * 12, is_staff=True)
    business = business_create(owner=owner, name="Bench Air", slug="bench-air")
    SendingLimits.objects.create(business=business, messages_per_second=100_000, tier_override=1_000_000)
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [
            Customer(phone_number=f"+49151{i:08d}", display_name=f"Kunde {i}", country_code="DE", verified_at=now)
            for i in range(recipients)
        ]
    )
    with tenant_context(business):
        template = services.template_create(
            business=business,
            actor=owner,
            content=services.template_content_clean(
                name="flight_change", language="en", category="utility", body="Flight {{flight}} now at {{time}}."
            ),
        )
        review = TemplateReview.objects.get(business=business, template_id=template.pk)
        template_review_approve(review=review, reviewer=staff)
        secret = services.api_key_create(business=business, actor=owner, name="bench", scopes=["send"]).secret
    return business, secret, customers


def session_for(customer: Any) -> str:
    from django.contrib.sessions.backends.db import SessionStore

    from customers.session import SESSION_KEY

    store = SessionStore()
    store[SESSION_KEY] = customer.pk
    store.save()
    return str(store.session_key)


def worker(stop: threading.Event) -> None:
    from django.db import connections
    from procrastinate.contrib.django import app

    try:
        with app.replace_connector(app.connector.get_worker_connector()) as worker_app:  # type: ignore[attr-defined]
            while not stop.is_set():
                worker_app.run_worker(
                    wait=False, install_signal_handlers=False, listen_notify=False, queues=["notifications"]
                )
                time.sleep(0.05)
    finally:
        connections.close_all()


async def measure(
    port: int,
    host: str,
    secret: str,
    customers: list[Any],
    sessions: list[str],
    after: int,
    *,
    accept_only: bool,
    server_pid: int,
) -> None:
    import httpx
    import websockets
    from django.conf import settings

    seen: dict[int, float] = {}
    done = asyncio.Event()

    async def listen(index: int, session: str) -> None:
        # Python does not resolve *.localhost: connect to loopback, name the business in the URL.
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        async with websockets.connect(
            f"ws://{host}:{port}/ws/chat/",
            sock=sock,
            origin=f"http://{host}:{port}",  # type: ignore[arg-type]
            additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"},
        ) as ws:
            await ws.send(json.dumps({"type": "resume", "after": after}))
            ready.release()
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "message.created" and frame["message"]["direction"] == "out":
                    seen[index] = time.perf_counter()
                    if len(seen) == len(sessions):
                        done.set()
                    return

    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(listen(i, s)) for i, s in enumerate(sessions)]
    for _ in sessions:
        await asyncio.wait_for(ready.acquire(), 30)
    recipients = [{"to": c.phone_number, "parameters": {"flight": "AU 412", "time": "10:40"}} for c in customers]
    # A worker is always running in production: it starts on the first batch while later ones
    # are still being posted.
    stop = threading.Event()
    thread = threading.Thread(target=worker, args=(stop,), daemon=True)
    if not accept_only:
        thread.start()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1/",
        headers={"Host": host, "Authorization": f"Bearer {secret}"},
        timeout=120,
    ) as client:
        start = time.perf_counter()
        server_cpu = cpu_seconds(server_pid)
        accepted = 0
        for offset in range(0, len(recipients), 1000):
            response = await client.post(
                "messages/batch", json={"template": "flight_change", "recipients": recipients[offset : offset + 1000]}
            )
            response.raise_for_status()
            accepted += response.json()["accepted"]
        posted = time.perf_counter() - start
        server_cpu = cpu_seconds(server_pid) - server_cpu
    mode = "no worker running" if accept_only else "a worker delivering meanwhile"
    print(f"accepted:     {accepted} recipients in {posted:.2f} s → {accepted / posted:,.0f} accepted/s ({mode})")
    print(
        f"accept CPU:   the server used {server_cpu:.2f} CPU-s for them → {accepted / max(server_cpu, 0.01):,.0f} "
        "accepted per CPU-second of one process"
    )
    worker_cpu = time.process_time()
    if accept_only:
        thread.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
    worker_cpu = time.process_time() - worker_cpu
    latencies = sorted(t - start for t in seen.values())
    last = latencies[-1]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"connected:    {len(latencies)} customers saw it: p50 {statistics.median(latencies):.2f} s, "
        f"p99 {p99:.2f} s after the first POST (last {last:.2f} s)"
    )
    thread.join(60)
    print(
        f"deliver CPU:  this process (the worker and the {len(sessions)} sockets' clients) used "
        f"{worker_cpu:.2f} CPU-s → {len(customers) / max(worker_cpu, 0.01):,.0f} notifications per CPU-second"
    )


def run(recipients: int, connected: int, *, accept_only: bool = False) -> None:
    from django.conf import settings
    from django_tenants.utils import tenant_context

    from messaging.selectors import last_event_id
    from notifications.models import Notification

    business, secret, customers = setup(recipients)
    # The customers who are online are spread through the batch, not all at its start.
    step = max(1, recipients // connected)
    online = customers[::step][:connected]
    # An open chat page belongs to a conversation: these customers wrote to the business before.
    from messaging.services import message_send_customer

    with tenant_context(business):
        for customer in online:
            message_send_customer(business=business, customer=customer, body="Hello")
    sessions = [session_for(c) for c in online]
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        PARLEY_PORT=str(port),
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,  # the sessions made here must be valid there
    )
    # The worker here publishes, the server's sockets listen: one channel layer prefix for both.
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    prefix = layer.get("CONFIG", {}).get("prefix")
    if prefix:
        env["PARLEY_CHANNEL_PREFIX"] = prefix
    log_path = ROOT / "test-artifacts" / f"notify-{port}.log"
    log_path.parent.mkdir(exist_ok=True)
    log = log_path.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        with tenant_context(business):
            after = last_event_id()
        asyncio.run(
            measure(
                port,
                business.host,
                secret,
                customers,
                sessions,
                after,
                accept_only=accept_only,
                server_pid=server.pid,
            )
        )
        from django.db.models import Count, Max, Min

        with tenant_context(business):
            figures = Notification.objects.filter(status="sent").aggregate(
                n=Count("pk"), first=Min("created_at"), last=Max("sent_at")
            )
        if figures["n"]:
            span = (figures["last"] - figures["first"]).total_seconds()
            print(
                f"delivered:    {figures['n']} sent in {span:.2f} s from the first accepted to the last sent "
                f"→ {figures['n'] / span:,.0f} delivered/s"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
