"""Reliability check 8: a soak. 2,000 websockets exchange messages against one production-style
server process (uvicorn, as `python -m config.serve` runs it) for SOAK_MINUTES (default 10):
customers send on /ws/chat/ as chat.js does, agents with a conversation open reply on
/ws/inbox/ as inbox.js does (bench/clients.py: resume, acks, typing, pings, retry after
`retry_after`). Passing: the server's memory (RSS) grows less than 10% from the end of the
warm-up to the end, and its PostgreSQL connections stay within its pool (no leak), during the
run and after every client has gone.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tenants.utils import tenant_context

from accounts import services as accounts_services
from accounts.models import Customer, User
from bench.clients import ChatPage, InboxPage, Stats, new_prefix
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging import services
from messaging.models import Message
from reliability.report import long_run, record
from tenancy.models import Business
from tests.conftest import ROOT, World, free_port
from tests.conftest import test_database_url as server_database_url  # not collected as a test
from tests.reliability.private import wait_for_port
from tests.reliability.test_isolation_probe import session_key

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
SOCKETS = 2000
AGENT_SOCKETS = 20
CUSTOMER_SEND_EVERY = 300.0  # seconds, per customer (about 6.6 messages/s from 1,980 customers)
AGENT_REPLY_EVERY = 10.0  # seconds, per agent socket (2 replies/s)
SAMPLE_EVERY = 5.0
OPEN_AT_ONCE = 50
DRAIN_SECONDS = 60.0
DELIVERY_SECONDS = 5.0  # after the last acceptance, for its live event to reach the other side
RSS_GROWTH_LIMIT = 0.10


def start_uvicorn(port: int, secret_key: str) -> subprocess.Popen[bytes]:
    """As production runs it: DEBUG off (no query log growing in memory), its own SECRET_KEY."""
    log_dir = ROOT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    env = dict(os.environ, DATABASE_URL=server_database_url(), PARLEY_PORT=str(port), DEBUG="0", SECRET_KEY=secret_key)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=(log_dir / f"soak-{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, timeout=60)
    return process


def server_connections(database: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
        )
        return int(cursor.fetchone()[0])


def make_customers(count: int) -> list[tuple[Customer, str]]:
    base = random.randrange(10**6, 9 * 10**6)
    customers = Customer.objects.bulk_create(
        [
            Customer(
                phone_number=f"+4915{base + i:08d}",
                display_name=f"Soak {i}",
                country_code="DE",
                verified_at=timezone.now(),
            )
            for i in range(count)
        ]
    )
    store = SessionStore()
    expires = timezone.now() + timedelta(days=1)
    rows = [
        Session(
            session_key=get_random_string(32, VALID_KEY_CHARS),
            session_data=store.encode({CUSTOMER_SESSION_KEY: customer.pk}),
            expire_date=expires,
        )
        for customer in customers
    ]
    Session.objects.bulk_create(rows)
    return [(customer, row.session_key) for customer, row in zip(customers, rows, strict=True)]


def make_agents(business: Business, owner: User, count: int) -> list[str]:
    """`count` agents, each with its own seat (as an owner adds them) and its own session: the
    per-agent send limit is per person, so agent sockets must not share one agent."""
    tag = secrets.token_hex(4)
    cookies = []
    for i in range(count):
        seat = accounts_services.seat_add(
            business=business, actor=owner, email=f"soak-agent-{tag}-{i}@alpha.test", role="agent"
        )
        cookies.append(session_key(user=seat.user))
    return cookies


@dataclass
class Run:
    customers: Stats
    agents: Stats
    opening: float  # seconds until every socket was open
    open_at_start: int  # sockets open once opening ended
    open_at_end: int  # sockets open when the exchange ended
    viewed_prefixes: list[str]  # client_msg_id prefixes of the customers whose conversation an agent has open


async def drive(
    *, port: int, host: str, chats: list[tuple[str, int]], agent_cookies: list[str], views: list[int], seconds: float
) -> Run:
    """Open every socket (spread over a few seconds, as page loads are), exchange messages for
    `seconds`, let the last sends be answered, close everything."""
    customer_stats, agent_stats = Stats(), Stats()
    cookie_name = settings.SESSION_COOKIE_NAME
    pages: list[Any] = []
    opened = time.monotonic()
    for agent_cookie, view in zip(agent_cookies, views, strict=True):
        inbox = InboxPage(
            url=f"ws://{host}:{port}/ws/inbox/",
            host=host,
            port=port,
            cookie=f"{cookie_name}={agent_cookie}",
            stats=agent_stats,
            prefix=new_prefix("a"),
            view=view,
        )
        await inbox.socket.start()
        pages.append(inbox)
    chat_pages = [
        ChatPage(
            url=f"ws://{host}:{port}/ws/chat/",
            host=host,
            port=port,
            cookie=f"{cookie_name}={cookie}",
            stats=customer_stats,
            prefix=new_prefix("c"),
            conversation_id=conversation_id,
        )
        for cookie, conversation_id in chats
    ]
    # Page loads come in waves of OPEN_AT_ONCE, each wave opening together.
    for first in range(0, len(chat_pages), OPEN_AT_ONCE):
        await asyncio.gather(*(page.socket.start() for page in chat_pages[first : first + OPEN_AT_ONCE]))
    opening = time.monotonic() - opened
    open_at_start = sum(page.socket.open for page in [*pages, *chat_pages])
    end = time.monotonic() + seconds
    # Every customer sends every CUSTOMER_SEND_EVERY s, at its own random phase; agents reply.
    next_send = [time.monotonic() + random.uniform(0, CUSTOMER_SEND_EVERY) for _ in chat_pages]
    next_reply = [time.monotonic() + random.uniform(0, AGENT_REPLY_EVERY) for _ in pages]
    while time.monotonic() < end:
        now = time.monotonic()
        for i, chat in enumerate(chat_pages):
            if now >= next_send[i]:
                chat.type_and_send()
                next_send[i] = now + CUSTOMER_SEND_EVERY
        for i, agent in enumerate(pages):
            if now >= next_reply[i]:
                agent.reply()
                next_reply[i] = now + AGENT_REPLY_EVERY
        await asyncio.sleep(0.1)
    open_at_end = sum(page.socket.open for page in [*pages, *chat_pages])
    # The last sends are answered (up to DRAIN_SECONDS), and what was accepted last is delivered.
    drain_end = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_end and any(page.pending for page in [*pages, *chat_pages]):
        await asyncio.sleep(0.5)
    await asyncio.sleep(DELIVERY_SECONDS)
    await asyncio.gather(*(page.socket.close() for page in [*pages, *chat_pages]), return_exceptions=True)
    return Run(
        customers=customer_stats,
        agents=agent_stats,
        opening=opening,
        open_at_start=open_at_start,
        open_at_end=open_at_end,
        viewed_prefixes=[page.prefix for page in chat_pages[: len(views)]],
    )


def test_soak_memory_and_database_connections_hold(live_db: World) -> None:
    business = live_db.business_a
    minutes = float(os.environ.get("PARLEY_SOAK_MINUTES", "10" if long_run() else "1"))
    total = int(os.environ.get("PARLEY_SOAK_SOCKETS", SOCKETS))
    # Sessions are signed with the server's key (it runs with DEBUG off, so not the dev key).
    secret_key = secrets.token_urlsafe(50)
    with override_settings(SECRET_KEY=secret_key):
        customers = make_customers(total - AGENT_SOCKETS)
        agent_cookies = make_agents(business, live_db.owner_a, AGENT_SOCKETS)
    # The conversations agents have open exist from the start; the others begin with their
    # customer's first message during the run.
    chats = []
    with tenant_context(business):
        for customer, cookie in customers[:AGENT_SOCKETS]:
            first = services.message_send_customer(business=business, customer=customer, body="hello, soak")
            chats.append((cookie, first.message.conversation_id))
    chats += [(cookie, 0) for _customer, cookie in customers[AGENT_SOCKETS:]]
    views = [conversation_id for _cookie, conversation_id in chats[:AGENT_SOCKETS]]
    database = settings.DATABASES["default"]["NAME"]
    before = server_connections(database)
    port = free_port()
    server = start_uvicorn(port, secret_key)
    process = psutil.Process(server.pid)
    samples: list[tuple[float, int, int]] = []  # (seconds since start, RSS bytes, PostgreSQL connections)
    stop = threading.Event()
    began = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - began, process.memory_info().rss, server_connections(database)))
            stop.wait(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        rss_start = process.memory_info().rss
        sampler.start()
        run = asyncio.run(
            drive(
                port=port,
                host=business.host,
                chats=chats,
                agent_cookies=agent_cookies,
                views=views,
                seconds=minutes * 60,
            )
        )
        ran = time.monotonic() - began
        time.sleep(15)  # every client gone: the pool gives idle connections back
        after_clients = server_connections(database)
        rss_after_clients = process.memory_info().rss
    finally:
        stop.set()
        sampler.join(10)
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    pool_max = (
        int(settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"])
        if "pool" in settings.DATABASES["default"].get("OPTIONS", {})
        else 10**6
    )
    customer_stats, agent_stats = run.customers, run.agents
    # Warm-up: every socket open and a full round of sends (or a third of a short run).
    warm = min(run.opening + CUSTOMER_SEND_EVERY, ran / 3)
    during = [s for s in samples if s[0] >= warm]
    assert during, "no samples after the warm-up"
    rss_warm = during[0][1]
    rss_end = during[-1][1]
    rss_peak = max(s[1] for s in during)
    growth = (rss_end - rss_warm) / rss_warm
    peak_connections = max(s[2] for s in samples) - before
    leaked = after_clients - before

    # Messages were exchanged, and nothing the server accepted was lost or stored twice.
    sent = {*customer_stats.sent, *agent_stats.sent}
    accepted = {*customer_stats.accepted, *agent_stats.accepted}
    with tenant_context(business):
        stored = list(Message.objects.filter(client_msg_id__in=accepted).values_list("client_msg_id", flat=True))
    lost = accepted - set(stored)
    stored_twice = len(stored) - len(set(stored))
    # Each accepted reply reached its customer's socket; each accepted customer message of an
    # open conversation reached the agent who has it open.
    replies_missed = agent_stats.accepted - customer_stats.received_by_customer
    viewed_accepted = {m for m in customer_stats.accepted if m.split("-")[0] in set(run.viewed_prefixes)}
    views_missed = viewed_accepted - agent_stats.received_by_viewer
    errors = {
        code: customer_stats.errors.get(code, 0) + agent_stats.errors.get(code, 0)
        for code in {*customer_stats.errors, *agent_stats.errors}
    }
    exchanged = bool(customer_stats.accepted) and bool(agent_stats.accepted) and bool(viewed_accepted)
    checks = {
        f"all {total} sockets open": run.open_at_start == total,
        f"RSS growth < {RSS_GROWTH_LIMIT:.0%}": growth < RSS_GROWTH_LIMIT,
        "connections within the pool": peak_connections <= pool_max,
        "connections back within the pool": leaked <= pool_max,
        "messages exchanged both ways": exchanged,
        "every send accepted": accepted == sent,
        "nothing lost or stored twice": not lost and not stored_twice,
        "every reply and open-conversation message delivered": not replies_missed and not views_missed,
    }
    failed = [name for name, ok in checks.items() if not ok]
    mib = 1024 * 1024
    record(
        check="8. Soak",
        tried=f"{total} websockets ({total - AGENT_SOCKETS} customers sending every {CUSTOMER_SEND_EVERY:.0f} s, "
        f"{AGENT_SOCKETS} agents, each with its own seat and a conversation open, replying every "
        f"{AGENT_REPLY_EVERY:.0f} s) for {minutes:g} min against one uvicorn process (DEBUG off); RSS and "
        f"pg_stat_activity sampled every {SAMPLE_EVERY:.0f} s",
        result=f"{run.open_at_start} sockets open after {run.opening:.0f} s, {run.open_at_end} at the end; "
        f"{len(customer_stats.sent)} customer messages and {len(agent_stats.sent)} agent replies sent, "
        f"{len(accepted)} of {len(sent)} accepted ({customer_stats.refusals + agent_stats.refusals} refusals "
        f"retried: {dict(sorted({**customer_stats.refusal_codes, **agent_stats.refusal_codes}.items())) or 'none'}), "
        f"{len(set(stored))} in PostgreSQL (lost {len(lost)}, stored twice {stored_twice}); replies seen by their "
        f"customer {len(agent_stats.accepted) - len(replies_missed)} of {len(agent_stats.accepted)}, open-conversation "
        f"messages seen by the agent {len(viewed_accepted) - len(views_missed)} of {len(viewed_accepted)}; "
        f"{customer_stats.reconnects + agent_stats.reconnects} reconnects, errors {errors or 'none'}; RSS "
        f"{rss_start / mib:.0f} MiB at start, {rss_warm / mib:.0f} MiB after warm-up ({warm:.0f} s), "
        f"{rss_end / mib:.0f} MiB at the end (growth {growth * 100:+.1f}%, peak {rss_peak / mib:.0f} MiB), "
        f"{rss_after_clients / mib:.0f} MiB with no client; PostgreSQL connections of the server: peak "
        f"{peak_connections} (pool max {pool_max}), {leaked} 15 s after the last client"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        passed=not failed,
    )
    assert not failed, (failed, sorted(sent - accepted)[:5], sorted(lost)[:5], errors)
