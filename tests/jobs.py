"""Run queued background jobs in a test, through a real Procrastinate worker on the real
database. Jobs are only visible to the worker once committed, so use the `live_db` fixture."""

from __future__ import annotations

import threading

from django.db import connections
from procrastinate.contrib.django import app


def run_queued_jobs(*, queues: list[str] | None = None) -> None:
    """Process every job that is due now, then return.

    The worker gets its own psycopg connector, exactly as `manage.py procrastinate worker`
    does (Django's connection hands JSON back undecoded, which the worker cannot use). It runs
    in a thread of its own: a browser test keeps Playwright's event loop running in this one,
    and the worker needs a loop of its own.
    """
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with app.replace_connector(app.connector.get_worker_connector()) as worker_app:  # type: ignore[attr-defined]
                worker_app.run_worker(wait=False, install_signal_handlers=False, listen_notify=False, queues=queues)
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name="procrastinate-test-worker")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
