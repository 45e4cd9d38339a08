"""The limit: a minimal ASGI websocket server doing Parley's durable work without Django.

Served by `python -m config.serve --app bench.limit_server:app` (uvicorn), started by
`bench/inbox_load.py --compare` against the same load as Parley. Same protocol subset as
messaging/README.md (`/ws/chat/`, `/ws/inbox/`; resume, send, ack, view, typing, ping;
message.created — a send answered with its own —, message.accepted, message.status,
coalesced list updates, `overloaded` with `retry_after`) and the same delivery policy (a message
goes to its conversation's participants: the customer and the agents viewing it; every agent's
list gets coalesced updates a few times a second). What it leaves out on purpose: sign-in (an
identity cookie is trusted), translations, billing and the directory thread; what it keeps: every
send is durable before its ack and its delivery.

Durable work per send, gathered by one writer task per process (group commit): one transaction
advances the per-business counter once, inserts the messages (deduplicated on author and
client_msg_id) and their events in multi-row statements and updates the conversations, then
commits, acks the senders and publishes to Redis, from where every process delivers to its own
sockets. A full queue refuses a send at once with `overloaded` and `retry_after`.

Plain asyncio + psycopg (async pool) + redis.asyncio; tables in the schema `limit_bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import defaultdict
from typing import Any

SCHEMA = "limit_bench"
MAX_PENDING = int(os.environ.get("LIMIT_MAX_PENDING", "2000"))
BATCH = 500
LIST_EVERY = 0.25  # coalesced list updates: at most 4 frames a second per agent
ACK_EVERY = 0.1


def prepare_database(dsn: str, conversations: list[int]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.counter (id int PRIMARY KEY, last_id bigint NOT NULL)")
        conn.execute(f"INSERT INTO {SCHEMA}.counter VALUES (1, 0)")
        conn.execute(
            f"""CREATE TABLE {SCHEMA}.conversation (id bigint PRIMARY KEY, unread int NOT NULL DEFAULT 0,
            preview text NOT NULL DEFAULT '', last_message_at timestamptz)"""
        )
        conn.execute(
            f"""CREATE TABLE {SCHEMA}.message (id bigserial PRIMARY KEY, conversation_id bigint NOT NULL
            REFERENCES {SCHEMA}.conversation, direction text NOT NULL, author_key text NOT NULL, body text NOT NULL,
            client_msg_id text NOT NULL, status text NOT NULL DEFAULT 'sent', event_id bigint NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (author_key, client_msg_id))"""
        )
        conn.execute(
            f"CREATE TABLE {SCHEMA}.event (id bigint PRIMARY KEY, conversation_id bigint NOT NULL, frame text NOT NULL)"
        )
        with conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {SCHEMA}.conversation (id) VALUES (%s)", [(c,) for c in conversations])


class Socket:
    def __init__(self, send: Any, role: str, ident: int) -> None:
        self._send = send
        self.role, self.ident = role, ident  # customer: conversation id; agent: agent number
        self.viewing: int | None = None
        self.tokens, self.at = 20.0, time.monotonic()
        self.acks: dict[tuple[int, bool], int] = {}

    async def send(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.send", "text": text})

    def allow_send(self) -> bool:
        now = time.monotonic()
        self.tokens = min(20.0, self.tokens + (now - self.at) * 2)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class State:
    def __init__(self) -> None:
        self.ready: asyncio.Event | None = None
        self.pool: Any = None
        self.redis: Any = None
        self.channel = os.environ.get("PARLEY_CHANNEL_PREFIX", "limit") + ":limit"
        self.queue: list[tuple[Socket, dict[str, Any], asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.customers: dict[int, set[Socket]] = defaultdict(set)
        self.viewers: dict[int, set[Socket]] = defaultdict(set)
        self.agents: set[Socket] = set()
        self.dirty: dict[int, dict[str, Any]] = {}
        self.acks: dict[tuple[int, str, bool], int] = {}

    async def start(self) -> None:
        if self.ready is not None:
            await self.ready.wait()
            return
        self.ready = asyncio.Event()
        import redis.asyncio as redis
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(os.environ["DATABASE_URL"], min_size=2, max_size=4, open=False)
        await self.pool.open()
        self.redis = redis.from_url(os.environ["REDIS_URL"])
        self.tasks = [
            asyncio.create_task(self.writer()),
            asyncio.create_task(self.subscriber()),
            asyncio.create_task(self.lister()),
            asyncio.create_task(self.acker()),
        ]
        self.ready.set()

    # --- sending: group commit ------------------------------------------------------------

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, self.queue = self.queue[:BATCH], self.queue[BATCH:]
                try:
                    await self.commit(batch)
                except Exception as error:
                    for sock, frame, _ in batch:
                        await sock.send(error_frame("server_error", str(error), frame.get("client_msg_id")))

    async def commit(self, batch: list[tuple[Socket, dict[str, Any], asyncio.Future[None]]]) -> None:
        rows = []
        for sock, frame, _ in batch:
            if sock.role == "customer":
                rows.append((sock.ident, "in", f"customer:{sock.ident}", frame["body"], frame["client_msg_id"]))
            else:
                rows.append(
                    (frame["conversation_id"], "out", f"agent:{sock.ident}", frame["body"], frame["client_msg_id"])
                )
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE {SCHEMA}.counter SET last_id = last_id + %s WHERE id = 1 RETURNING last_id", (len(rows),)
            )
            last = (await cur.fetchone())[0]
            first = last - len(rows) + 1
            ids = list(range(first, last + 1))
            cur = await conn.execute(
                f"""INSERT INTO {SCHEMA}.message (conversation_id, direction, author_key, body, client_msg_id, event_id)
                SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
                ON CONFLICT (author_key, client_msg_id) DO NOTHING
                RETURNING id, event_id, created_at""",
                (
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [r[2] for r in rows],
                    [r[3] for r in rows],
                    [r[4] for r in rows],
                    ids,
                ),
            )
            inserted = {event_id: (mid, created) for mid, event_id, created in await cur.fetchall()}
            # Sends answered with their own message.created (Parley's policy): a customer's, and an
            # agent's into the conversation it views; their delivery skips the sender.
            by_event = {
                event_id
                for (sock, frame, _), event_id in zip(batch, ids, strict=True)
                if sock.role == "customer" or sock.viewing == frame.get("conversation_id")
            }
            events: list[tuple[int, int, str, str | None]] = []  # id, conversation, frame, answered author
            latest: dict[int, str] = {}
            unread: dict[int, int] = defaultdict(int)
            for event_id, row in zip(ids, rows, strict=True):
                if event_id not in inserted:
                    continue
                mid, created = inserted[event_id]
                conv, direction, author, body, cmid = row
                message = {
                    "id": mid,
                    "conversation_id": conv,
                    "direction": direction,
                    "author_kind": author.split(":")[0],
                    "kind": "text",
                    "body": body,
                    "status": "sent",
                    "client_msg_id": cmid,
                    "created_at": created.isoformat(),
                    "event_id": event_id,
                }
                events.append(
                    (
                        event_id,
                        conv,
                        json.dumps({"id": event_id, "type": "message.created", "message": message}),
                        author if event_id in by_event else None,
                    )
                )
                latest[conv] = body[:140]
                if direction == "in":
                    unread[conv] += 1
            if events:
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.event (id, conversation_id, frame) SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[])",
                    ([e[0] for e in events], [e[1] for e in events], [e[2] for e in events]),
                )
                cur = await conn.execute(
                    f"""UPDATE {SCHEMA}.conversation c SET preview = v.preview, unread = c.unread + v.n, last_message_at = now()
                    FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS preview, unnest(%s::int[]) AS n) v
                    WHERE c.id = v.id RETURNING c.id, c.unread, c.preview, c.last_message_at""",
                    (list(latest), list(latest.values()), [unread[c] for c in latest]),
                )
                conversations = await cur.fetchall()
            else:
                conversations = []
        # Durable: now ack the senders and deliver.
        frames = {event_id: text for event_id, _conv, text, answered in events if answered}
        for (sock, frame, _), event_id in zip(batch, ids, strict=True):
            known = inserted.get(event_id)
            if event_id in frames:
                await sock.send(live_frame(frames[event_id]))
                continue
            await sock.send(
                json.dumps(
                    {
                        "id": None,
                        "type": "message.accepted",
                        "client_msg_id": frame["client_msg_id"],
                        "message_id": known[0] if known else None,
                        "event_id": event_id if known else None,
                        "duplicate": known is None,
                    }
                )
            )
        updates = [
            {"id": c, "unread": n, "preview": p, "last_message_at": at.isoformat() if at else None}
            for c, n, p, at in conversations
        ]
        await self.redis.publish(
            self.channel, json.dumps({"events": [[e[1], e[2], e[3]] for e in events], "updates": updates})
        )

    # --- delivery -------------------------------------------------------------------------

    async def subscriber(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.channel)
        async for item in pubsub.listen():
            if item.get("type") != "message":
                continue
            data = json.loads(item["data"])
            for conv, text, answered in data.get("events", []):
                live = live_frame(text)
                for sock in (*self.customers.get(conv, ()), *self.viewers.get(conv, ())):
                    if answered != f"{sock.role}:{sock.ident}":  # not to whom it went as an answer
                        await sock.send(live)
            for update in data.get("updates", []):
                self.dirty[update["id"]] = update
            for signal in data.get("signals", []):
                conv, who, text = signal
                targets = self.viewers.get(conv, ()) if who == "customer" else self.customers.get(conv, ())
                for sock in targets:
                    await sock.send(text)

    async def lister(self) -> None:
        while True:
            await asyncio.sleep(LIST_EVERY)
            if not self.dirty:
                continue
            dirty, self.dirty = self.dirty, {}
            text = json.dumps({"id": None, "type": "conversations.updated", "conversations": list(dirty.values())})
            for sock in list(self.agents):
                await sock.send(text)

    async def acker(self) -> None:
        """Acks batched per conversation: the highest id per (conversation, direction, read)."""
        while True:
            await asyncio.sleep(ACK_EVERY)
            if not self.acks:
                continue
            acks, self.acks = self.acks, {}
            async with self.pool.connection() as conn:
                for (conv, direction, read), up_to in acks.items():
                    status = "read" if read else "delivered"
                    await conn.execute(
                        f"""UPDATE {SCHEMA}.message SET status = %s WHERE conversation_id = %s AND direction = %s
                        AND id <= %s AND status <> 'read' AND status <> %s""",
                        (status, conv, direction, up_to, status),
                    )
            signals = [
                [conv, "customer" if direction == "out" else "agent", status_frame(conv, direction, up_to, read)]
                for (conv, direction, read), up_to in acks.items()
            ]
            await self.redis.publish(self.channel, json.dumps({"signals": signals}))


def live_frame(text: str) -> str:
    """An event's frame as sent live: no stream id (two processes may publish out of order, and
    the clients would drop the later of two reordered ids; Parley catches up instead)."""
    live = text.replace('{"id": ', '{"live": ', 1)
    return '{"id": null, ' + live[1:]


def status_frame(conv: int, direction: str, up_to: int, read: bool) -> str:
    return json.dumps(
        {
            "id": None,
            "type": "message.status",
            "conversation_id": conv,
            "direction": direction,
            "up_to": up_to,
            "status": "read" if read else "delivered",
        }
    )


def error_frame(code: str, message: str, client_msg_id: str | None = None, **extra: Any) -> str:
    frame: dict[str, Any] = {"id": None, "type": "error", "code": code, "message": message, **extra}
    if client_msg_id:
        frame["client_msg_id"] = client_msg_id
    return json.dumps(frame)


state = State()


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    return {name: value.decode("latin-1") for name, value in scope.get("headers", [])}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return
    headers = _headers(scope)
    await receive()  # websocket.connect
    host = headers.get(b"host", "").split(":")[0]
    origin = headers.get(b"origin", "").split("://")[-1].split(":")[0]
    cookie = dict(part.strip().split("=", 1) for part in headers.get(b"cookie", "").split(";") if "=" in part)
    role, _, ident = cookie.get("bench_id", "").partition(".")
    path = scope["path"]
    if (
        origin != host
        or not ident.isdigit()
        or (role, path) not in {("customer", "/ws/chat/"), ("agent", "/ws/inbox/")}
    ):
        await send({"type": "websocket.close", "code": 4403})
        return
    await state.start()
    await send({"type": "websocket.accept"})
    sock = Socket(send, role, int(ident))
    if role == "customer":
        state.customers[sock.ident].add(sock)
    else:
        state.agents.add(sock)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            await handle(sock, event.get("text") or "")
    finally:
        state.customers.get(sock.ident, set()).discard(sock) if role == "customer" else state.agents.discard(sock)
        if sock.viewing is not None:
            state.viewers[sock.viewing].discard(sock)


async def handle(sock: Socket, text: str) -> None:
    try:
        frame = json.loads(text)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        await sock.send(error_frame("bad_frame", "Every frame must be a JSON object with a type."))
        return
    kind = frame.get("type")
    conv = sock.ident if sock.role == "customer" else frame.get("conversation_id")
    if kind == "resume":
        after = int(frame.get("after") or 0)
        async with state.pool.connection() as conn:
            if sock.role == "customer":
                cur = await conn.execute(
                    f"SELECT frame FROM {SCHEMA}.event WHERE id > %s AND conversation_id = %s ORDER BY id LIMIT 1000",
                    (after, sock.ident),
                )
            else:
                cur = await conn.execute(
                    f"SELECT frame FROM {SCHEMA}.event WHERE id > %s ORDER BY id LIMIT 1000", (after,)
                )
            for (stored,) in await cur.fetchall():
                await sock.send(stored)
        await sock.send(json.dumps({"id": None, "type": "resumed"}))
    elif kind == "send":
        cmid = frame.get("client_msg_id")
        body = frame.get("body")
        if not isinstance(body, str) or not body.strip() or not isinstance(cmid, str) or not isinstance(conv, int):
            await sock.send(error_frame("invalid", "A send needs a body, a client_msg_id and a conversation.", cmid))
            return
        if not sock.allow_send():
            await sock.send(error_frame("rate_limited", "You are sending too fast.", cmid))
            return
        if len(state.queue) >= MAX_PENDING:
            await sock.send(error_frame("overloaded", "Busy, try again shortly.", cmid, retry_after=0.5))
            return
        state.queue.append((sock, dict(frame, conversation_id=conv), asyncio.get_running_loop().create_future()))
        state.wake.set()
    elif kind == "ack":
        up_to = frame.get("up_to")
        if isinstance(up_to, int) and isinstance(conv, int):
            direction = "out" if sock.role == "customer" else "in"
            key = (conv, direction, bool(frame.get("read")))
            state.acks[key] = max(up_to, state.acks.get(key, 0))
    elif kind == "view" and sock.role == "agent":
        if sock.viewing is not None:
            state.viewers[sock.viewing].discard(sock)
        sock.viewing = conv if isinstance(conv, int) else None
        if sock.viewing is not None:
            state.viewers[sock.viewing].add(sock)
    elif kind == "typing" and isinstance(conv, int):
        who = "customer" if sock.role == "customer" else "agent"
        signal = json.dumps({"id": None, "type": "typing", "conversation_id": conv, "who": who})
        await state.redis.publish(state.channel, json.dumps({"signals": [[conv, who, signal]]}))
    elif kind == "ping":
        await sock.send(json.dumps({"id": None, "type": "pong"}))
