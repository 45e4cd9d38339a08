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

Collecting and trimming was not enough with CPython's own allocator (pymalloc): it frees a 1 MiB
arena only when every object in it is gone, and a few long-lived objects made during a connect
storm (lazily imported modules, names kept by the attribute cache, connections and tasks made
as the storm ramped up) kept most of the storm's arenas: 10,000 closed sockets gave back 20 of
117 MiB. So `config.serve` runs the servers with PYTHONMALLOC=malloc (`--python-malloc`), where
the trim returns free pages one by one (105 of 128 MiB back); and, for either allocator, the
socket path's imports are made at start-up (`warm_up`) and the pass clears the attribute cache.
PARLEY_MEMORY_DEBUG=1 logs the allocators' state (`log_memory_state`) to find the next such
object. Figures: docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import tempfile
import time
from collections import Counter
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
        debug: bool = False,
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
        self.debug = debug

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
        # CPython's attribute cache (4,096 entries) holds a reference to the name of every
        # attribute looked up through a type, and names built per message ("on_" + type in
        # getattr, Channels' handler names, Django's "as_" + vendor) are fresh strings: a few
        # thousand of them made during a connect storm, one per pool, keep whole arenas. Cleared,
        # the cache refills with the names in use on the next lookups.
        sys._clear_type_cache()
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
        if self.debug:
            log_memory_state()


OBMALLOC_SUMMARY = (
    "# arenas allocated total",
    "# arenas reclaimed",
    "# arenas highwater mark",
    "# arenas allocated current",
    "bytes in allocated blocks",
    "bytes in available blocks",
    "unused pools",
    "bytes lost to pool headers",
    "bytes lost to quantization",
    "bytes lost to arena alignment",
    "Total",
)


def obmalloc_stats() -> dict[str, int]:
    """The summary lines of `sys._debugmallocstats()` (CPython's small-object allocator: arenas
    allocated vs bytes in live blocks), which writes to the C stderr: read back from a file."""
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition("=")
        value = value.strip().replace(",", "")
        key = next((key for key in OBMALLOC_SUMMARY if key in name), None)
        if key is not None and key.lstrip("# ") not in stats and value.isdigit():
            stats[key.lstrip("# ")] = int(value)
    return stats


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
        + ("uordblks", "fordblks", "keepcost")
    ]


def glibc_stats() -> dict[str, int]:
    """glibc's mallinfo2 (all arenas): bytes in its heaps, in use, free in them, and mmapped
    blocks; empty where there is no glibc malloc behind `malloc` (jemalloc preloaded, musl)."""
    name = ctypes.util.find_library("c")
    try:
        mallinfo2 = ctypes.CDLL(name).mallinfo2 if name else None
    except (OSError, AttributeError):
        mallinfo2 = None
    if mallinfo2 is None:
        return {}
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return {"heap": info.arena, "in use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


_modules_seen: frozenset[str] = frozenset()


def debug_enabled() -> bool:
    return os.environ.get("PARLEY_MEMORY_DEBUG", "") not in ("", "0")


def log_memory_state(when: str = "after a pass", top: int = 12) -> None:
    """PARLEY_MEMORY_DEBUG=1: what the process holds (RSS, CPython's arenas, glibc's heap, the
    live objects made since start-up by type, and how many 1 MiB address regions each type's
    objects are spread over: a few survivors spread over many arenas keep them all), to find
    what pins memory. Called at start-up (config.asgi), before the first socket and after each
    pass."""
    global _modules_seen
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        rss = 0
    stats = obmalloc_stats()
    heap = glibc_stats()
    objects = gc.get_objects()  # the frozen start-up objects are not in it
    types: Counter[str] = Counter()
    regions: dict[str, set[int]] = {}
    for o in objects:
        name = type(o).__qualname__
        types[name] += 1
        regions.setdefault(name, set()).add(id(o) >> 20)
    spread = sorted(regions.items(), key=lambda item: -len(item[1]))
    modules = frozenset(sys.modules)
    new_modules = sorted(modules - _modules_seen) if _modules_seen else []
    _modules_seen = modules
    logger.info(
        "memory state %s: RSS %.1f MiB; obmalloc %s; glibc %s; live objects since start-up %d, by type: %s; "
        "1 MiB regions they touch: %d in all, by type: %s; modules imported since the previous state: %d %s",
        when,
        rss / 2**20,
        ", ".join(f"{name} {value:,}" for name, value in stats.items()),
        ", ".join(f"{name} {value / 2**20:.1f} MiB" for name, value in heap.items()) or "n/a",
        len(objects),
        ", ".join(f"{name} {count}" for name, count in types.most_common(top)),
        len(set().union(*regions.values())),
        ", ".join(f"{name} {len(where)}" for name, where in spread[:top]),
        len(new_modules),
        " ".join(new_modules),
    )


def configured_returner() -> MemoryReturner:
    return MemoryReturner(
        after_closes=int(getattr(settings, "PARLEY_MEMORY_TRIM_AFTER_CLOSES", 200)),
        interval=float(getattr(settings, "PARLEY_MEMORY_TRIM_INTERVAL", 10.0)),
        trim=_malloc_trim(),
        debug=debug_enabled(),
    )


_process_returner: MemoryReturner | None = None


def process_returner() -> MemoryReturner:
    """The process's returner (one event loop per server process)."""
    global _process_returner
    if _process_returner is None:
        _process_returner = configured_returner()
    return _process_returner


def warm_up() -> None:
    """At start-up (config.asgi, before `gc.freeze()`), make what the first sockets would
    otherwise make in the middle of a connect storm: the channel layer and the Redis cache,
    whose imports (channels_redis, msgpack, redis-py: 71 modules, ~2 MiB, measured with
    PARLEY_MEMORY_DEBUG=1) then landed among the sockets' objects and, living as long as the
    process, kept the arenas they fell in after every socket had closed."""
    from channels.layers import get_channel_layer
    from django.core.cache import caches

    get_channel_layer()
    caches["default"]


_first_socket_logged = False


def tune_collector() -> None:
    """The server's young-generation threshold (PARLEY_GC_YOUNG_THRESHOLD), called at start-up
    after `gc.freeze()`. Under load CPython's 2,000 is reached by the objects a burst of frames
    has alive at once — which reference counting frees a moment later anyway — so a collection
    ran 10–15 times a second per process at 1,000 msgs/s, each walking a few thousand live
    coroutines, futures and frames (~1 µs an object on the benchmark machine), every tenth one
    the middle generation too: 49–56 ms of CPU a second per process, measured with
    `gc.callbacks` (issue 9, docs/performance.md, session 36). At 10,000: 24–31 ms, 1.5–1.8
    young passes a second, the longest pass 61–87 ms instead of 141–189. The older generations' thresholds are
    CPython's."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(int(getattr(settings, "PARLEY_GC_YOUNG_THRESHOLD", 10_000)), middle, old)


def socket_started() -> None:
    """A websocket of this process is being served: with PARLEY_MEMORY_DEBUG=1 the state before
    the first one (what the pass's figures are compared with)."""
    global _first_socket_logged
    if not _first_socket_logged:
        _first_socket_logged = True
        if debug_enabled():
            log_memory_state("before the first socket")


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
