"""Database work from async code (websocket consumers, the tenant middleware) on a bounded pool
of threads.

Channels' `database_sync_to_async` runs every call of every socket on one thread per process
(thread_sensitive=True): one slow query holds up every socket's handler behind it, and persisted
throughput tops out near one thread's worth. Here each call runs on one of
`PARLEY_DB_THREADS` threads, enters its schema itself (the tenant is an argument, never
what an earlier call left on the thread) and closes or returns its connection the way
Channels does (`close_old_connections` before and after), so at most one connection per thread
is open: the pool size bounds the process's database connections. A thread that finds no more
work waiting gives its connection back (with psycopg's connection pool configured, closing
returns it to the pool), so an idle process holds none.

The call sees the caller's context (an active translation), but what it sets there stays on the
thread: asgiref's `sync_to_async` copies a thread's context changes back into the caller's, and
a websocket's context lives as long as its socket — every socket kept the per-context objects its
calls made (Django's cache instance of that context, asgiref's storage copies: ~1.5 KiB per
idle socket, issue 9). Nothing of Parley reads a context variable set on a database thread.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django_tenants.utils import schema_context

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def db_threads() -> int:
    return int(getattr(settings, "PARLEY_DB_THREADS", 8))


def executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            # A database thread whose query returned waits for the GIL while the event loop
            # holds it, up to the switch interval (5 ms by default) per round trip: a send's
            # dozen statements then cost ~60 ms of waiting on a busy process. A shorter
            # interval lets a thread back in sooner after each one.
            sys.setswitchinterval(float(getattr(settings, "PARLEY_GIL_SWITCH_INTERVAL", 0.0005)))
            _executor = ThreadPoolExecutor(max_workers=db_threads(), thread_name_prefix="parley-db")
        return _executor


def _isolated[T](schema_name: str, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    # In a copy of the context asgiref runs us in, so nothing is copied back to the caller's.
    return contextvars.copy_context().run(_run, schema_name, fn, kwargs)


def _run[T](schema_name: str, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    try:
        with schema_context(schema_name):
            return fn(**kwargs)
    finally:
        close_old_connections()
        if _idle():
            # Nothing else waiting: give the connection back rather than hold one per thread
            # (with psycopg's pool this returns it to the pool; without, it closes it).
            connections.close_all()


def _idle() -> bool:
    pool = _executor
    return pool is None or pool._work_queue.empty()


async def run_in_schema[T](schema_name: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(**kwargs)` inside `schema_name`, on the pool. The caller's context (e.g. an active
    translation) goes with it."""
    return await sync_to_async(_isolated, thread_sensitive=False, executor=executor())(schema_name, fn, kwargs)
