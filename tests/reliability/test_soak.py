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

from accounts.models import Customer
from bench.clients import ChatPage, InboxPage, Stats, new_prefix
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from messaging import services
from reliability.report import long_run, record
from tests.conftest import ROOT, World, free_port, test_database_url
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
RSS_GROWTH_LIMIT = 0.10


def start_uvicorn(port: int, secret_key: str) -> subprocess.Popen[bytes]:
    """As production runs it: DEBUG off (no query log growing in memory), its own SECRET_KEY."""
    log_dir = ROOT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    env = dict(os.environ, DATABASE_URL=test_database_url(), PARLEY_PORT=str(port), DEBUG="0", SECRET_KEY=secret_key)
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


async def drive(
    *, port: int, host: str, chats: list[tuple[str, int]], agent_cookie: str, views: list[int], seconds: float
) -> tuple[Stats, Stats, float]:
    """Open every socket (spread over a few seconds, as page loads are), exchange messages for
    `seconds`, close everything. Returns the customers' and agents' stats and how long opening took."""
    customer_stats, agent_stats = Stats(), Stats()
    cookie_name = settings.SESSION_COOKIE_NAME
    pages: list[Any] = []
    opened = time.monotonic()
    for view in views:
        page = InboxPage(
            url=f"ws://{host}:{port}/ws/inbox/",
            host=host,
            port=port,
            cookie=f"{cookie_name}={agent_cookie}",
            stats=agent_stats,
            prefix=new_prefix("a"),
            view=view,
        )
        await page.socket.start()
        pages.append(page)
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
    end = time.monotonic() + seconds
    # Every customer sends every CUSTOMER_SEND_EVERY s, at its own random phase; agents reply.
    next_send = [time.monotonic() + random.uniform(0, CUSTOMER_SEND_EVERY) for _ in chat_pages]
    next_reply = [time.monotonic() + random.uniform(0, AGENT_REPLY_EVERY) for _ in pages]
    while time.monotonic() < end:
        now = time.monotonic()
        for i, page in enumerate(chat_pages):
            if now >= next_send[i]:
                page.type_and_send()
                next_send[i] = now + CUSTOMER_SEND_EVERY
        for i, agent in enumerate(pages):
            if now >= next_reply[i]:
                agent.reply()
                next_reply[i] = now + AGENT_REPLY_EVERY
        await asyncio.sleep(0.1)
    # The last sends are answered (up to DRAIN_SECONDS).
    drain_end = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_end and any(page.pending for page in [*pages, *chat_pages]):
        await asyncio.sleep(0.5)
    await asyncio.gather(*(page.socket.close() for page in [*pages, *chat_pages]), return_exceptions=True)
    return customer_stats, agent_stats, opening


def test_soak_memory_and_database_connections_hold(live_db: World) -> None:
    business = live_db.business_a
    minutes = float(os.environ.get("PARLEY_SOAK_MINUTES", "10" if long_run() else "1"))
    total = int(os.environ.get("PARLEY_SOAK_SOCKETS", SOCKETS))
    # Sessions are signed with the server's key (it runs with DEBUG off, so not the dev key).
    secret_key = secrets.token_urlsafe(50)
    with override_settings(SECRET_KEY=secret_key):
        customers = make_customers(total - AGENT_SOCKETS)
        agent_cookie = session_key(user=live_db.agent_a)
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
        customer_stats, agent_stats, opening = asyncio.run(
            drive(
                port=port,
                host=business.host,
                chats=chats,
                agent_cookie=agent_cookie,
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
    # Warm-up: every socket open and a full round of sends (or a third of a short run).
    warm = min(opening + CUSTOMER_SEND_EVERY, ran / 3)
    during = [s for s in samples if s[0] >= warm]
    assert during, "no samples after the warm-up"
    rss_warm = during[0][1]
    rss_end = during[-1][1]
    rss_peak = max(s[1] for s in during)
    growth = (rss_end - rss_warm) / rss_warm
    peak_connections = max(s[2] for s in samples) - before
    sent = len(customer_stats.sent) + len(agent_stats.sent)
    accepted = len(customer_stats.accepted) + len(agent_stats.accepted)
    replies_seen = len([c for c in customer_stats.received_by_customer if c.startswith("a")])
    errors = {**customer_stats.errors, **agent_stats.errors}
    leaked = after_clients - before
    passed = (
        growth < RSS_GROWTH_LIMIT
        and peak_connections <= pool_max
        and leaked <= pool_max
        and accepted >= sent * 0.99
        and sent > 0
    )
    mib = 1024 * 1024
    record(
        check="8. Soak",
        tried=f"{total} websockets ({total - AGENT_SOCKETS} customers sending every {CUSTOMER_SEND_EVERY:.0f} s, "
        f"{AGENT_SOCKETS} agent sockets each replying every {AGENT_REPLY_EVERY:.0f} s) for {minutes:g} min against one "
        f"uvicorn process; RSS and pg_stat_activity sampled every {SAMPLE_EVERY:.0f} s",
        result=f"{sent} messages sent, {accepted} accepted ({customer_stats.refusals + agent_stats.refusals} "
        f"overloaded/rate-limited refusals retried), {replies_seen} agent replies reached customers, "
        f"{customer_stats.reconnects + agent_stats.reconnects} reconnects, errors {errors or 'none'}; RSS "
        f"{rss_start / mib:.0f} MiB at start, {rss_warm / mib:.0f} MiB after warm-up ({warm:.0f} s), "
        f"{rss_end / mib:.0f} MiB at the end (growth {growth * 100:+.1f}%, peak {rss_peak / mib:.0f} MiB), "
        f"{rss_after_clients / mib:.0f} MiB with no client; PostgreSQL connections of the server: peak "
        f"{peak_connections} (pool max {pool_max}), {leaked} 15 s after the last client",
        passed=passed,
    )
    assert sent > 0 and accepted >= sent * 0.99, (sent, accepted, errors)
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth * 100:.1f}% ({rss_warm} -> {rss_end})"
    assert peak_connections <= pool_max, peak_connections
    assert leaked <= pool_max, leaked
