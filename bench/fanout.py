"""Fan-out cost: one event through the channel layer to N websocket clients.

Run: .venv/bin/python bench/fanout.py --clients 200 --events 200
     (with REDIS_URL set the Redis pub/sub layer is measured, else the in-memory one)

Starts a Daphne process on loopback serving a bench consumer that does what the inbox consumer
does on the hot path: join one group, forward the pre-serialized event text unchanged. A
publisher socket asks the server to `group_send` one event at a time (serialized once, as the
messaging services do); every client timestamps its copy. Prints deliveries per second and the
p50/p99 latency from publish to receipt. Bounded: exactly --events events, then it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The bench never touches the database; a placeholder keeps settings from starting one.
os.environ.setdefault("DATABASE_URL", "postgres://bench@127.0.0.1:1/none")

GROUP = os.environ.get("PARLEY_FANOUT_GROUP", "t.bench.inbox")


def _application() -> Any:
    import django

    django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class FanoutConsumer(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.channel_layer.group_add(GROUP, self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            # The publisher: serialize once, send the same text to the whole group.
            request = json.loads(text_data or "{}")
            frame = json.dumps({"id": request["n"], "type": "message.created", "sent": time.time(), "body": "x" * 200})
            await self.channel_layer.group_send(GROUP, {"type": "inbox.frame", "id": request["n"], "text": frame})

        async def inbox_frame(self, message: dict[str, Any]) -> None:
            await self.send(text_data=message["text"])

    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/fanout/", FanoutConsumer.as_asgi())])})


if __name__ != "__main__":
    application = _application()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(port: int, clients: int, events: int, interval: float) -> None:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws/fanout/"
    sockets = [await connect(url, max_queue=None) for _ in range(clients)]
    publisher = await connect(url)
    latencies: list[float] = []
    received = 0

    async def listen(ws: Any) -> None:
        nonlocal received
        for _ in range(events):
            frame = json.loads(await ws.recv())
            latencies.append(time.time() - frame["sent"])
            received += 1

    await asyncio.sleep(0.5)  # let every group_add settle
    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    started = time.perf_counter()
    for n in range(1, events + 1):
        await publisher.send(json.dumps({"n": n}))
        if interval:
            await asyncio.sleep(interval)
    try:
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=60)
    except TimeoutError:
        print("timed out waiting for deliveries; figures cover what arrived")
    elapsed = time.perf_counter() - started
    for ws in [*sockets, publisher]:
        await ws.close()

    latencies.sort()
    expected = clients * events
    print(f"layer:        {'redis pub/sub' if os.environ.get('REDIS_URL') else 'in-memory'}")
    print(f"clients:      {clients}   events: {events}   interval: {interval * 1000:.1f} ms")
    print(f"delivered:    {received}/{expected} frames in {elapsed:.2f} s")
    print(f"throughput:   {received / elapsed:,.0f} messages/s delivered ({events / elapsed:,.0f} events/s published)")
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"latency:      p50 {p50:.1f} ms   p99 {p99:.1f} ms   max {latencies[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=5.0, help="pause between published events")
    args = parser.parse_args()

    port = free_port()
    env = dict(os.environ, PARLEY_CHANNEL_PREFIX=f"bench{uuid.uuid4().hex[:6]}")
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.fanout:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"bench server did not start: {server.stderr.read().decode() if server.stderr else ''}"
                    ) from None
                time.sleep(0.1)
        asyncio.run(run(port, args.clients, args.events, args.interval_ms / 1000))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
