"""Serve Parley: the ASGI server and a Procrastinate worker together. Ctrl-C or SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

# How long Daphne and the worker get to finish what they are doing before they are killed.
SHUTDOWN_GRACE_SECONDS = 20


class Command(BaseCommand):
    help = "Run the ASGI server (Daphne) and a background-job worker until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(settings.PARLEY_PORT))
        parser.add_argument("--bind", default="127.0.0.1")

    def handle(self, *args: Any, port: int, bind: str, **options: Any) -> None:
        env = dict(os.environ, PARLEY_PORT=str(port))
        # The children get their own session, so a Ctrl-C in the terminal (or a SIGTERM to the
        # whole process group) reaches only this process, which then asks each child exactly
        # once. A second signal would make the worker abort its shutdown with a traceback, and
        # a child started with SIGINT ignored (a background shell) would never hear SIGINT at
        # all; SIGTERM is the one signal both Daphne and Procrastinate finish gracefully on.
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "config.asgi:application"],
                env=env,
                start_new_session=True,
            ),
            subprocess.Popen([sys.executable, "manage.py", "procrastinate", "worker"], env=env, start_new_session=True),
        ]
        stop_requested = False

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            nonlocal stop_requested
            stop_requested = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        url = f"{settings.PARLEY_SCHEME}://{settings.PARLEY_DOMAIN}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"Parley is running at {url} — Ctrl-C stops it."))
        if settings.DEBUG:
            # Nothing leaves the machine in development: codes and mails are read here.
            self.stdout.write(f"  Texts (SMS outbox)  {url}dev/outbox/")
            self.stdout.write(f"  Mails (mailbox)     {url}dev/mailbox/")
        self.stdout.flush()

        while not stop_requested and all(child.poll() is None for child in children):
            time.sleep(0.2)
        crashed = [child for child in children if child.poll() not in (None, 0)]
        if not stop_requested:
            self.stderr.write("A process stopped; shutting down the other.")
        else:
            self.stdout.write("Stopping Parley…")

        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"Process {child.pid} did not stop in time; killing it.")
                child.kill()
                child.wait()
        if crashed or not stop_requested:
            raise CommandError("Parley stopped because one of its processes exited.")
        self.stdout.write("Parley stopped.")
