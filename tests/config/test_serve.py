"""`make serve`'s supervisor (config/serve.py): production settings, N processes on one port,
clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psutil
import pytest
from django.conf import settings

from tests import conftest
from tests.conftest import ROOT, free_port


def serve_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=conftest.test_database_url())
    env.pop("SECRET_KEY", None)
    return {**env, **extra}


def test_serve_refuses_to_start_without_a_secret_key() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "config.serve", "--port", str(free_port()), "--workers", "0"],
        cwd=ROOT,
        env=serve_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr


def test_serve_runs_processes_on_one_port_and_stops_cleanly_on_sigterm(live_db: Any) -> None:
    if not os.environ.get("REDIS_URL"):
        pytest.fail("config.serve needs REDIS_URL (the shared channel layer)")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "config.serve", "--port", str(port), "--processes", "2", "--workers", "1"],
        cwd=ROOT,
        env=serve_env(SECRET_KEY="s" * 50),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        children: list[psutil.Process] = []
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": settings.PARLEY_DOMAIN})
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = response.status
                break
            except OSError as error:
                status = getattr(error, "code", None)
                if status is not None:
                    break
                time.sleep(0.3)
        if status != 200:
            process.kill()
            pytest.fail(f"status {status}: {process.communicate()[0].decode()[-3000:]}")
        children = psutil.Process(process.pid).children()
        assert len(children) == 3  # two ASGI processes and one worker
        # Both servers listen on the one port, each on its own SO_REUSEPORT socket.
        listening = [
            c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "LISTEN"
        ]
        assert {c.pid for c in listening} == {c.pid for c in children[:2]}
        # The servers run with two malloc arenas (--malloc glibc, the default) and their Python
        # objects in malloc (--python-malloc malloc, the default), the worker as is.
        assert [c.environ().get("MALLOC_ARENA_MAX") for c in children] == ["2", "2", None]
        assert [c.environ().get("PYTHONMALLOC") for c in children] == ["malloc", "malloc", None]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        time.sleep(0.5)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_server_command_turns_websocket_compression_off_unless_asked() -> None:
    from config.serve import server_command

    assert server_command("uvicorn", 3)[-2:] == ["--ws-per-message-deflate", "false"]
    assert server_command("uvicorn", 3, ws_deflate=True)[-2:] == ["--ws-per-message-deflate", "true"]


def test_malloc_choices_set_the_servers_environment() -> None:
    from config.serve import JEMALLOC_PATHS, malloc_env

    assert malloc_env("glibc", {})["MALLOC_ARENA_MAX"] == "2"
    assert malloc_env("glibc", {"MALLOC_ARENA_MAX": "4"})["MALLOC_ARENA_MAX"] == "4"  # the operator's wins
    assert malloc_env("default", {}) == {}
    if any(os.path.exists(path) for path in JEMALLOC_PATHS):
        env = malloc_env("jemalloc", {})
        assert "libjemalloc.so.2" in env["LD_PRELOAD"] and "background_thread:true" in env["MALLOC_CONF"]


def test_python_objects_go_to_malloc_unless_pymalloc_is_asked_for() -> None:
    from config.serve import python_malloc_env

    assert "PYTHONMALLOC" not in python_malloc_env("pymalloc", {})
    assert python_malloc_env("malloc", {})["PYTHONMALLOC"] == "malloc"
    assert python_malloc_env("malloc", {"PYTHONMALLOC": "pymalloc_debug"})["PYTHONMALLOC"] == "pymalloc_debug"
    # And a server started so really allocates its objects with malloc.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys._debugmallocstats()"],
        env=python_malloc_env("malloc", dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "arenas allocated" not in done.stderr  # no pymalloc arenas to report
