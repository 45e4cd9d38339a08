"""What idle websockets cost one server process, Daphne vs uvicorn (the ASGI server choice).

Run: .venv/bin/python bench/idle_sockets.py --sockets 10000      (make bench)

For each server: one Parley process (production settings, Redis layer) on a throwaway database;
--sockets customer chat sockets (/ws/chat/, signed in, resumed, then idle; --customers sessions
shared round robin like tabs) are opened at --connect-concurrency at a time. Prints the process's
RSS before, with all sockets open and --settle seconds after they all closed, the connect rate,
and round trips/s (ping → pong, --pingers sockets in a loop while all are open).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inbox_load import create_database, drop_database, setup_data, start_server, stop_server


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


async def measure(host: str, port: int, cookies: list[str], args: argparse.Namespace, pid: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(args.connect_concurrency)
    sockets: list[Any] = []
    failures = 0

    async def open_one(n: int) -> None:
        nonlocal failures
        async with gate:
            try:
                ws = await connect(
                    f"ws://{host}:{port}/ws/chat/",
                    host="127.0.0.1",
                    port=port,
                    origin=f"http://{host}:{port}",  # type: ignore[arg-type]
                    additional_headers={"Cookie": cookies[n % len(cookies)]},
                    compression=None,
                    ping_interval=None,
                    open_timeout=120,
                )
                await ws.send('{"type": "resume", "after": 0}')
                while '"resumed"' not in str(await ws.recv()):
                    pass
                sockets.append(ws)
            except Exception:
                failures += 1

    before = rss(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(open_one(n) for n in range(args.sockets)))
    connect_seconds = time.perf_counter() - t0
    await asyncio.sleep(args.settle)
    open_rss = rss(pid)

    # Round trips while every socket is open.
    count = 0
    stop_at = time.perf_counter() + args.ping_seconds

    async def pinger(ws: Any) -> None:
        nonlocal count
        while time.perf_counter() < stop_at:
            await ws.send('{"type": "ping"}')
            while '"pong"' not in str(await ws.recv()):
                pass
            count += 1

    await asyncio.gather(*(pinger(ws) for ws in sockets[: args.pingers]))
    round_trips = count / args.ping_seconds
    peak_rss = rss(pid)

    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(args.settle)
    after = rss(pid)
    return {
        "open": len(sockets),
        "failures": failures,
        "connect_per_s": len(sockets) / connect_seconds,
        "rss_before": before,
        "rss_open": open_rss,
        "rss_peak": peak_rss,
        "rss_after": after,
        "round_trips": round_trips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument(
        "--servers",
        default="daphne,uvicorn:websockets,uvicorn:websockets-sansio",
        help="server[:uvicorn ws protocol],…",
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--pingers", type=int, default=100)
    parser.add_argument("--ping-seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["DEBUG"] = "0"
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    database = create_database()
    try:
        setup_args = argparse.Namespace(customers=args.customers, agents=0, extra_businesses=0)
        data = setup_data(database, setup_args)
        print(f"{args.sockets} idle customer sockets on one server process (production settings, Redis layer)")
        for server_name in args.servers.split(","):
            server_kind, _, ws = server_name.partition(":")
            serve_args = argparse.Namespace(processes=1, server=server_kind, ws=ws or "websockets-sansio")
            server = start_server("parley", database, serve_args)
            try:
                pid = server.pids()[0]
                r = asyncio.run(measure(data["host"], server.port, data["customer_cookies"], args, pid))
            finally:
                stop_server(server)
            mib = 2**20
            print(
                f"{server_name:27} open {r['open']:6d} (failed {r['failures']})  connect {r['connect_per_s']:6.0f}/s  "
                f"RSS before {r['rss_before'] / mib:5.0f} MiB  open {r['rss_open'] / mib:5.0f} MiB  "
                f"peak {r['rss_peak'] / mib:5.0f} MiB  after close {r['rss_after'] / mib:5.0f} MiB  "
                f"per socket {(r['rss_open'] - r['rss_before']) / max(r['open'], 1) / 1024:5.1f} KiB  "
                f"ping round trips {r['round_trips']:6.0f}/s",
                flush=True,
            )
    finally:
        drop_database(database)


if __name__ == "__main__":
    main()
