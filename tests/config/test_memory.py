"""config/memory.py: after a burst of closed sockets, one collect-and-trim pass, throttled."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import types
import weakref
from typing import Any

import pytest

from config.memory import (
    MemoryReturner,
    ReturnMemoryAfterCloses,
    _malloc_trim,
    glibc_stats,
    log_memory_state,
    obmalloc_stats,
)
from tests.conftest import ROOT


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_burst_of_closes_gives_one_pass_that_frees_cycles_and_trims() -> None:
    """Awaits the passes themselves rather than sleeping a guessed time, so a loaded machine
    (a slow executor thread for the trim) cannot make it flaky."""
    trims: list[int] = []

    async def scenario() -> tuple[int, bool, float]:
        returner = MemoryReturner(after_closes=3, interval=0.3, delay=0.05, trim=lambda: trims.append(1))
        garbage = Cycle()
        alive = weakref.ref(garbage)
        del garbage
        gc.disable()  # only the pass may collect it
        try:
            for _ in range(10):  # a burst: far more than after_closes, one pass
                returner.socket_ended()
            first = returner.pending
            assert first is not None
            await first
            freed = alive() is None
            assert returner.passes == 1
            first_pass_at = returner.last_pass
            for _ in range(3):  # the next burst: one more pass, no sooner than the interval
                returner.socket_ended()
            second = returner.pending
            assert second is not None and second is not first
            await second
            return returner.passes, freed, returner.last_pass - first_pass_at
        finally:
            gc.enable()

    passes, freed, gap = asyncio.run(scenario())
    assert freed
    assert passes == 2 and len(trims) == 2
    assert gap >= 0.3


def test_off_when_configured_so() -> None:
    async def scenario() -> int:
        returner = MemoryReturner(after_closes=0, interval=0.0, delay=0.0, trim=None)
        for _ in range(5):
            returner.socket_ended()
        await asyncio.sleep(0.05)
        return returner.passes

    assert asyncio.run(scenario()) == 0


def test_the_middleware_counts_sockets_that_fail_too() -> None:
    returner = MemoryReturner(after_closes=100, interval=10, trim=None)

    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("consumer crashed")

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await ReturnMemoryAfterCloses(failing_app, returner)({"type": "websocket"}, None, None)

    asyncio.run(scenario())
    assert returner.closed == 1


def test_glibc_trim_is_found_and_callable_here() -> None:
    trim = _malloc_trim()
    assert trim is not None  # Debian: glibc
    trim()


class Looked:
    pass


def test_the_pass_lets_go_of_attribute_names_the_type_cache_held() -> None:
    """A name built at run time ("on_" + a frame's type) and looked up through a type is kept by
    CPython's attribute cache after the lookup; the pass clears the cache, so a storm's worth of
    such strings do not keep their arenas."""
    name = "".join(["on_", "frame_type_", str(id(object()))])  # a fresh, uninterned string
    ours = sys.getrefcount(name)
    getattr(Looked, name, None)
    assert sys.getrefcount(name) > ours  # the cache keeps it (for the class and its metaclass)

    async def scenario() -> None:
        returner = MemoryReturner(after_closes=1, interval=0, delay=0.01, trim=None)
        returner.socket_ended()
        assert returner.pending is not None
        await returner.pending

    asyncio.run(scenario())
    assert sys.getrefcount(name) == ours


def test_the_debug_state_reads_the_allocators_and_names_new_modules(caplog: pytest.LogCaptureFixture) -> None:
    stats = obmalloc_stats()
    assert stats["arenas allocated current"] >= 1 and stats["bytes in allocated blocks"] > 0
    assert glibc_stats()["heap"] > 0  # Debian: glibc's malloc
    with caplog.at_level(logging.INFO, logger="parley.memory"):
        log_memory_state("first")
        sys.modules.setdefault("parley_probe_module_for_the_test", types.ModuleType("parley_probe_module_for_the_test"))
        try:
            log_memory_state("second")
        finally:
            del sys.modules["parley_probe_module_for_the_test"]
    first, second = (r.getMessage() for r in caplog.records if r.name == "parley.memory")
    assert "memory state first: RSS" in first and "arenas allocated current" in first
    assert "modules imported since the previous state: 1 parley_probe_module_for_the_test" in second


def server_env() -> dict[str, str]:
    """A server process's environment for `python -c "import config.asgi"`: production settings."""
    return dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY="x" * 60,
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )


def test_the_server_starts_with_the_socket_paths_imports_done() -> None:
    """config.asgi warms up what the first socket would import (the Redis channel layer and
    cache: channels_redis, msgpack, redis-py), before freezing start-up's objects."""
    code = (
        "import sys; import config.asgi; "
        "print(all(m in sys.modules for m in ('channels_redis.pubsub', 'msgpack', 'redis.asyncio', 'config.layers', "
        "'config.cache')))"
    )
    env = server_env()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(("configured", "expected"), [(None, 10_000), ("25000", 25_000)])
def test_the_server_collects_its_young_objects_at_the_configured_threshold(
    configured: str | None, expected: int
) -> None:
    """config.asgi sets the young generation's threshold (PARLEY_GC_YOUNG_THRESHOLD) after the
    freeze, and keeps CPython's thresholds of the older generations."""
    code = "import gc; default = gc.get_threshold(); import config.asgi; print(default, gc.get_threshold())"
    env = server_env()
    env.pop("PARLEY_GC_YOUNG_THRESHOLD", None)
    if configured is not None:
        env["PARLEY_GC_YOUNG_THRESHOLD"] = configured
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    default, tuned = done.stdout.strip().splitlines()[-1].split(") (")
    default_thresholds = tuple(int(x) for x in default.strip("()").split(", "))
    tuned_thresholds = tuple(int(x) for x in tuned.strip("()").split(", "))
    assert tuned_thresholds == (expected, *default_thresholds[1:])


def test_the_first_socket_logs_the_state_once_when_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import memory

    logged: list[str] = []
    monkeypatch.setattr(memory, "log_memory_state", lambda when="": logged.append(when))
    monkeypatch.setattr(memory, "_first_socket_logged", False)
    monkeypatch.delenv("PARLEY_MEMORY_DEBUG", raising=False)
    memory.socket_started()
    assert logged == []  # off unless asked for (and asked once per process)
    monkeypatch.setattr(memory, "_first_socket_logged", False)
    monkeypatch.setenv("PARLEY_MEMORY_DEBUG", "1")
    memory.socket_started()
    memory.socket_started()
    assert logged == ["before the first socket"]
