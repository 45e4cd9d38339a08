"""Database work from async code (websocket consumers, the tenant middleware) on a bounded pool
of threads.

Channels' `database_sync_to_async` runs every call of every socket on one thread per process
(thread_sensitive=True): one slow query holds up every socket's handler behind it, and persisted
throughput tops out near one thread's worth. Here each call runs on one of
`PARLEY_DB_THREADS` threads and enters its schema itself (the tenant is an argument, never
what an earlier call left on the thread). At most one connection per thread is open, so the
pool size bounds the process's database connections.

A thread keeps its connection while calls keep coming and gives it back (to psycopg's pool) once
none came for `PARLEY_DB_KEEP_SECONDS`, so an idle process holds none. Borrowing it for every
call, as Channels does (`close_old_connections` before and after), cost three statements per
call besides the call's own — the pool's health check, `SET search_path`, the pool's `RESET` on
return — and each of them a wait for the GIL and a CPU on a busy process: a websocket send group
of two messages took ~40 ms on its thread for ~5 ms of CPU (issue 9, 200 msgs/s). A kept
connection that saw an error is checked before the next call, one left in a transaction (never
by Parley's code) or older than the pool's `max_lifetime` is closed, and one whose session
already has the call's `search_path` skips the `SET`.

The call sees the caller's context (an active translation), but what it sets there stays on the
thread: asgiref's `sync_to_async` copies a thread's context changes back into the caller's, and
a websocket's context lives as long as its socket — every socket kept the per-context objects its
calls made (Django's cache instance of that context, asgiref's storage copies: ~1.5 KiB per
idle socket, issue 9). Nothing of Parley reads a context variable set on a database thread.
"""

from __future__ import annotations

import atexit
import contextvars
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django_tenants.utils import schema_context

from config.database import POOL_MAX_LIFETIME
from config.tunables import tunable

_lock = threading.Lock()
_executor: DatabaseThreads | None = None


def db_threads() -> int:
    return int(tunable("PARLEY_DB_THREADS", 8))


def keep_seconds() -> float:
    return float(tunable("PARLEY_DB_KEEP_SECONDS", 1.0))


_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Worker:
    """One database thread's mailbox: a call handed to it while it waits (or None: stop)."""

    __slots__ = ("inbox",)

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()


class DatabaseThreads(Executor):
    """Up to `max_workers` threads, like `ThreadPoolExecutor`, but:
    - a call goes to the thread that went idle last (a stack, not a shared queue), so a steady
      load runs on the fewest threads and connections — warm ones, with their prepared
      statements and their session's search_path — and the others stay idle. From one queue
      every call woke the thread that had waited longest: a process's sends and acks rotated
      through all eight threads and their eight backends;
    - a thread that holds a database connection after a call (`holds`) waits at most `keep`
      seconds for the next one and then gives its connections back (`release`), so a busy
      thread keeps its connection and an idle one holds none.
    Calls that find every thread busy wait in order of arrival (`_backlog`)."""

    def __init__(
        self, max_workers: int, *, keep: float, holds: Callable[[], bool], release: Callable[[], None]
    ) -> None:
        self._max_workers, self._keep, self._holds, self._release = max_workers, keep, holds, release
        self._threads: list[threading.Thread] = []
        self._idle: list[_Worker] = []  # the last to go idle on top
        self._workers: list[_Worker] = []
        self._backlog: deque[_Call] = deque()
        self._state = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        call = (lambda: fn(*args, **kwargs)) if kwargs else fn
        item: _Call = (future, call, () if kwargs else args)
        with self._state:
            if self._closed:
                raise RuntimeError("the database threads are shut down")
            if self._idle:
                self._idle.pop().inbox.put(item)
            elif len(self._threads) < self._max_workers:
                worker = _Worker()
                thread = threading.Thread(
                    target=self._work, args=(worker, item), name=f"parley-db_{len(self._threads)}", daemon=True
                )
                self._workers.append(worker)
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog.append(item)
        return future

    def _work(self, worker: _Worker, first: _Call) -> None:
        item: _Call | None = first
        while True:
            if item is None:
                self._release()
                return
            future, call, args = item
            if future.set_running_or_notify_cancel():
                try:
                    result = call(*args)
                except BaseException as error:  # handed to the caller, as ThreadPoolExecutor does
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del item, future, call, args
            holding = self._holds()
            with self._state:
                item = self._backlog.popleft() if self._backlog else None
                if item is not None:
                    continue
                self._idle.append(worker)
            while True:
                try:
                    item = worker.inbox.get(timeout=self._keep if holding else None)
                    break
                except queue.Empty:
                    # Still on the idle stack: a call handed over meanwhile waits in the inbox.
                    self._release()
                    holding = False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
            # After the backlog: a busy thread takes what is queued before it reads its stop.
            for worker in self._workers:
                worker.inbox.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def executor() -> DatabaseThreads:
    global _executor
    with _lock:
        if _executor is None:
            # A database thread whose query returned waits for the GIL while the event loop
            # holds it, up to the switch interval (5 ms by default) per round trip: a send's
            # dozen statements then cost ~60 ms of waiting on a busy process. A shorter
            # interval lets a thread back in sooner after each one.
            sys.setswitchinterval(float(getattr(settings, "PARLEY_GIL_SWITCH_INTERVAL", 0.0005)))
            _executor = DatabaseThreads(
                db_threads(), keep=keep_seconds(), holds=holds_connections, release=release_connections
            )
            # Queued calls finish (a send group commits) before the interpreter goes.
            atexit.register(_executor.shutdown)
        return _executor


def _forget_in_child() -> None:
    """A forked child (the migration executor's workers) has none of the parent's threads: the
    first call there starts threads of its own instead of queueing for threads that are gone."""
    global _executor, _lock
    _executor, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _isolated[T](schema_name: str, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    # In a copy of the context asgiref runs us in, so nothing is copied back to the caller's.
    return contextvars.copy_context().run(_run, schema_name, fn, kwargs)


def _run[T](schema_name: str, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    connection: Any = connections["default"]  # django-tenants' wrapper (its search_path cache)
    _settle(connection)
    with schema_context(schema_name):
        raw = connection.connection
        # django-tenants forgets the session's search_path whenever a schema is entered or left
        # (`set_tenant`); a kept connection's session still has its previous call's.
        if raw is not None and getattr(raw, "parley_search_path", None) == connection._get_cursor_search_paths():
            connection.search_path_set_schemas = raw.parley_search_path
        try:
            return fn(**kwargs)
        finally:
            raw = connection.connection
            if raw is not None:
                # Set and committed (a SET rolled back with its transaction is forgotten by
                # django-tenants: None), or unknown.
                settled = connection.search_path_set_schemas and not connection.in_atomic_block
                raw.parley_search_path = list(connection.search_path_set_schemas) if settled else None


def _settle(connection: Any) -> None:
    """Before a call: keep this thread's connection if it is fit for the next one."""
    if connection.connection is None:
        return
    # With CONN_MAX_AGE=0 (the pool's setting) `close_at` is the moment it was borrowed.
    age = time.monotonic() - (connection.close_at or 0.0)
    unfit = connection.in_atomic_block or connection.get_autocommit() is not True or age > POOL_MAX_LIFETIME
    if not unfit and connection.errors_occurred:
        unfit = not connection.is_usable()
        connection.errors_occurred = False
    if unfit:
        connection.close()


def holds_connections() -> bool:
    """Whether this thread has a database connection open."""
    return any(connection.connection is not None for connection in connections.all(initialized_only=True))


def release_connections() -> None:
    """On a database thread with nothing to do: give its connections back (to the pool, which
    resets them)."""
    connections.close_all()


async def run_in_schema[T](schema_name: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(**kwargs)` inside `schema_name`, on the pool. The caller's context (e.g. an active
    translation) goes with it."""
    # asgiref types the executor as a ThreadPoolExecutor; it only hands it to run_in_executor.
    # Still asgiref's sync_to_async (not run_in_executor directly): its thread handler tells an
    # async_to_sync inside the call which loop is the server's.
    pool = cast(ThreadPoolExecutor, executor())
    return await sync_to_async(_isolated, thread_sensitive=False, executor=pool)(schema_name, fn, kwargs)
