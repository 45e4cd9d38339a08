"""Serve Parley in production on one machine: N ASGI processes behind one port, plus workers.

    make serve                      # SECRET_KEY must be set (or: make serve INSECURE_DEV_KEY=1)
    .venv/bin/python -m config.serve --processes 2 --port 8080 --workers 1

Why this shape (docs/deploy.md has the figures):
- One ASGI process per core: a Python process uses one core, and websockets are long-lived, so
  processes are the unit of scale. They share the Redis channel layer, so an event published by
  one reaches sockets held by every other.
- One port, no balancer process: the supervisor opens one listening socket *per process* with
  SO_REUSEPORT on the same address and hands each to its server with `--fd`. The kernel spreads
  new connections over the sockets by a hash of the connection, so every process gets its share
  (one socket shared by all processes would let whichever process wakes first take most of
  them). Nothing sits in the data path, and no extra hop costs latency or CPU.
- uvicorn (with uvloop, httptools and the `websockets` protocol) by default; `--server daphne`
  keeps the previous server for comparison.
- Procrastinate workers are separate processes (`--workers`), scaled independently of servers.

SIGTERM or Ctrl-C stops the servers (they close websockets with 1012 "service restart", which
the pages answer by resuming on another process) and lets workers finish their current job.
If any child dies, the others are stopped too and the exit status is non-zero, so the process
manager above (systemd, a container runtime) restarts the whole unit cleanly.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
ASGI_APP = "config.asgi:application"
# uvicorn's sans-I/O websocket protocol holding less per idle socket (config/ws_protocol.py).
WS_PROTOCOLS = {"lean": "config.ws_protocol:LeanWebSocketsProtocol"}


def listening_socket(bind: str, port: int) -> socket.socket:
    """One of several sockets bound to the same address; the kernel balances between them."""
    sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bind, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def server_command(
    server: str, fd: int, app: str = ASGI_APP, ws: str = "lean", *, ws_deflate: bool = False
) -> list[str]:
    if server == "daphne":
        # Daphne's --fd takes an already-listening socket.
        return [sys.executable, "-m", "daphne", "--fd", str(fd), "--proxy-headers", app]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--fd",
        str(fd),
        "--ws",
        WS_PROTOCOLS.get(ws, ws),  # uvicorn takes its own names or a class's import path
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
        "--proxy-headers",
        "--timeout-graceful-shutdown",
        "10",
        "--ws-per-message-deflate",
        "true" if ws_deflate else "false",
    ]


MALLOC_CHOICES = ("glibc", "jemalloc", "default")
JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")


def malloc_env(choice: str, env: dict[str, str]) -> dict[str, str]:
    """The servers' allocator settings (docs/deploy.md has the figures). glibc: two malloc
    arenas instead of eight per core (the database threads would each get one and keep their
    freed memory apart); config/memory.py trims after sockets close. jemalloc: preloaded, its
    background thread returns freed pages after a second. Settings already in the environment
    win."""
    env = dict(env)
    if choice == "glibc":
        env.setdefault("MALLOC_ARENA_MAX", "2")
    elif choice == "jemalloc":
        library = next((path for path in JEMALLOC_PATHS if Path(path).exists()), None)
        if library is None:
            raise SystemExit("--malloc jemalloc: libjemalloc.so.2 is not installed (apt-get install libjemalloc2)")
        env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD", ""), library]))
        env.setdefault("MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0")
    return env


PYTHON_MALLOC_CHOICES = ("pymalloc", "malloc")


def python_malloc_env(choice: str, env: dict[str, str]) -> dict[str, str]:
    """Where the servers' Python objects live (docs/deploy.md, "Memory per websocket"):
    `malloc` (the default: PYTHONMALLOC=malloc, every object in --malloc's allocator, which
    config/memory.py's trim or jemalloc's decay returns page by page: 105 of the 128 MiB of
    10,000 closed sockets came back, against 20 MiB with pymalloc) or `pymalloc` (CPython's own:
    1 MiB arenas, each freed only when every object in it is gone, so the few long-lived objects
    made during a connect storm kept most of them; ~10% less memory per open socket).
    PYTHONMALLOC already in the environment wins."""
    env = dict(env)
    if choice == "malloc":
        env.setdefault("PYTHONMALLOC", "malloc")
    return env


def production_env(*, insecure_dev_key: bool) -> dict[str, str]:
    env = dict(
        os.environ, DEBUG="0", DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings")
    )
    if not env.get("SECRET_KEY"):
        if not insecure_dev_key:
            raise SystemExit(
                "SECRET_KEY is not set. Production needs a long random secret kept across restarts, e.g.\n"
                "  export SECRET_KEY=\"$(python -c 'import secrets; print(secrets.token_urlsafe(50))')\"\n"
                "For a throwaway local run only: make serve INSECURE_DEV_KEY=1 (a new key each start; "
                "every session ends when the server restarts)."
            )
        env["SECRET_KEY"] = secrets.token_urlsafe(50)
    if not env.get("REDIS_URL"):
        raise SystemExit(
            "REDIS_URL is not set. Several server processes must share one channel layer and cache: "
            "set REDIS_URL=redis://host:6379/0."
        )
    return env


class Supervisor:
    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def start(self, command: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        self.children.append(subprocess.Popen(command, cwd=ROOT, env=env, pass_fds=pass_fds))

    def stop(self, grace: float) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def wait(self) -> int:
        """Until a signal asks to stop (0) or a child dies on its own (1)."""
        while not self.stopping:
            for child in self.children:
                if child.poll() is not None:
                    print(
                        f"serve: process {child.pid} exited with {child.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default=os.environ.get("PARLEY_BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PARLEY_PORT", "8000")))
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="ASGI processes (default: one per core)"
    )
    parser.add_argument("--workers", type=int, default=1, help="Procrastinate worker processes")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument(
        "--ws",
        default="lean",
        help="uvicorn's websocket protocol: lean (default: websockets-sansio holding less per socket, "
        "config/ws_protocol.py), websockets-sansio, websockets, wsproto",
    )
    parser.add_argument(
        "--ws-deflate",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("PARLEY_WS_DEFLATE", "0") not in ("", "0"),
        help="permessage-deflate on websockets (uvicorn; default off: ~50 KiB per socket for small JSON frames)",
    )
    parser.add_argument(
        "--malloc",
        choices=MALLOC_CHOICES,
        default=os.environ.get("PARLEY_MALLOC", "glibc"),
        help="the servers' allocator: glibc with 2 arenas (default), jemalloc (if installed), or default "
        "(glibc untouched); see docs/deploy.md",
    )
    parser.add_argument(
        "--python-malloc",
        choices=PYTHON_MALLOC_CHOICES,
        default=os.environ.get("PARLEY_PYTHON_MALLOC", "malloc"),
        help="the servers' Python objects: malloc (default: PYTHONMALLOC=malloc, in --malloc's allocator, "
        "returned after sockets close) or pymalloc (CPython's arenas); see docs/deploy.md",
    )
    parser.add_argument("--app", default=ASGI_APP, help="ASGI application (the benchmarks serve their own apps)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds children get to stop before being killed")
    parser.add_argument(
        "--insecure-dev-key",
        action="store_true",
        default=os.environ.get("INSECURE_DEV_KEY", "") not in ("", "0"),
        help="without SECRET_KEY, use a random key for this run (local trials only)",
    )
    args = parser.parse_args(argv)

    env = production_env(insecure_dev_key=args.insecure_dev_key)
    env["PARLEY_PORT"] = env.get("PARLEY_PORT", str(args.port))
    server_env = python_malloc_env(args.python_malloc, malloc_env(args.malloc, env))
    supervisor = Supervisor()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sockets = [listening_socket(args.bind, args.port) for _ in range(args.processes)]
    for sock in sockets:
        supervisor.start(
            server_command(args.server, sock.fileno(), args.app, args.ws, ws_deflate=args.ws_deflate),
            server_env,
            pass_fds=(sock.fileno(),),
        )
    for sock in sockets:
        sock.close()  # the servers hold their copies
    for _ in range(args.workers):
        supervisor.start([sys.executable, "manage.py", "procrastinate", "worker"], env)
    print(
        f"serve: {args.processes} {args.server} process(es) on {args.bind}:{args.port}, {args.workers} worker(s); "
        "SIGTERM or Ctrl-C stops them",
        flush=True,
    )
    status = supervisor.wait()
    supervisor.stop(args.grace)
    return status


if __name__ == "__main__":
    sys.exit(main())
