"""The live inbox under load: customers and agents on real websockets against a real server.

Run: .venv/bin/python bench/inbox_load.py --customers 500 --agents 50 --rate 1000 --duration 60
     .venv/bin/python bench/inbox_load.py --compare          # Parley vs limit server vs tutorial chat
     .venv/bin/python bench/inbox_load.py --url ws://127.0.0.1:8080 --database bench_x  # a running server

Creates a throwaway database (`bench_<random>`) with one business, --customers verified
customers (each with a conversation) and --agents agents, starts the production server
(`python -m config.serve`: DEBUG=0, a SECRET_KEY, the Redis channel layer, --processes ASGI
processes on one port) and connects every customer and agent over websockets, 127.0.0.1 with the
business's Host and Origin, signed in through a session cookie. Clients behave as the pages do
(bench/clients.py: resume, view, acks, typing, retries of refused sends); every --list-sample-th
agent parses its list batches and measures list staleness, the others count them unparsed (the
pages answer nothing to them; parsing them all cost the generator a third of its CPU).

Customers send --rate messages/s in total on an even schedule (round robin, not bursts); each
agent views one conversation and agents reply --reply-rate messages/s in total (default a tenth of
the rate, within their send limit). After --duration seconds sending stops, clients wait for
outstanding deliveries while answers keep coming (up to --drain seconds after the last one,
--drain-max in all), and the run prints offered vs accepted vs persisted messages/s,
deliveries/s, latency percentiles, refusals, what was lost, the server's and the generator's CPU
and memory, and the machine's (how busy all cores were, the hypervisor's steal, PostgreSQL's
CPU) over the same window, so runs on a shared machine can be compared. With --pg-log
(PostgreSQL's log file), also where PostgreSQL's time went in the load window, statement by
statement, with --pg-scans how each table was read (sequential scans and their rows a second: a
plan reading a table whole), and with --pg-waits what its sessions waited on
(bench/pg_statements.py).
Loopback only; everything it starts it stops, and the database is dropped (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench import cpu_profile, pg_statements  # noqa: E402  (after the path setup)
from bench.machine import machine_shares, main_thread_schedule, postgres_cpu_seconds, steal_warning  # noqa: E402

BUSINESS_SLUG = "benchco"
TARGETS = ("parley", "limit", "tutorial")


# --- the plan: who connects where, as what ----------------------------------------------------


@dataclass
class Client:
    cookie: str  # the Cookie header (a Django session, or the bench servers' identity)
    conversation_id: int  # customers: their conversation; agents: the one they view


@dataclass
class Plan:
    host: str
    port: int
    customers: list[Client]
    agents: list[Client]
    rate: float
    reply_rate: float
    duration: float
    drain: float
    connect_rate: float
    # The drain's limit in all (`drain` counts from the last answer that came in).
    drain_max: float
    # Every list_sample-th agent reads its list frames (and measures list staleness); the others
    # only count them (bench.clients.InboxPage `reads_list`).
    list_sample: int = 1
    # The generator processes' nice value (0: as started). The generator shares the machine
    # with what it measures, and its own lag is in every figure it takes (a refusal's answer is
    # timestamped when its loop gets to it): below 0 the kernel runs it first, as clients on
    # machines of their own would be (issue 9, docs/performance.md, session 42: at 3x overload
    # its schedule lag p99 58–63 ms at 0, 16–26 ms at -10). Below 0 needs root (CAP_SYS_NICE).
    generator_nice: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- database set-up (Django, in the parent process only) --------------------------------------


def create_database() -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Where benchmark databases are created and dropped (read once: set-up points DATABASE_URL at them).
ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def admin_url() -> str:
    return ADMIN_URL


def database_url(name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_url())
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def setup_business(
    database: str,
    *,
    customers: int,
    agents: int,
    extra_businesses: int,
    migrate: bool = True,
    past_customers: int = 0,
) -> dict[str, Any]:
    """Business, agents, customers with one conversation each, sessions. Returns the plan data."""
    os.environ["DATABASE_URL"] = database_url(database)
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import schema_context

    from accounts.models import Customer, User
    from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
    from messaging.models import Contact, Conversation
    from tenancy.models import Business

    store_class = import_module(settings.SESSION_ENGINE).SessionStore

    def session(**values: Any) -> str:
        store = store_class()
        for key, value in values.items():
            store[key] = value
        store.save()
        return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"

    started = time.perf_counter()
    if migrate:  # a database given with --database is already set up (and may hold 1,000 schemas)
        call_command("parley_setup", verbosity=0)
    existing = Business.objects.filter(slug=BUSINESS_SLUG).first()
    if existing is not None:
        # A database kept from an earlier run (bench/tenants.py --reuse): the same business, its
        # agents and customers again, with new sessions (this run's SECRET_KEY).
        agent_users = list(
            User.objects.filter(memberships__business=existing, memberships__role="agent").order_by("email")
        )[:agents]
        with schema_context(existing.schema_name):
            contacts = {c.customer_id: c for c in Contact.objects.all()}
            people = list(Customer.objects.filter(pk__in=contacts).order_by("phone_number"))[:customers]
            by_customer = dict(Conversation.objects.values_list("contact__customer_id", "pk"))
            conversations = [by_customer[c.pk] for c in people]
        if len(people) < customers or len(agent_users) < agents:
            raise SystemExit(f"{database} has the bench business with fewer customers or agents than asked")
        business = existing
    else:
        business, agent_users, people, conversations = _new_business(
            customers=customers, agents=agents, extra_businesses=extra_businesses, past_customers=past_customers
        )
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    customer_cookies = [session(**{CUSTOMER_SESSION_KEY: c.pk}) for c in people]
    agent_cookies = [
        session(
            **{
                SESSION_KEY: str(u.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: u.get_session_auth_hash(),
            }
        )
        for u in agent_users
    ]
    print(f"set-up: {customers} customers, {agents} agents in {time.perf_counter() - started:.1f} s", flush=True)
    return {
        "host": business.host if hasattr(business, "host") else f"{BUSINESS_SLUG}.{settings.PARLEY_DOMAIN}",
        "schema": business.schema_name,
        "conversations": conversations,
        "customer_cookies": customer_cookies,
        "agent_cookies": agent_cookies,
    }


def _new_business(
    *, customers: int, agents: int, extra_businesses: int, past_customers: int = 0
) -> tuple[Any, list[Any], list[Any], list[int]]:
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from accounts.models import Customer, Membership, User
    from bench.history import conversations_add
    from messaging import services
    from tenancy.services import business_create

    owner = User.objects.create_user("bench-owner@example.com", "x" * 16)
    extra_started = time.perf_counter()
    for n in range(extra_businesses):
        business_create(owner=owner, name=f"Other {n}", slug=f"other-{n}")
    if extra_businesses:
        print(f"set-up: {extra_businesses} other businesses in {time.perf_counter() - extra_started:.1f} s", flush=True)
    business = business_create(owner=owner, name="Bench Co", slug=BUSINESS_SLUG)
    if past_customers:
        past_started = time.perf_counter()
        conversations_add(business, past_customers)
        print(f"set-up: {past_customers} past conversations in {time.perf_counter() - past_started:.1f} s", flush=True)
    agent_users = []
    for n in range(agents):
        user = User.objects.create_user(f"agent{n}@bench.test", "x" * 16)
        Membership.objects.create(user=user, business=business, role="agent")
        agent_users.append(user)
    now = timezone.now()
    people = Customer.objects.bulk_create(
        Customer(phone_number=f"+4915{n:09d}", display_name=f"Kunde {n}", country_code="DE", verified_at=now)
        for n in range(customers)
    )
    conversations = []
    with schema_context(business.schema_name):
        for n, customer in enumerate(people):
            # An existing conversation with an open service window, as after a first message.
            result = services.message_send_customer(
                business=business, customer=customer, body=f"hello {n}", client_msg_id=f"warmup-{n}"
            )
            conversations.append(result.message.conversation_id)
        if agent_users and conversations:
            # Fails fast if agents cannot reply here (billing, window), before any load.
            services.message_send_agent(
                business=business,
                user=agent_users[0],
                conversation_id=conversations[0],
                body="warm-up reply",
                client_msg_id="warmup-agent",
            )
    return business, agent_users, people, conversations


def plan_for(target: str, data: dict[str, Any], port: int, args: argparse.Namespace) -> Plan:
    conversations = data["conversations"]
    if target == "parley":
        customers = [Client(cookie, conv) for cookie, conv in zip(data["customer_cookies"], conversations, strict=True)]
        agents = [
            Client(cookie, conversations[n % len(conversations)]) for n, cookie in enumerate(data["agent_cookies"])
        ]
    else:
        # The bench servers trust an identity cookie: they measure serving, not signing in.
        customers = [Client(f"bench_id=customer.{conv}", conv) for conv in conversations]
        agents = [
            Client(f"bench_id=agent.{n}", conversations[n % len(conversations)])
            for n in range(len(data["agent_cookies"]))
        ]
    return Plan(
        host=data["host"],
        port=port,
        customers=customers,
        agents=agents,
        rate=args.rate,
        reply_rate=args.reply_rate,
        duration=args.duration,
        drain=args.drain,
        drain_max=args.drain_max,
        connect_rate=args.connect_rate,
        list_sample=args.list_sample,
        generator_nice=args.generator_nice,
    )


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    target: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def pids(self) -> list[int]:
        import psutil

        try:
            parent = psutil.Process(self.process.pid)
            return [p.pid for p in parent.children(recursive=True)] or [parent.pid]
        except psutil.NoSuchProcess:
            return []


def start_server(target: str, database: str, args: argparse.Namespace) -> Server:
    port = free_port()
    log = ROOT / "test-artifacts" / f"inbox-load-{target}-{port}.log"
    log.parent.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        DATABASE_URL=database_url(database),
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or uuid.uuid4().hex * 2,
        PARLEY_CHANNEL_PREFIX=f"bench{uuid.uuid4().hex[:6]}",
        PARLEY_PORT=str(port),
    )
    if getattr(args, "stages", False) and target == "parley":
        env["PARLEY_STAGE_TRACE"] = str(stages_path(port))
    if getattr(args, "profile_cpu", False):
        env.update(cpu_profile.ENV)
    if not env.get("REDIS_URL"):
        raise SystemExit("inbox_load needs REDIS_URL (the production channel layer)")
    app = {
        "parley": "config.asgi:application",
        "limit": "bench.limit_server:app",
        "tutorial": "bench.tutorial_chat.asgi:application",
    }[target]
    server = args.server if target != "limit" else "uvicorn"
    command = [
        sys.executable,
        "-m",
        "config.serve",
        "--port",
        str(port),
        "--processes",
        str(args.processes),
        "--workers",
        "0",
        "--server",
        server,
        "--app",
        app,
        "--ws",
        getattr(args, "ws", "lean"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{target} server exited early; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    time.sleep(1.0)  # every process listening, not only the first
    return Server(target, process, port, log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()


class ResourceSampler(threading.Thread):
    """Samples the server processes' RSS and CPU once a second while the load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]
        self.stop = threading.Event()
        self.peak_rss = 0
        self.rss_samples: list[int] = []
        self.cpu_start = self._cpu()
        # The servers' event-loop threads: seconds on a core and waiting for one, summed (read
        # next to the wall clock: their shares are of the same window).
        self.loop_start = self._loop_schedule()
        self.wall_start = time.monotonic()
        self.cpu_seconds = 0.0
        self.wall = 0.0
        # The whole machine over the same window: on a shared 2-core machine the generator and
        # PostgreSQL compete with the server, and a neighbour's steal time makes a run slow
        # without any process here being busier (runs are compared by these lines).
        self.machine_start = psutil.cpu_times()
        self.postgres_start = postgres_cpu_seconds()
        self.machine_busy = 0.0  # fraction of all cores
        self.machine_steal = 0.0
        self.postgres_cpu = 0.0  # seconds
        self.loop_running = 0.0
        self.loop_waiting = 0.0

    def _cpu(self) -> float:
        total = 0.0
        for p in self.processes:
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except Exception:
                continue
        return total

    def _loop_schedule(self) -> tuple[float, float]:
        running = waiting = 0.0
        for p in self.processes:
            try:
                on_core, runnable = main_thread_schedule(p.pid)
            except OSError:
                continue
            running, waiting = running + on_core, waiting + runnable
        return running, waiting

    def _rss(self) -> int:
        total = 0
        for p in self.processes:
            try:
                total += p.memory_info().rss
            except Exception:
                continue
        return total

    def run(self) -> None:
        while not self.stop.wait(1.0):
            rss = self._rss()
            self.rss_samples.append(rss)
            self.peak_rss = max(self.peak_rss, rss)

    def finish(self) -> None:
        import psutil

        self.cpu_seconds = self._cpu() - self.cpu_start
        self.wall = time.monotonic() - self.wall_start
        running, waiting = self._loop_schedule()
        self.loop_running, self.loop_waiting = running - self.loop_start[0], waiting - self.loop_start[1]
        self.machine_busy, self.machine_steal = machine_shares(self.machine_start, psutil.cpu_times())
        self.postgres_cpu = postgres_cpu_seconds() - self.postgres_start
        self.stop.set()


# --- the generator (one or more processes, no Django) ------------------------------------------


def set_own_nice(nice: int) -> None:
    """This process's nice value set to `nice` (0: left alone). Lowering a priority needs no
    privilege, raising one does: refused, the process runs on as it was (the figures print the
    value it ran at)."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except PermissionError as refused:
            print(f"generator: nice {nice} refused ({refused}); running at {os.getpriority(os.PRIO_PROCESS, 0)}")


def generator_main(plan: Plan, share: int, shares: int, barrier: Any, results: Any) -> None:
    set_own_nice(plan.generator_nice)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results.put(asyncio.run(_generate(plan, share, shares, barrier)))


async def _generate(plan: Plan, share: int, shares: int, barrier: Any) -> dict[str, Any]:
    from bench.clients import ChatPage, InboxPage, Stats, new_prefix

    stats = Stats(since=time.time())
    base = f"ws://{plan.host}:{plan.port}"
    customers = [
        ChatPage(
            url=f"{base}/ws/chat/",
            host=plan.host,
            port=plan.port,
            cookie=c.cookie,
            stats=stats,
            prefix=new_prefix("c"),
            conversation_id=c.conversation_id,
        )
        for c in plan.customers[share::shares]
    ]
    agents = [
        InboxPage(
            url=f"{base}/ws/inbox/",
            host=plan.host,
            port=plan.port,
            cookie=a.cookie,
            stats=stats,
            prefix=new_prefix("a"),
            view=a.conversation_id,
            reads_list=index % plan.list_sample == 0,
        )
        for index, a in enumerate(plan.agents)
        if index % shares == share
    ]
    connect_started = time.perf_counter()
    connect_failures = 0
    pause = shares / plan.connect_rate if plan.connect_rate else 0
    for page in [*agents, *customers]:
        try:
            await page.socket.start()
        except Exception as error:
            connect_failures += 1
            stats.count_error(f"connect:{type(error).__name__}")
        if pause:
            await asyncio.sleep(pause)

    async def resumed(page: Any) -> None:
        try:
            await asyncio.wait_for(page.socket.resumed.wait(), 30)
        except TimeoutError:
            stats.count_error("resume_timeout")

    await asyncio.gather(*(resumed(page) for page in [*agents, *customers]))
    connect_seconds = time.perf_counter() - connect_started
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)

    # No collector passes in the generator while it measures: with ~100,000 live objects (pages,
    # their sockets, the samples) its full passes took 36–172 ms every ~2 s and found nothing to
    # free (the clients make no cyclic garbage), so each one delayed every frame it held and
    # showed up in every target's latency tail as if the server had stalled. Reference counting
    # still frees everything; the collector is back on for the drain.
    gc.collect()
    gc.freeze()
    gc.disable()

    # The measured window starts here, at the same moment in every generator process.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames0 = stats.frames
    lag: list[float] = []

    async def schedule(rate: float, pages: list[Any], act: str, phase: float) -> int:
        """`rate` actions a second, evenly spaced, round robin over pages. Returns how many."""
        if rate <= 0 or not pages:
            return 0
        interval = 1 / rate
        start = time.perf_counter() + phase * interval
        n = 0
        while True:
            due = start + n * interval
            if due - wall0 >= plan.duration:
                return n
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag.append(-delay)
            getattr(pages[n % len(pages)], act)()
            n += 1

    phase = share / shares
    offered, replies = await asyncio.gather(
        schedule(plan.rate / shares, customers, "type_and_send", phase),
        schedule(plan.reply_rate / shares, agents, "reply", phase),
    )
    load_wall = time.perf_counter() - wall0
    load_cpu = time.process_time() - cpu0
    load_frames = stats.frames - frames0
    gc.enable()

    # Drain: every send answered and every message at its customer. The rates count what was
    # answered by `drain` seconds after the load (and a second), as they always have; what was
    # lost is counted once answers stop coming (`drain_answers`), up to `drain_max` seconds.
    pages: list[Any] = [*customers, *agents]
    await drain_answers(pages, quiet=plan.drain, longest=plan.drain)
    await asyncio.sleep(min(1.0, plan.drain))
    counted_at = time.time()
    accepted_customers = sum(1 for cmid in stats.accepted if cmid.startswith("c"))
    accepted_replies = len(stats.accepted) - accepted_customers
    await drain_answers(pages, quiet=plan.drain, longest=plan.drain_max)
    unanswered = sum(len(p.pending) for p in pages)
    await asyncio.gather(*(p.socket.close() for p in pages), return_exceptions=True)
    lag.sort()
    return {
        "share": share,
        "offered": offered,
        "replies": replies,
        "load_wall": load_wall,
        # For the rates: when they were counted, and the sends accepted by then.
        "counted_at": counted_at,
        "accepted_customers": accepted_customers,
        "accepted_replies": accepted_replies,
        "load_cpu": load_cpu,
        "load_frames": load_frames,
        "connect_seconds": connect_seconds,
        "connect_failures": connect_failures,
        "schedule_lag_p99": lag[int(len(lag) * 0.99)] if lag else 0.0,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "late_sends": sum(1 for x in lag if x > 0.01),
        "unanswered": unanswered,
        "agents": len(agents),
        "list_readers": sum(1 for a in agents if a.reads_list),
        # Without the accept / view times kept only to pair them here (one per message sent).
        "stats": {k: v for k, v in stats.__dict__.items() if k not in ("accepted_at", "viewed_at")},
    }


async def drain_answers(pages: Sequence[Any], *, quiet: float, longest: float, poll: float = 0.2) -> None:
    """After the load: wait until no page has a send unanswered, for as long as answers keep
    coming — given up after `quiet` seconds without one, or `longest` seconds in all. A fixed
    wait cut off answers still on their way after an overload on a slow machine (issue 9,
    docs/performance.md, session 45: at 3x, 144-199 messages persisted but not yet at their
    customer when a 10 s drain ended, thousands of refused sends still being retried; 0 with
    40 s)."""
    started = last_answer = time.perf_counter()
    left = sum(len(page.pending) for page in pages)
    while left:
        now = time.perf_counter()
        if now - last_answer >= quiet or now - started >= longest:
            return
        await asyncio.sleep(poll)
        still = sum(len(page.pending) for page in pages)
        if still < left:
            last_answer = time.perf_counter()
        left = still


# --- results -----------------------------------------------------------------------------------


def quantile_ms(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted seconds, in milliseconds (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p50_, p95_, p99_ = (quantile_ms(values, q) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50_:7.1f}  p95 {p95_:7.1f}  p99 {p99_:7.1f}  max {values[-1] * 1000:7.1f} ms  (n={len(values)})"


def p50(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


@dataclass
class Result:
    target: str
    figures: dict[str, Any] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)


def persisted_rows(target: str, database: str, schema: str) -> list[tuple[str, float]]:
    """Every persisted message's client_msg_id and its time (seconds since the epoch), in the
    order the server stored them (by id)."""
    import psycopg

    table = {
        "parley": f'"{schema}".messaging_message',
        "limit": "limit_bench.message",
        "tutorial": "tutorial_bench.message",
    }[target]
    with psycopg.connect(database_url(database)) as conn:
        rows = conn.execute(f"SELECT client_msg_id, extract(epoch FROM created_at) FROM {table} ORDER BY id").fetchall()
    return [(r[0], float(r[1])) for r in rows]


def out_of_order(stored: list[str]) -> int:
    """How many stored messages came after a later message of the same sender: a client's
    client_msg_ids are `{prefix}-{seq}` with seq counting up as they were written, so a stored
    seq below one its sender already has stored is a message shown out of the order it was typed
    (a refused send retried after the next one was taken)."""
    newest: dict[str, int] = {}
    behind = 0
    for client_msg_id in stored:
        prefix, _, seq = client_msg_id.rpartition("-")
        if not prefix or not seq.isdigit():
            continue
        if int(seq) < newest.get(prefix, 0):
            behind += 1
        else:
            newest[prefix] = int(seq)
    return behind


def summarise(
    target: str, parts: list[dict[str, Any]], sampler: ResourceSampler, stored_rows: list[tuple[str, float]] | None
) -> Result:
    """The run's figures and its report. `stored_rows`: `persisted_rows`. The rates count what
    was accepted, and stored, by the generators' `counted_at`; the losses, everything."""
    stored = [cmid for cmid, _at in stored_rows] if stored_rows is not None else None
    rows = set(stored) if stored is not None else None
    counted_at = max(p["counted_at"] for p in parts)
    stored_by_then = {cmid for cmid, at in stored_rows if at <= counted_at} if stored_rows is not None else None
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part["stats"].items():
            if isinstance(value, dict):
                acc = merged.setdefault(key, {})
                for k, v in value.items():
                    acc[k] = acc.get(k, 0) + v if isinstance(v, int) and not isinstance(acc.get(k, 0), float) else v
            elif isinstance(value, (set, list)):
                merged.setdefault(key, type(value)())
                merged[key] = merged[key] | value if isinstance(value, set) else merged[key] + value
            else:
                merged[key] = merged.get(key, 0) + value
    wall = max(p["load_wall"] for p in parts)
    offered = sum(p["offered"] for p in parts)
    replies = sum(p["replies"] for p in parts)
    sent: dict[str, float] = merged["sent"]
    accepted: set[str] = merged["accepted"]
    customer_sent = {c for c in sent if c.startswith("c")}
    ours = set(sent)
    persisted = (rows & ours) if rows is not None else None
    lost_accepted = len(accepted - rows) if rows is not None else None
    # Every persisted message should reach the customer's page (their own or the agent's reply).
    undelivered = len(persisted - merged["received_by_customer"]) if persisted is not None else None
    reordered = out_of_order([c for c in stored if c in ours]) if stored is not None else None
    gen_cpu = sum(p["load_cpu"] for p in parts)
    result = Result(target)
    f = result.figures
    f.update(
        offered=offered / wall,
        accepted=sum(p["accepted_customers"] for p in parts) / wall,
        persisted=(len(stored_by_then & customer_sent) / wall) if stored_by_then is not None else None,
        deliveries=sum(p["load_frames"] for p in parts) / wall,
        c2a_p50=p50(merged["customer_to_agent"]),
        c2a_p99=p99(merged["customer_to_agent"]),
        accept_p99=p99(merged["accept_latency"]),
        attempt_accept_p99=p99(merged["attempt_accept_latency"]),
        a2c_p99=p99(merged["agent_to_customer"]),
        stale_p99=p99(merged["list_first_staleness"]),
        stale_every_p99=p99(merged["list_staleness"]),
        lost=lost_accepted,
        undelivered=undelivered,
        reordered=reordered,
        refusals=merged["refusals"],
        refusal_answer_p99=p99(merged["refusal_answer"]),
        server_cpu=sampler.cpu_seconds / sampler.wall if sampler.wall else 0.0,
        server_rss=sampler.peak_rss,
        unanswered=sum(p["unanswered"] for p in parts),
    )
    out = result.text
    out.append(f"== {target}: {wall:.1f} s of load, {len(parts)} generator process(es)")
    out.append(
        f"customer messages/s: offered {offered / wall:7.1f}   accepted {f['accepted']:7.1f}   "
        f"persisted {f['persisted'] if f['persisted'] is None else format(f['persisted'], '7.1f')}"
    )
    out.append(
        f"agent replies/s:     offered {replies / wall:7.1f}   "
        f"accepted {sum(p['accepted_replies'] for p in parts) / wall:7.1f}"
    )
    out.append(f"deliveries/s:        {f['deliveries']:9.1f} frames received by all clients")
    out.append(f"customer → viewing agent: {percentiles(merged['customer_to_agent'])}")
    out.append(f"  its accepted → the viewer: {percentiles(merged['accepted_to_viewer'])}")
    out.append(f"agent → customer:         {percentiles(merged['agent_to_customer'])}")
    out.append(f"list staleness (first):   {percentiles(merged['list_first_staleness'])}")
    out.append(f"list staleness (every):   {percentiles(merged['list_staleness'])}")
    readers, agent_count = sum(p["list_readers"] for p in parts), sum(p["agents"] for p in parts)
    if readers < agent_count:
        out.append(
            f"  (measured on the lists of {readers} of {agent_count} agents, --list-sample; "
            f"{merged['frames_unread']} list frames of the others counted unread)"
        )
    out.append(f"send → accepted:          {percentiles(merged['accept_latency'])}")
    # After refusals the page holds a send back (retry_after, doubling): the accepted attempt's
    # own wait is what the server kept it for.
    out.append(f"  its accepted attempt → accepted: {percentiles(merged['attempt_accept_latency'])}")
    refused_final = merged["refused_final"]
    out.append(
        f"refusals: {merged['refusals']} retryable {merged['refusal_codes'] or ''} "
        f"(first send → refusal {percentiles(merged['refusal_latency'])}); final refusals {len(refused_final)}"
    )
    out.append(f"this attempt → its refusal:   {percentiles(merged['refusal_answer'])}")
    out.append(
        f"lost: sent {len(sent)}  accepted {len(accepted)}  rows {len(persisted) if persisted is not None else 'n/a'}  "
        f"accepted-but-not-persisted {lost_accepted}  persisted-but-not-received-by-customer {undelivered}  "
        f"unanswered at end {sum(p['unanswered'] for p in parts)}  stored out of the order written {reordered}"
    )
    if merged["errors"]:
        out.append(f"other errors: {merged['errors']}")
    out.append(
        f"server: {sampler.cpu_seconds / max(sampler.wall, 1e-9) * 100:5.0f}% CPU (of one core)   "
        f"RSS peak {sampler.peak_rss / 2**20:6.0f} MiB over {len(sampler.processes)} process(es)"
    )
    loop_wall = max(sampler.wall * len(sampler.processes), 1e-9)
    out.append(
        f"server loops: on a core {sampler.loop_running / loop_wall * 100:4.1f}%   waiting for a core "
        f"{sampler.loop_waiting / loop_wall * 100:4.1f}%   idle "
        f"{max(0.0, 1 - (sampler.loop_running + sampler.loop_waiting) / loop_wall) * 100:4.1f}% "
        "(the processes' event-loop threads, of the window)"
    )
    out.append(
        f"machine: {sampler.machine_busy * 100:5.0f}% busy of {os.cpu_count()} cores   "
        f"steal {sampler.machine_steal * 100:.1f}%   PostgreSQL {sampler.postgres_cpu / max(sampler.wall, 1e-9) * 100:.0f}% CPU (of one core, all its processes)"
    )
    warning = steal_warning(sampler.machine_steal)
    if warning is not None:
        out.append(warning)
    out.append(
        f"generator: {gen_cpu / wall * 100:5.0f}% CPU (of one core, all generator processes)   "
        f"schedule lag p99 {max(p['schedule_lag_p99'] for p in parts) * 1000:.1f} ms   "
        f"reconnects {merged['reconnects']}   acks sent {merged['acks_sent']}   "
        f"connect {max(p['connect_seconds'] for p in parts):.1f} s   "
        f"nice {max(p['nice'] for p in parts)}"
    )
    return result


def run_target(target: str, data: dict[str, Any], database: str, args: argparse.Namespace) -> Result:
    server = None
    if args.url:
        from urllib.parse import urlsplit

        port = urlsplit(args.url).port or 80
    else:
        if target == "limit":
            from bench import limit_server  # type: ignore[attr-defined,unused-ignore]

            limit_server.prepare_database(database_url(database), data["conversations"])
        if target == "tutorial":
            from bench.tutorial_chat import consumers as tutorial

            tutorial.prepare_database(database_url(database))
        if args.pg_log:
            pg_statements.statement_log(database_url(database), database, on=True)
        server = start_server(target, database, args)
        port = server.port
    plan = plan_for(target, data, port, args)
    shares = args.generator_processes
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(shares + 1)
    results = context.Queue()
    workers = [
        context.Process(target=generator_main, args=(plan, share, shares, barrier, results)) for share in range(shares)
    ]
    for worker in workers:
        worker.start()
    profiler = None
    cpu_profiler: subprocess.Popen[bytes] | None = None
    profiled_pids: list[int] = []
    statement_window = pg_statements.LogWindow(Path(args.pg_log)) if args.pg_log and server is not None else None
    waits: pg_statements.WaitSampler | None = None
    scans = pg_statements.TableScans(database_url(database)) if args.pg_scans else None
    try:
        barrier.wait(timeout=600)
        sampler = ResourceSampler(server.pids() if server else [])
        sampler.start()
        if statement_window is not None:
            statement_window.start()
        if args.pg_waits:
            waits = pg_statements.WaitSampler(database_url(database), database)
            waits.start()
        if scans is not None:
            scans.start()
        if (args.profile or args.profile_gil) and server is not None:
            profiler = start_profile(server, target, args)
        if args.profile_cpu and server is not None:
            first, *others = server.pids()
            cpu_profiler = cpu_profile.start(first, max(1, int(args.duration) - 1), cpu_profile_raw(target, args))
            # Every Python process of the server wrote a jitdump, its supervisor too: all removed.
            profiled_pids = [first, *others, server.process.pid]
        time.sleep(plan.duration)
        sampler.finish()
        if statement_window is not None:
            statement_window.finish()
        if waits is not None:
            waits.stop()
        if scans is not None:
            scans.finish()
        parts = [results.get(timeout=plan.drain_max + 120) for _ in workers]
    finally:
        if waits is not None:
            waits.stop()  # also when the load failed: the sampler's connection is closed
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
        if profiler is not None:
            profiler.wait(120)
        if cpu_profiler is not None:
            cpu_profiler.wait(120)
        if server is not None:
            stop_server(server)
        if args.pg_log and server is not None:
            pg_statements.statement_log(database_url(database), database, on=False)
    result = summarise(target, parts, sampler, persisted_rows(target, database, data["schema"]))
    if statement_window is not None:
        result.text.extend(
            pg_statements.report(
                pg_statements.parse(statement_window.text()),
                seconds=sampler.wall,
                messages=result.figures["persisted"] or 0.0,
            )
        )
    if waits is not None:
        result.text.extend(waits.report())
    if scans is not None:
        result.text.extend(scans.report())
    if profiler is not None:
        result.text.extend(top_frames(profile_path(target, args)))
    if cpu_profiler is not None:
        out = cpu_profile_path(target, args)
        failed = cpu_profile.finish(cpu_profile_raw(target, args), out, profiled_pids)
        result.text.extend([f"on-CPU profile: {failed}"] if failed else top_frames(out, label="on-CPU profile (perf)"))
    if args.stages and target == "parley" and server is not None:
        result.text.extend(stage_table(stages_path(server.port)))
    return result


def stages_path(port: int) -> Path:
    return ROOT / "test-artifacts" / f"stages-{port}"


def stage_table(path: Path) -> list[str]:
    """The server processes' stage traces (messaging.stages) → the table of where sends waited."""
    traces: list[dict[str, float]] = []
    passes: dict[str, list[dict[str, float]]] = {}  # collector passes by process
    for part in sorted(path.parent.glob(f"{path.name}.*.jsonl")):
        for line in part.read_text().splitlines():
            if line:
                trace = json.loads(line)
                if "gc" in trace:
                    passes.setdefault(part.name, []).append(trace)
                else:
                    traces.append(trace)
        part.unlink()
    if not traces:
        return [f"stages: no traces written ({path}.*.jsonl)"]
    return stage_report(traces) + collector_report(traces, passes)


GENERATIONS = ("young", "middle", "full")
# Collector passes at least this long are listed one by one (when, wall and CPU time).
LONG_PASS_SECONDS = 0.02
LONG_PASSES_SHOWN = 12


def collector_report(traces: list[dict[str, float]], passes: dict[str, list[dict[str, float]]]) -> list[str]:
    """The garbage collector's passes while sends were handled (from the first send's arrival to
    the last answer), per server process: passes a second by generation, CPU milliseconds a
    second, and the longest pass (it stopped that process's event loop)."""
    arrived = [t["arrived"] for t in traces if t.get("arrived") is not None]
    answered = [t.get("answered") or t.get("refused") for t in traces]
    ends = [end for end in answered if end is not None]
    if not arrived or not ends or not passes:
        return []
    start, end = min(arrived), max(ends)
    seconds = max(end - start, 1e-9)
    lines = [
        f"  collector, per server process over {seconds:.1f} s of sends: passes/s (young, middle, full) | CPU ms/s | longest ms"
    ]
    for name in sorted(passes):
        during = [p for p in passes[name] if start <= p["at"] <= end]
        counts = [sum(1 for p in during if p["gc"] == generation) / seconds for generation in range(3)]
        cpu = sum(p["cpu"] for p in during) * 1000 / seconds
        longest = max(during, key=lambda p: p["wall"], default=None)
        worst = f"{longest['wall'] * 1000:.1f} ({GENERATIONS[int(longest['gc'])]})" if longest else "none"
        lines.append(
            f"    {name.split('.')[-2]}: {counts[0]:5.1f} {counts[1]:5.2f} {counts[2]:5.2f} | {cpu:6.1f} | {worst}"
        )
        # When the long passes came, and how much of each was the collector's own CPU (the rest
        # of its wall time, its process waiting for a core).
        long = [p for p in during if p["wall"] >= LONG_PASS_SECONDS]
        if long:
            shown = ", ".join(
                f"+{p['at'] - start:.1f} s {p['wall'] * 1000:.0f}/{p['cpu'] * 1000:.0f} {GENERATIONS[int(p['gc'])]}"
                for p in long[:LONG_PASSES_SHOWN]
            )
            more = f" (+{len(long) - LONG_PASSES_SHOWN} more)" if len(long) > LONG_PASSES_SHOWN else ""
            lines.append(
                f"      passes ≥ {LONG_PASS_SECONDS * 1000:.0f} ms (since the first send, wall/CPU ms): {shown}{more}"
            )
    return lines


def stage_report(traces: list[dict[str, float]]) -> list[str]:
    """Each stage's time since the one before (ms, p50 / p90 / p99), the whole (of sends that
    were written), and the mean group size."""
    from messaging.stages import STAGES

    lines = [f"stages (server side, {len(traces)} sends): ms since the stage before, p50 / p90 / p99"]

    def since(trace: dict[str, float], before: str, stage: str) -> float | None:
        # A send's rights are read while it is queued (consumers.send_while_rights_read,
        # `overlapped`): its `rights` is when the read came back, and its `queued` counts from
        # its worker.
        if before == "rights" and trace.get("overlapped"):
            before = "worker"
        if trace.get(before) is None or trace.get(stage) is None:
            return None
        return trace[stage] - trace[before]

    for before, stage in [*itertools.pairwise(STAGES), ("arrived", "answered")]:
        name = "whole" if (before, stage) == ("arrived", "answered") else stage
        # The whole of sends that were written: a refused send's answer is its refusal.
        counted = [t for t in traces if "published" in t] if name == "whole" else traces
        spans = sorted(span for t in counted if (span := since(t, before, stage)) is not None)
        if not spans:
            lines.append(f"  {name:>10}: none")
            continue
        p50_, p90_, p99_ = (quantile_ms(spans, q) for q in (0.5, 0.9, 0.99))
        lines.append(f"  {name:>10}: {p50_:8.1f} {p90_:8.1f} {p99_:8.1f}   (n={len(spans)})")
    sizes = [t["size"] for t in traces if "size" in t]
    if sizes:
        lines.append(f"  groups: {sum(sizes) / len(sizes):.1f} sends on average (as each send saw its own)")
    refusals = sorted(t["refused"] - t["arrived"] for t in traces if "refused" in t)
    if refusals:
        p50_, p90_, p99_ = (quantile_ms(refusals, q) for q in (0.5, 0.9, 0.99))
        lines.append(
            f"  refused on arrival: {p50_:6.1f} {p90_:8.1f} {p99_:8.1f}   (n={len(refusals)}: frame taken → error sent)"
        )
    return lines + stage_windows(traces)


STAGE_WINDOW = 10.0  # seconds


def stage_windows(traces: list[dict[str, float]], window: float = STAGE_WINDOW) -> list[str]:
    """The written sends' `taken`, `written` and whole (ms, p50 / p99) by window of their arrival:
    whether the server got slower as the run went on (its tables grew and bloated: issue 9's 60 s
    runs) or was slow throughout."""
    written = [t for t in traces if t.get("arrived") is not None and "published" in t]
    if not written:
        return []
    start = min(t["arrived"] for t in written)
    by_window: dict[int, list[dict[str, float]]] = {}
    for trace in written:
        by_window.setdefault(int((trace["arrived"] - start) // window), []).append(trace)
    lines = [f"  by {window:g} s window of arrival, p50 / p99 ms: taken | written | whole"]
    for index in sorted(by_window):
        spans = {
            name: sorted(t[stage] - t[before] for t in by_window[index] if before in t and stage in t)
            for name, before, stage in (
                ("taken", "queued", "taken"),
                ("written", "tokens", "written"),
                ("whole", "arrived", "answered"),
            )
        }
        cells = " | ".join(
            f"{quantile_ms(values, 0.5):6.1f} {quantile_ms(values, 0.99):6.1f}" if values else "     –      –"
            for values in spans.values()
        )
        lines.append(f"    {index * window:4.0f} s: {cells}   (n={len(by_window[index])})")
    return lines


def start_profile(server: Server, target: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy on the first server process for the load window (needs ptrace: run as root). With
    --profile-gil only the thread holding the GIL is sampled: where the process's Python time
    goes, including a thread that holds the GIL while off the CPU (a system call that wakes
    another process, which the scheduler then runs in its place: issue 9's libpq flush)."""
    out = profile_path(target, args)
    pid = server.pids()[0]
    spy = str(Path(sys.executable).parent / "py-spy")
    seconds = max(1, int(args.duration) - 1)
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            *(["--gil"] if args.profile_gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_path(target: str, args: argparse.Namespace) -> Path:
    return ROOT / "test-artifacts" / f"profile-{target}-{args.rate:g}{'-gil' if args.profile_gil else ''}.txt"


def cpu_profile_raw(target: str, args: argparse.Namespace) -> Path:
    return ROOT / "test-artifacts" / f"perf-{target}-{args.rate:g}.data"


def cpu_profile_path(target: str, args: argparse.Namespace) -> Path:
    return ROOT / "test-artifacts" / f"profile-{target}-{args.rate:g}-cpu.txt"


def top_frames(path: Path, count: int = 15, label: str = "profile") -> list[str]:
    """Collapsed stacks (py-spy's, or perf's through bench/cpu_profile.py) → the frames most
    samples were in (inclusive) and on top (self)."""
    if not path.exists():
        return [f"profile: {path} was not written (py-spy needs ptrace rights)"]
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    if not total:
        return ["profile: no samples"]
    out = [f"{label} ({total} samples, {path}): top frames by share of samples, inclusive"]
    skip = ("<module>", "run (", "_run_once", "run_forever", "run_until_complete", "main (")
    ranked = sorted(((n, f) for f, n in inclusive.items() if not f.startswith(skip)), reverse=True)
    out += [f"  {n / total * 100:5.1f}%  {f}" for n, f in ranked[:count]]
    out.append("  … and on top of the stack (self):")
    out += [
        f"  {n / total * 100:5.1f}%  {f}" for n, f in sorted(((n, f) for f, n in own.items()), reverse=True)[:count]
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, default=100.0, help="customer messages per second, all customers together"
    )
    parser.add_argument(
        "--reply-rate",
        type=float,
        default=None,
        help="agent replies per second (default: rate / 10, at most what the agents' send limit lets through)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="seconds to wait for outstanding answers afterwards, counted from the last answer that came in",
    )
    parser.add_argument(
        "--drain-max", type=float, default=120.0, help="the longest wait for outstanding answers in all"
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn", help="ASGI server for Parley")
    parser.add_argument("--generator-processes", type=int, default=1)
    parser.add_argument(
        "--generator-nice",
        type=int,
        default=0,
        help="the generator processes' nice value (e.g. -10: the kernel runs them before the servers, "
        "so their own lag stays out of the figures; below 0 needs root)",
    )
    parser.add_argument("--connect-rate", type=float, default=200.0, help="new websockets per second while connecting")
    parser.add_argument(
        "--list-sample",
        type=int,
        default=5,
        help="every Nth agent reads its list frames and measures list staleness; the others count "
        "them unread (1: every agent reads them)",
    )
    parser.add_argument("--compare", action="store_true", help="also run the limit server and the tutorial chat")
    parser.add_argument("--targets", default="", help="comma-separated subset of parley,limit,tutorial")
    parser.add_argument("--extra-businesses", type=int, default=0, help="provision this many other businesses first")
    parser.add_argument(
        "--past-customers",
        type=int,
        default=0,
        help="the business served this many other customers before (a resolved conversation each)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the first server process (test-artifacts/)")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="Parley's servers time each send's stages (messaging/stages.py); prints where sends waited",
    )
    parser.add_argument(
        "--profile-cpu",
        action="store_true",
        help="perf's on-CPU samples of the first server process, with Python's frames (bench/cpu_profile.py: "
        "time on a core only, where py-spy counts a thread off its core too)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="as --profile, sampling only the thread that holds the GIL (py-spy --gil)",
    )
    parser.add_argument("--url", default="", help="target a running server (ws://127.0.0.1:PORT) instead")
    parser.add_argument("--database", default="", help="with --url: the database the running server uses")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--rates",
        default="",
        help="comma-separated customer rates to run one after the other on the same set-up (each target "
        "restarted per rate); ends with a table and each target's highest rate at p99 ≤ --p99-goal",
    )
    parser.add_argument("--p99-goal", type=float, default=100.0, help="ms, customer → viewing agent (with --rates)")
    parser.add_argument(
        "--pg-waits",
        action="store_true",
        help="sample what the bench database's active PostgreSQL sessions wait on during the load "
        "(pg_stat_activity every 5 ms: running, a lock, the WAL's flush, the client's next statement)",
    )
    parser.add_argument(
        "--pg-scans",
        action="store_true",
        help="how the bench database's tables were read during the load: sequential scans a second and "
        "the rows they read, index scans a second (pg_stat_user_tables before and after)",
    )
    parser.add_argument(
        "--pg-log",
        help="PostgreSQL's log file on this machine: log every statement of the bench database during the "
        "load and print where PostgreSQL's time went, statement by statement (bench/pg_statements.py; "
        "the logging costs PostgreSQL CPU: not for latency figures)",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()] if args.rates else [args.rate]
    fixed_reply_rate = args.reply_rate
    targets = [t for t in (args.targets.split(",") if args.targets else ["parley"]) if t]
    if args.compare:
        targets = list(TARGETS)
    if any(t not in TARGETS for t in targets):
        parser.error(f"targets are {', '.join(TARGETS)}")
    if args.url and args.compare:
        parser.error("--compare starts its own servers")
    if args.url and not args.database:
        parser.error("--url needs --database: a fresh database the running server uses")
    if args.profile_cpu and args.url:
        parser.error("--profile-cpu starts the servers it profiles: not with --url")
    if args.profile_cpu and (reason := cpu_profile.unavailable()):
        parser.error(f"--profile-cpu: {reason}")
    if args.pg_log and args.url:
        parser.error("--pg-log logs the bench's own database: not with --url")
    if args.pg_log and not os.access(args.pg_log, os.R_OK):
        parser.error(f"--pg-log: cannot read {args.pg_log} (PostgreSQL's log file on this machine)")
    if args.list_sample < 1:
        parser.error("--list-sample is a whole number from 1 (every agent reads its list)")

    # Sessions are signed: the set-up and the servers share one key (a fresh one per run).
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["DEBUG"] = "0"
    database = args.database or create_database()
    try:
        data = setup_data(database, args)
        every: list[Result] = []
        for rate in rates:
            args.rate = rate
            args.reply_rate = (
                fixed_reply_rate if fixed_reply_rate is not None else default_reply_rate(rate, args.agents)
            )
            print(
                f"load: {args.customers} customers, {args.agents} agents, {args.rate:g} messages/s + "
                f"{args.reply_rate:g} replies/s for {args.duration:g} s; {args.processes} server process(es) "
                f"({args.server}); REDIS_URL={os.environ.get('REDIS_URL', '')}; load average "
                + " ".join(f"{x:.2f}" for x in os.getloadavg()),
                flush=True,
            )
            for note in send_limit_notes(args.rate, args.customers, args.reply_rate, args.agents):
                print(note, flush=True)
            results = []
            for target in targets:
                result = run_target(target, data, database, args)
                result.figures["rate"] = rate
                print("\n".join(result.text), flush=True)
                results.append(result)
            if len(results) > 1:
                print_ratios(results)
            print("figures: " + json.dumps({r.target: r.figures for r in results}, default=str), flush=True)
            every += results
        if len(rates) > 1:
            print_rate_table(every, args.p99_goal / 1000)
    finally:
        if not args.keep and not args.database:
            drop_database(database)
        elif args.keep:
            print(f"kept the bench database {database}")


def setup_data(database: str, args: argparse.Namespace) -> dict[str, Any]:
    # Django set-up runs in a child process so the parent stays light (and forks nothing heavy).
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_setup_child,
        args=(
            database,
            args.customers,
            args.agents,
            args.extra_businesses,
            not getattr(args, "database", ""),
            getattr(args, "past_customers", 0),
            queue,
        ),
    )
    child.start()
    data = queue.get(timeout=3600)
    child.join()
    if isinstance(data, str):
        raise SystemExit(f"set-up failed:\n{data}")
    return data


def _setup_child(database: str, customers: int, agents: int, extra: int, migrate: bool, past: int, queue: Any) -> None:
    import traceback

    try:
        queue.put(
            setup_business(
                database,
                customers=customers,
                agents=agents,
                extra_businesses=extra,
                migrate=migrate,
                past_customers=past,
            )
        )
    except Exception:
        queue.put(traceback.format_exc())


def print_rate_table(results: list[Result], goal: float) -> None:
    """One line per rate and target, then each target's highest rate whose p99 customer → viewing
    agent met `goal` (seconds) with nothing lost, and Parley's as a ratio of the others'."""
    print(f"\n== by rate (p99 goal {goal * 1000:g} ms)")
    print(
        f"{'target':8} {'offered':>8} {'persisted':>9} {'c→a p99':>9} {'stale p99':>9} {'(every)':>8} {'refused':>8} "
        f"{'no p99':>7} {'lost':>5} {'undeliv':>7} {'unansw':>6} {'CPU':>5} {'CPU ms/msg':>10} {'RSS MiB':>8}"
    )

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.0f}"

    for r in results:
        f = r.figures
        cpu_per = f["server_cpu"] / f["persisted"] * 1000 if f.get("persisted") else None
        print(
            f"{r.target:8} {f['offered']:8.1f} {f['persisted'] or 0:9.1f} {ms(f['c2a_p99']):>9} "
            f"{ms(f['stale_p99']):>9} {ms(f['stale_every_p99']):>8} {f['refusals']:8d} {ms(f['refusal_answer_p99']):>7} {f['lost'] or 0:5d} "
            f"{f['undelivered'] or 0:7d} {f['unanswered']:6d} {f['server_cpu'] * 100:4.0f}% "
            f"{'n/a' if cpu_per is None else format(cpu_per, '.2f'):>10} {f['server_rss'] / 2**20:8.0f}"
        )
    for line in goal_summary(results, goal):
        print(line)


def default_reply_rate(rate: float, agents: int) -> float:
    """A tenth of the customers' rate, but no more than the agents' send limit lets through
    (SEND_RATE each): above 1,000 msgs/s with 50 agents a tenth was over it, and the replies held
    by the limit at the end counted as unanswered on every server (session 27)."""
    from messaging.send_limits import SEND_RATE

    return min(rate / 10, agents * SEND_RATE)


def send_limit_notes(rate: float, customers: int, reply_rate: float, agents: int) -> list[str]:
    """Every author may send SEND_RATE messages a second (bursts of SEND_BURST) into a business,
    on Parley and on the limit server alike (messaging/send_limits.py): customers or agents who
    send faster are refused `rate_limited` past their burst whatever the server's load, and
    their sends still held at the end count as unanswered, which disqualifies a rate from the
    p99 goal. Said with the load, so those figures are not read as the server's."""
    from messaging.send_limits import SEND_BURST, SEND_RATE

    notes = []
    for who, total, authors in (("customer", rate, customers), ("agent", reply_rate, agents)):
        each = total / authors if authors else 0.0
        if each > SEND_RATE:
            notes.append(
                f"note: {each:.3g} messages/s per {who} is over the send limit ({SEND_RATE:g}/s, bursts of "
                f"{SEND_BURST}): past the burst its refusals are the limit's, not the server's load"
                + (" (more --customers for a load test)" if who == "customer" else " (--reply-rate to stay under)")
            )
    return notes


def _met(figures: dict[str, Any], goal: float) -> bool:
    p99 = figures["c2a_p99"]
    return p99 is not None and p99 <= goal and not figures["lost"] and not figures["unanswered"]


def goal_summary(results: list[Result], goal: float) -> list[str]:
    """Each target's highest persisted rate whose p99 customer → viewing agent met `goal`
    (seconds) with nothing lost, and Parley's as a ratio of the others'. A target that met the
    goal at its highest rate tested has its limit above that rate: its figure is a lower bound,
    and a ratio against it an upper bound (or a lower one, when it is Parley's), said so rather
    than printed as if measured."""
    best: dict[str, float] = {}
    highest: dict[str, Result] = {}
    for r in results:
        f = r.figures
        if _met(f, goal) and f["persisted"]:
            best[r.target] = max(best.get(r.target, 0.0), f["persisted"])
        if r.target not in highest or f["offered"] > highest[r.target].figures["offered"]:
            highest[r.target] = r
    above = {target for target, r in highest.items() if _met(r.figures, goal) and r.target in best}
    lines = []
    for target in highest:
        line = f"{target}: highest persisted msgs/s at p99 ≤ {goal * 1000:g} ms: {best.get(target, 0.0):.1f}"
        if target in above:
            line += " (met at the highest rate tested: its limit is higher)"
        lines.append(line)
    if "parley" in best:
        for target, rate in best.items():
            if target == "parley" or not rate:
                continue
            ratio = f"{best['parley'] / rate:.2f}×"
            if target in above and "parley" in above:
                lines.append(f"parley vs {target} at the p99 goal: unknown (both met it at their highest rate tested)")
            elif target in above:
                lines.append(
                    f"parley vs {target} at the p99 goal: at most {ratio} ({target} met it at its highest rate)"
                )
            elif "parley" in above:
                lines.append(
                    f"parley vs {target} at the p99 goal: at least {ratio} (parley met it at its highest rate)"
                )
            else:
                lines.append(f"parley vs {target} at the p99 goal: {ratio}")
    return lines


def print_ratios(results: list[Result]) -> None:
    parley = next((r for r in results if r.target == "parley"), None)
    if parley is None:
        return
    print("\n== Parley as a ratio of each (same run, same load)")
    for other in results:
        if other is parley:
            continue
        cells = []
        for key, label in (
            ("persisted", "persisted/s"),
            ("accepted", "accepted/s"),
            ("deliveries", "deliveries/s"),
            ("c2a_p99", "p99 customer→agent"),
            ("server_cpu", "server CPU"),
            ("server_rss", "server RSS"),
        ):
            a, b = parley.figures.get(key), other.figures.get(key)
            cells.append(f"{label} {a / b:.2f}×" if a is not None and b else f"{label} n/a")
        print(f"vs {other.target:9}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
