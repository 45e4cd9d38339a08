"""`make demo` (manage.py rundemo) stops cleanly on SIGTERM, as on Ctrl-C: both processes
finish, nothing prints a traceback, the exit status is 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import conftest
from tests.conftest import ROOT, World, free_port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "rundemo exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("rundemo's server did not start")


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("how", "signum"),
    [("SIGTERM to rundemo", signal.SIGTERM), ("Ctrl-C: SIGINT to the process group", signal.SIGINT)],
)
def test_rundemo_stops_cleanly(world: World, how: str, signum: int) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=conftest.test_database_url(), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rundemo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        _wait_for_port(port, process)
        time.sleep(2)  # let the worker get going too
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = output.decode(errors="replace")
    assert process.returncode == 0, (how, text)
    assert "Traceback" not in text, (how, text)
    assert "Parley stopped." in text, (how, text)
    assert "did not stop in time" not in text, (how, text)  # both finished on their own
    assert f":{port}/" in text  # announces the port it really serves
    assert f":{port}/dev/mailbox/" in text and f":{port}/dev/outbox/" in text
    assert _port_closed(port)
