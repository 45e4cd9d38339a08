"""config.loop_lag: how far behind the event loop runs, seen while it is behind and forgotten
once it keeps up (the send gate sheds load on it, issue 9)."""

from __future__ import annotations

import asyncio
import time

from config.loop_lag import LoopLag


def test_no_running_loop_is_never_behind() -> None:
    assert LoopLag().seconds() == 0.0


async def test_a_blocked_loop_is_seen_at_once_and_forgotten_once_it_keeps_up() -> None:
    lag = LoopLag(interval=0.01, half_life=0.1)
    assert lag.seconds() == 0.0  # the first call starts watching this loop
    await asyncio.sleep(0.1)
    assert lag.seconds() < 0.05  # an idle loop (a few milliseconds of timer slack at most)

    time.sleep(0.3)  # a callback that holds the loop
    # Behind right now, before the watching task has run again: its wake-up is overdue.
    assert lag.seconds() >= 0.25
    await asyncio.sleep(0.02)  # the task wakes (late) and notes it
    assert lag.seconds() >= 0.15  # remembered: halved every 0.1 s

    await asyncio.sleep(1.0)  # ten half-lives of a loop keeping up
    assert lag.seconds() < 0.05


async def test_a_new_loop_is_watched_afresh() -> None:
    """A monitor started on another loop (a closed test loop, a restarted server) is not read:
    the first call on this loop starts watching this one, and sees it fall behind."""
    lag = LoopLag(interval=0.01)

    async def watch_there() -> None:
        lag.seconds()
        await asyncio.sleep(0.05)

    await asyncio.to_thread(asyncio.run, watch_there())
    assert lag.seconds() == 0.0
    await asyncio.sleep(0.05)
    time.sleep(0.2)
    assert lag.seconds() >= 0.15
