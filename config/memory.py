"""Give the memory of closed websockets back to the operating system.

A server process holding 10,000 sockets that then close (a deploy, a network blip, the evening)
should shrink again. Two things keep it large otherwise (measured with bench/idle_sockets.py,
figures in docs/deploy.md):
- the consumers of closed sockets sit in reference cycles (tasks, cancelled futures and their
  tracebacks) until a full garbage collection, which Python runs only after enough *new*
  allocations, so an idle process never frees them;
- glibc's malloc keeps freed memory in its heaps (one arena per thread that ever allocated:
  the event loop and every database thread) unless `malloc_trim` is called.

Every websocket consumer reports its end (`socket_ended()`, called by messaging.socket_task: a
wrapping middleware would keep a coroutine per open socket); after at least
`PARLEY_MEMORY_TRIM_AFTER_CLOSES` sockets ended, and no sooner than
`PARLEY_MEMORY_TRIM_INTERVAL` seconds after the previous pass, it runs one full collection on
the event loop and then `malloc_trim(0)` on a thread (ctypes releases the GIL, so sockets keep
being served meanwhile). A burst of closes therefore costs one pass, not one per socket.
`config.serve` also starts the servers with fewer malloc arenas (MALLOC_ARENA_MAX=2), or with
jemalloc (`--malloc jemalloc`), whose own decay returns freed pages without trimming.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger("parley.memory")


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None where there is none (musl, macOS, jemalloc preloaded:
    then the symbol is glibc's, which manages nothing, and trimming is pointless)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0) and None


class MemoryReturner:
    """Counts ended sockets and runs a throttled collect-and-trim pass after a burst of them."""

    def __init__(
        self,
        *,
        after_closes: int,
        interval: float,
        delay: float = 1.0,
        max_wait: float = 10.0,
        trim: Callable[[], None] | None = None,
    ) -> None:
        self.after_closes = after_closes
        self.interval = interval
        self.delay = delay
        self.max_wait = max_wait
        self.trim = trim
        self.closed = 0
        self.last_pass = 0.0
        self.pending: asyncio.Task[None] | None = None
        self.passes = 0

    def socket_ended(self) -> None:
        if self.after_closes <= 0:
            return
        self.closed += 1
        if self.closed >= self.after_closes and (self.pending is None or self.pending.done()):
            self.pending = asyncio.ensure_future(self._pass())

    async def _pass(self) -> None:
        # Wait for the burst to end (no close for `delay` seconds, at most `max_wait`), and for
        # `interval` since the previous pass: one pass per burst, however long it lasts.
        first = time.monotonic()
        while True:
            seen = self.closed
            await asyncio.sleep(max(self.delay, self.last_pass + self.interval - time.monotonic()))
            if self.closed == seen or time.monotonic() - first >= self.max_wait:
                break
        self.closed = 0
        self.last_pass = time.monotonic()
        started = time.perf_counter()
        collected = gc.collect()
        collect_seconds = time.perf_counter() - started
        if self.trim is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.trim)
        self.passes += 1
        logger.info(
            "returned memory after closed sockets: %d objects collected in %.0f ms, trim %s (%.0f ms in all)",
            collected,
            collect_seconds * 1000,
            "done" if self.trim is not None else "unavailable",
            (time.perf_counter() - started) * 1000,
        )


def configured_returner() -> MemoryReturner:
    return MemoryReturner(
        after_closes=int(getattr(settings, "PARLEY_MEMORY_TRIM_AFTER_CLOSES", 200)),
        interval=float(getattr(settings, "PARLEY_MEMORY_TRIM_INTERVAL", 10.0)),
        trim=_malloc_trim(),
    )


_process_returner: MemoryReturner | None = None


def process_returner() -> MemoryReturner:
    """The process's returner (one event loop per server process)."""
    global _process_returner
    if _process_returner is None:
        _process_returner = configured_returner()
    return _process_returner


def socket_ended() -> None:
    """A websocket of this process ended (on its event loop)."""
    process_returner().socket_ended()


class ReturnMemoryAfterCloses:
    """ASGI middleware counting the ends of any websocket application (for applications whose
    consumers do not call `socket_ended` themselves)."""

    def __init__(self, app: Any, returner: MemoryReturner | None = None) -> None:
        self.app = app
        self.returner = returner or configured_returner()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        try:
            return await self.app(scope, receive, send)
        finally:
            self.returner.socket_ended()
