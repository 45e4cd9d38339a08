"""Serve Parley: the ASGI server and a Procrastinate worker together. Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the ASGI server (Daphne) and a background-job worker until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(settings.PARLEY_PORT))
        parser.add_argument("--bind", default="127.0.0.1")

    def handle(self, *args: Any, port: int, bind: str, **options: Any) -> None:
        env = dict(os.environ, PARLEY_PORT=str(port))
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "config.asgi:application"], env=env
        )
        worker = subprocess.Popen([sys.executable, "manage.py", "procrastinate", "worker"], env=env)
        children = [server, worker]
        self.stdout.write(self.style.SUCCESS(f"Parley is running at {settings.PARLEY_PUBLIC_URL}/ — Ctrl-C stops it."))

        def stop(*_args: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            self.stderr.write("A process stopped; shutting down the other.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
