"""What idle websockets cost one server process, and whether it comes back when they close.

Run: .venv/bin/python bench/idle_sockets.py --sockets 10000      (make bench)
     .venv/bin/python bench/idle_sockets.py --sockets 1000 --servers uvicorn --trace   # where it goes

For each server variant: one Parley process (production settings, Redis layer) on a throwaway
database; --sockets customer chat sockets (/ws/chat/, signed in, resumed, then idle; --customers
sessions shared round robin like tabs) are opened at --connect-concurrency at a time. The clients
offer permessage-deflate as browsers do (--no-client-deflate: not). Prints the process's RSS
before, with all sockets open, and --settle seconds after they all closed, the connect rate, and
round trips/s (ping → pong, --pingers sockets in a loop while all are open).

Variants (--servers, comma-separated): `uvicorn` and `daphne` run `config.serve`'s defaults;
modifiers after `+` change them: `deflate` (permessage-deflate on), `malloc=glibc|jemalloc|default`
(config.serve --malloc), `python-malloc=malloc|pymalloc` (config.serve --python-malloc),
`NAME=value` (an environment variable of the server), `root=DIR` (serve the Parley checkout in
DIR, e.g. an older commit's `git archive`, to compare code in one run; its config.serve's
options), e.g. `uvicorn+malloc=jemalloc`. `before` is uvicorn as config.serve ran it up to
2026-12-02 (deflate on, glibc untouched, pymalloc, no collect-and-trim after closes).

--trace serves bench/traced_asgi.py instead and prints the tracemalloc diff (open − before: the
allocation sites of the sockets' memory, per socket) and live objects per socket by type.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbox_load import Server, create_database, database_url, drop_database, free_port, setup_data  # noqa: E402
from bench.machine import cpu_seconds  # noqa: E402

PRESETS = {
    # config.serve up to 2026-12-02: permessage-deflate on, glibc untouched, no collect-and-trim.
    "before": "uvicorn+deflate+malloc=default+python-malloc=pymalloc+PARLEY_MEMORY_TRIM_AFTER_CLOSES=0",
}


def variant_command(name: str) -> tuple[list[str], dict[str, str], Path]:
    """config.serve arguments, environment and checkout for a variant:
    <daphne|uvicorn[:ws-protocol]>[+deflate][+malloc=glibc|jemalloc|default][+python-malloc=malloc|pymalloc]
    [+root=DIR][+ENV_NAME=value]…"""
    base, *modifiers = PRESETS.get(name, name).split("+")
    server, _, ws = base.partition(":")
    if server not in ("daphne", "uvicorn"):
        raise SystemExit(f"unknown variant {name!r}")
    arguments = ["--server", server, *(["--ws", ws] if ws else [])]
    env: dict[str, str] = {}
    root = ROOT
    for modifier in modifiers:
        key, _, value = modifier.partition("=")
        if key == "deflate":
            arguments.append("--ws-deflate")
        elif key == "malloc":
            arguments += ["--malloc", value]
        elif key == "python-malloc":
            arguments += ["--python-malloc", value]
        elif key == "root" and value:
            root = Path(value).resolve()
        elif key.isupper() and value:
            env[key] = value
        else:
            raise SystemExit(f"unknown modifier {modifier!r} in {name!r}")
    return arguments, env, root


def start(name: str, database: str, app: str, env_extra: dict[str, str]) -> Server:
    import socket

    port = free_port()
    log = ROOT / "test-artifacts" / f"idle-sockets-{name.replace(':', '-').replace('/', '_')}-{port}.log"
    log.parent.mkdir(exist_ok=True)
    arguments, variant_env, root = variant_command(name)
    env = dict(
        os.environ,
        DATABASE_URL=database_url(database),
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or uuid.uuid4().hex * 2,
        PARLEY_CHANNEL_PREFIX=f"bench{uuid.uuid4().hex[:6]}",
        PARLEY_PORT=str(port),
        **variant_env,
        **env_extra,
    )
    if not env.get("REDIS_URL"):
        raise SystemExit("idle_sockets needs REDIS_URL (the production channel layer)")
    command = [sys.executable, "-m", "config.serve", "--port", str(port), "--processes", "1", "--workers", "0"]
    command += ["--app", app, *arguments]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    # The listening socket is the supervisor's, open before the server has loaded the app: wait
    # for an HTTP answer instead.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited early; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as probe:
                probe.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if probe.recv(16).startswith(b"HTTP/"):
                    break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(1.0)
    return Server(name, process, port, log)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


class Probe:
    """Asks a bench/traced_asgi.py server for memory dumps and reads them back."""

    def __init__(self, pid: int, directory: Path) -> None:
        self.pid, self.directory, self.taken = pid, directory, 0

    async def dump(self) -> dict[str, Any]:
        path = self.directory / f"{self.pid}-{self.taken}.pickle"
        path.with_suffix(".request").touch()
        self.taken += 1
        for _ in range(2400):
            await asyncio.sleep(0.25)
            if path.exists():
                with path.open("rb") as f:
                    return pickle.load(f)  # our own server's dump
        raise SystemExit(f"no memory dump from {self.pid}")


def print_trace(before: dict[str, Any], after: dict[str, Any], sockets: int, top: int) -> None:
    per = max(sockets, 1)
    traced = (after["traced"][0] - before["traced"][0]) / per
    print(f"  tracemalloc: {traced / 1024:.1f} KiB per socket traced (Python allocations only)")
    for group in ("filename", "lineno"):
        stats = after["snapshot"].compare_to(before["snapshot"], group)
        print(f"  top allocation sites by {group}, bytes per socket (count per socket):")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            where = frame.filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            at = f"{where}:{frame.lineno}" if group == "lineno" else where
            print(f"    {stat.size_diff / per:9.0f} B  ({stat.count_diff / per:6.1f})  {at}")
    stats = after["snapshot"].compare_to(before["snapshot"], "traceback")
    print("  largest allocation tracebacks (innermost last):")
    for stat in stats[: max(3, top // 4)]:
        print(f"    {stat.size_diff / per:9.0f} B per socket")
        for line in stat.traceback.format(limit=6):
            print(f"      {line.replace(str(ROOT) + '/', '')}")
    diff = after["types"].copy()
    diff.subtract(before["types"])
    print("  live objects per socket by type (gc-tracked):")
    for name, count in diff.most_common(top):
        print(f"    {count / per:6.1f}  {name}")


def print_retained(before: dict[str, Any], closed: dict[str, Any], top: int) -> None:
    """What is still allocated after every socket closed (closed − before), by site: one-off
    costs (modules imported on first use, caches filled once) and whatever sockets left behind."""
    stats = closed["snapshot"].compare_to(before["snapshot"], "lineno")
    print("  still held after every socket closed, by allocation site (KiB, count):")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = frame.filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        print(f"    {stat.size_diff / 1024:9.1f} KiB  ({stat.count_diff:7d})  {where}:{frame.lineno}")
    diff = closed["types"].copy()
    diff.subtract(before["types"])
    print("  live objects still there after every socket closed, by type:")
    for name, count in diff.most_common(top // 2):
        print(f"    {count:7d}  {name}")


async def measure(
    host: str, port: int, cookies: list[str], args: argparse.Namespace, pid: int, probe: Probe | None
) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(args.connect_concurrency)
    sockets: list[Any] = []
    failures = 0
    reasons: dict[str, int] = {}

    async def open_one(n: int) -> None:
        nonlocal failures
        async with gate:
            ws = None
            try:
                ws = await connect(
                    f"ws://{host}:{port}/ws/chat/",
                    host="127.0.0.1",
                    port=port,
                    origin=f"http://{host}:{port}",  # type: ignore[arg-type]
                    additional_headers={"Cookie": cookies[n % len(cookies)]},
                    compression="deflate" if args.client_deflate else None,
                    ping_interval=None,
                    open_timeout=120,
                )
                async with asyncio.timeout(args.resume_timeout):
                    await ws.send('{"type": "resume", "after": 0}')
                    while True:
                        frame = str(await ws.recv())
                        if '"resumed"' in frame:
                            break
                        if '"error"' in frame:  # e.g. overloaded during the connect storm
                            raise RuntimeError(frame)
                sockets.append(ws)
            except Exception as error:
                failures += 1
                reasons[type(error).__name__] = reasons.get(type(error).__name__, 0) + 1
                if ws is not None:
                    await ws.close()

    dumps: list[dict[str, Any]] = []
    if probe is not None:
        dumps.append(await probe.dump())
    before = rss(pid)
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(open_one(n) for n in range(args.sockets)))
    connect_seconds = time.perf_counter() - t0
    connect_cpu = cpu_seconds(pid) - cpu0
    await asyncio.sleep(args.settle)
    open_rss = rss(pid)
    if probe is not None:
        dumps.append(await probe.dump())

    # Round trips while every socket is open.
    count = 0
    stop_at = time.perf_counter() + args.ping_seconds

    refused = 0

    async def pinger(ws: Any) -> None:
        # A ping past the socket's frame rate limit is answered with an error frame, not a pong:
        # counted and waited out, so no pinger waits forever.
        nonlocal count, refused
        while time.perf_counter() < stop_at:
            await ws.send('{"type": "ping"}')
            try:
                async with asyncio.timeout(10):
                    while True:
                        frame = str(await ws.recv())
                        if '"pong"' in frame:
                            count += 1
                            break
                        if '"error"' in frame:
                            refused += 1
                            await asyncio.sleep(1.0)
                            break
            except TimeoutError:
                refused += 1

    cpu1 = cpu_seconds(pid)
    await asyncio.gather(*(pinger(ws) for ws in sockets[: args.pingers]))
    ping_cpu = cpu_seconds(pid) - cpu1
    round_trips = count / args.ping_seconds
    peak_rss = rss(pid)

    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(args.settle_after_close)
    after = rss(pid)
    if probe is not None:
        dumps.append(await probe.dump())
    return {
        "open": len(sockets),
        "failures": failures,
        "reasons": reasons,
        "connect_per_s": len(sockets) / connect_seconds,
        "connect_cpu": connect_cpu,
        "ping_cpu": ping_cpu,
        "rss_before": before,
        "rss_open": open_rss,
        "rss_peak": peak_rss,
        "rss_after": after,
        "round_trips": round_trips,
        "pings_refused": refused,
        "dumps": dumps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--servers", default="before,uvicorn,daphne", help="variants, comma-separated (see above)")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--pingers", type=int, default=100)
    parser.add_argument("--ping-seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--settle-after-close", type=float, default=15.0, help="seconds from the last close to the 'after' RSS"
    )
    parser.add_argument("--resume-timeout", type=float, default=60.0, help="per socket: connect to resumed")
    parser.add_argument("--client-deflate", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--trace", action="store_true", help="tracemalloc diff of the sockets (slow)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["DEBUG"] = "0"
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    database = create_database()
    probe_dir = Path(tempfile.mkdtemp(prefix="idle-sockets-"))
    app = "bench.traced_asgi:application" if args.trace else "config.asgi:application"
    try:
        setup_args = argparse.Namespace(customers=args.customers, agents=0, extra_businesses=0)
        data = setup_data(database, setup_args)
        print(
            f"{args.sockets} idle customer sockets on one server process (production settings, Redis layer; "
            f"clients {'offer' if args.client_deflate else 'do not offer'} permessage-deflate"
            f"{'; tracemalloc on' if args.trace else ''})",
            flush=True,
        )
        for name in args.servers.split(","):
            server = start(name, database, app, {"PARLEY_MEMORY_PROBE_DIR": str(probe_dir)})
            try:
                pid = server.pids()[0]
                probe = Probe(pid, probe_dir) if args.trace else None
                r = asyncio.run(measure(data["host"], server.port, data["customer_cookies"], args, pid, probe))
            finally:
                stop(server)
            mib = 2**20
            print(
                f"{name:26} open {r['open']:6d} (failed {r['failures']} {r['reasons'] or ''})  connect {r['connect_per_s']:5.0f}/s "
                f"({r['connect_cpu']:.1f} CPU-s)  RSS before {r['rss_before'] / mib:4.0f} MiB  "
                f"open {r['rss_open'] / mib:4.0f} MiB  peak {r['rss_peak'] / mib:4.0f} MiB  "
                f"after close {r['rss_after'] / mib:4.0f} MiB  "
                f"per socket {(r['rss_open'] - r['rss_before']) / max(r['open'], 1) / 1024:5.1f} KiB  "
                f"ping round trips {r['round_trips']:5.0f}/s ({r['ping_cpu']:.1f} CPU-s, {r['pings_refused']} refused)",
                flush=True,
            )
            if args.trace and len(r["dumps"]) == 3:
                print_trace(r["dumps"][0], r["dumps"][1], r["open"], args.top)
                retained = (r["dumps"][2]["traced"][0] - r["dumps"][0]["traced"][0]) / 2**20
                print(f"  traced Python memory still held after every socket closed: {retained:.1f} MiB", flush=True)
                print_retained(r["dumps"][0], r["dumps"][2], args.top)
    finally:
        drop_database(database)


if __name__ == "__main__":
    main()
