"""config/memory.py: after a burst of closed sockets, one collect-and-trim pass, throttled."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from config.memory import MemoryReturner, ReturnMemoryAfterCloses, _malloc_trim


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
