"""Notifications at scale: accepted per second through the batch endpoint, and the time until
connected customers see the message.

Run: REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/notify.py --recipients 2000 --connected 50
     [--workers 2] [--worker-thread] [--accept-only] [--profile DIR]

Uses a throwaway database. Starts one Daphne process (the real ASGI app), creates a business
with an approved template, an API key and `--recipients` verified customers (limits raised so
the bench measures the machinery, not the policy), opens `--connected` customers' chat sockets,
then POSTs batches of 1,000 recipients. Prints:
- accepted/s: recipients accepted per second of POST time (validation + one INSERT per batch +
  queued jobs), and the server's CPU-seconds for them (a figure the machine's load distorts far
  less); a worker delivers meanwhile unless `--accept-only`;
- delivery: `--workers` Procrastinate worker processes (`manage.py procrastinate worker`, as
  `make serve` runs them; started and registered before the first POST) work the queue through
  the send core; for each connected customer, seconds from the first POST until its socket got
  the `message.created` frame (p50/p99), delivered/s from the first accepted to the last sent,
  and the workers' CPU-seconds for it. `--worker-thread`: one worker in this process instead
  (how this bench measured before 2026-12-02; its CPU figure then includes the sockets' clients).
- `--profile DIR`: py-spy of the server while the batches are posted (DIR/accept-server.txt)
  and of each worker while it delivers (DIR/deliver-worker-N.txt), raw format.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
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

from bench.machine import cpu_seconds, machine_busy_seconds  # noqa: E402  (after the path setup)
from bench.throwaway_db import throwaway_database  # noqa: E402  (after the path setup)


def database_cpu_seconds() -> float:
    """CPU used so far by the PostgreSQL backends connected to this (the bench's) database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [pid for (pid,) in cursor.fetchall()]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # a backend that ended meanwhile
            total += cpu_seconds(pid)
    return total


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
    parser.add_argument("--workers", type=int, default=1, help="worker processes delivering")
    parser.add_argument("--worker-thread", action="store_true", help="one worker thread in this process instead")
    parser.add_argument("--profile", type=Path, default=None, help="write py-spy profiles into this directory")
    args = parser.parse_args()
    with throwaway_database(keep=args.keep):
        run(
            args.recipients,
            min(args.connected, args.recipients),
            accept_only=args.accept_only,
            workers=0 if args.worker_thread else max(1, args.workers),
            profile=args.profile,
        )


def setup(recipients: int) -> tuple[Any, str, list[Any]]:
    from django.core.management import call_command
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from accounts.models import Customer, User
    from notifications import services
    from template_reviews.models import SendingLimits, TemplateReview
    from template_reviews.services import template_review_approve
    from tenancy.services import business_create
    from verification.phone import phone_display

    call_command("parley_setup", verbosity=0)
    owner = User.objects.create_user("bench-owner@example.com", "x" * 12)
    staff = User.objects.create_user("bench-staff@example.com", "x" * 12, is_staff=True)
    business = business_create(owner=owner, name="Bench Air", slug="bench-air")
    SendingLimits.objects.create(business=business, messages_per_second=100_000, tier_override=1_000_000)
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [
            # As signing in stores them (customers.services.customer_sign_in_confirm).
            Customer(
                phone_number=f"+49151{i:08d}",
                phone_formatted=phone_display(f"+49151{i:08d}"),
                display_name=f"Kunde {i}",
                country_code="DE",
                verified_at=now,
            )
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


class Spy:
    """py-spy recording one process until stopped (nothing without a profile directory)."""

    def __init__(self, directory: Path | None, name: str, pid: int) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        self.process = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking"]
            + ["--output", str(directory / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.process.wait(30)


class Workers:
    """The delivering workers: `count` `manage.py procrastinate worker` processes on the
    notifications queue, or (count 0) one worker thread in this process."""

    def __init__(self, count: int, env: dict[str, str], schema_name: str) -> None:
        self.count = count
        self.schema_name = schema_name
        self.processes: list[subprocess.Popen[bytes]] = []
        self.started_cpu = 0.0
        self.env = env
        self.thread: threading.Thread | None = None

    def launch(self) -> None:
        """Start the processes and wait until each registered (before anything is posted)."""
        from django.db import connection

        for n in range(self.count):
            log = (ROOT / "test-artifacts" / f"notify-worker-{os.getpid()}-{n}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "notifications"]
                    + ["--name", f"bench-{n}"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        while self.processes and time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM procrastinate_workers")
                (registered,) = cursor.fetchone() or (0,)
            if registered >= self.count:
                break
            time.sleep(0.2)
        else:
            if self.processes:
                raise SystemExit("the workers did not start within 60 s (see test-artifacts/notify-worker-*.log)")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes] if self.count else [os.getpid()]

    def start(self, thread: threading.Thread) -> None:
        """Workers deliver from now on (the processes wait for jobs already: CPU counts from here)."""
        if self.count:
            self.started_cpu = sum(cpu_seconds(p.pid) for p in self.processes)
        else:
            self.started_cpu = time.process_time()
            self.thread = thread
            thread.start()

    def cpu(self) -> float:
        if self.count:
            return sum(cpu_seconds(p.pid) for p in self.processes) - self.started_cpu
        return time.process_time() - self.started_cpu

    async def drained(self) -> None:
        """Until no notification is left accepted (the connected customers are only some)."""
        from asgiref.sync import sync_to_async

        from notifications.models import Notification

        @sync_to_async
        def left() -> int:
            from django_tenants.utils import schema_context

            with schema_context(self.schema_name):
                return Notification.objects.filter(status="accepted").count()

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and await left():
            await asyncio.sleep(0.1)

    def describe(self, sockets: int) -> str:
        if self.count:
            return f"{self.count} worker process(es)"
        return f"this process (the worker thread and the {sockets} sockets' clients)"

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


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
    workers: Workers,
    profile: Path | None,
) -> tuple[float, dict[int, float]]:
    """Post the batches and wait for the connected customers; returns the first POST's wall-clock
    time and, per connected customer (index into `sessions`), when its socket got the message."""
    import httpx
    import websockets
    from django.conf import settings

    seen: dict[int, float] = {}
    seen_wall: dict[int, float] = {}  # the same moments as time.time(), to compare with the database's
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
                    seen_wall[index] = time.time()
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
        workers.start(thread)
    spy = Spy(profile, "accept-server", server_pid)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1/",
        headers={"Host": host, "Authorization": f"Bearer {secret}"},
        timeout=120,
    ) as client:
        from asgiref.sync import sync_to_async

        database_before = await sync_to_async(database_cpu_seconds)()
        machine_before = machine_busy_seconds()
        server_before = cpu_seconds(server_pid)
        start = time.perf_counter()
        start_wall = time.time()
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
    spy.stop()
    mode = "no worker running" if accept_only else "a worker delivering meanwhile"
    print(f"accepted:     {accepted} recipients in {posted:.2f} s → {accepted / posted:,.0f} accepted/s ({mode})")
    print(
        f"accept CPU:   the server used {server_cpu:.2f} CPU-s for them → {accepted / max(server_cpu, 0.01):,.0f} "
        "accepted per CPU-second of one process"
    )
    if accept_only:
        workers.start(thread)
    spies = [Spy(profile, f"deliver-worker-{n}", pid) for n, pid in enumerate(workers.pids())]
    try:
        await asyncio.wait_for(done.wait(), 300)
        await workers.drained()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for one in spies:
            one.stop()
    worker_cpu = workers.cpu()
    wall = time.perf_counter() - start
    machine = machine_busy_seconds() - machine_before
    server_all = cpu_seconds(server_pid) - server_before
    database = await sync_to_async(database_cpu_seconds)() - database_before
    latencies = sorted(t - start for t in seen.values())
    last = latencies[-1]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"connected:    {len(latencies)} customers saw it: p50 {statistics.median(latencies):.2f} s, "
        f"p99 {p99:.2f} s after the first POST (last {last:.2f} s)"
    )
    if thread.is_alive():
        thread.join(60)
    print(
        f"deliver CPU:  {workers.describe(len(sessions))} used {worker_cpu:.2f} CPU-s → "
        f"{len(customers) / max(worker_cpu, 0.01):,.0f} notifications per CPU-second"
    )
    # The machine is shared (other lanes' tests and benches): what the run itself used beside it.
    print(
        f"machine:      first POST → all delivered, {wall:.2f} s: {machine:.2f} of {wall * (os.cpu_count() or 1):.2f} "
        f"CPU-s busy — server {server_all:.2f}, workers {worker_cpu:.2f}, PostgreSQL (this database) "
        f"{database:.2f}, the rest (sockets' client, Redis, other processes) {machine - server_all - worker_cpu - database:.2f}"
    )
    return start_wall, seen_wall


def stages(business: Any, online: list[Any], start_wall: float, seen_wall: dict[int, float]) -> None:
    """Where a connected customer's wait went, from the database's clocks (one machine): the first
    POST → its notification accepted → its delivery job started → its chunk written (sent_at, just
    before the job's commit) → its socket got the frame."""
    from django.db import connection
    from django_tenants.utils import tenant_context

    from notifications.models import Notification

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT j.args, e.at FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
            "WHERE j.task_name = 'notifications.deliver' AND e.type = 'started'"
        )
        # Django's connection hands jsonb back as text.
        started = {n: at.timestamp() for args, at in cursor.fetchall() for n in json.loads(args)["notification_ids"]}
    with tenant_context(business):
        rows = {
            to: (pk, created.timestamp(), sent.timestamp())
            for pk, to, created, sent in Notification.objects.filter(
                to__in=[c.phone_number for c in online], status="sent"
            ).values_list("pk", "to", "created_at", "sent_at")
            if sent is not None
        }
    parts: dict[str, list[float]] = {"POST→accepted": [], "accepted→job start": [], "job start→written": []}
    parts["written→socket"] = []
    for index, wall in seen_wall.items():
        pk, created, sent = rows[online[index].phone_number]
        job = started.get(pk, created)
        for name, value in zip(parts, (created - start_wall, job - created, sent - job, wall - sent), strict=True):
            parts[name].append(value)

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    print(
        "stages:       connected customers, p50 / p99 s: "
        + "; ".join(f"{name} {p(v, 0.5):.2f} / {p(v, 0.99):.2f}" for name, v in parts.items())
    )


def run(
    recipients: int, connected: int, *, accept_only: bool = False, workers: int = 1, profile: Path | None = None
) -> None:
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
    delivering = Workers(workers, env, business.schema_name)
    try:
        delivering.launch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        with tenant_context(business):
            after = last_event_id()
        start_wall, seen_wall = asyncio.run(
            measure(
                port,
                business.host,
                secret,
                customers,
                sessions,
                after,
                accept_only=accept_only,
                server_pid=server.pid,
                workers=delivering,
                profile=profile,
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
        stages(business, online, start_wall, seen_wall)
    finally:
        delivering.stop()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
