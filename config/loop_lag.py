"""How far behind this process's event loop runs: the signal to shed load on before it queues.

The send path's own limits (messaging.group_commit's wait per business, the process's sends in
flight) see the writer only. When the process is short of CPU it is the event loop that falls
behind: every frame — a send, its refusal, a delivery — waits its turn, and at 700 msgs/s on two
processes an attempt waited 0.3–0.8 s just to hear it was refused (issue 9). Refusing sends while
the loop is behind gives the CPU back to what was accepted, and answers the refused at once.

A small task sleeps `interval` and notes how late it woke. `seconds()` is the larger of the
latest lateness, halved every `half_life` since (a stall is seen at once and forgotten within a
few tenths of a second once the loop keeps up), and how overdue the task's wake-up is now (a
loop that is behind right now, before the task has run again). Node's toobusy and Envoy's
overload manager shed load on the same signal. One monitor per process; it follows the running
loop (a new loop — a test's — starts it again).
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopLag:
    def __init__(self, *, interval: float = 0.01, half_life: float = 0.1) -> None:
        self.interval = interval
        self.half_life = half_life
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._lag = 0.0  # the latest lateness seen, at _seen
        self._seen = 0.0
        self._due = 0.0  # when the task should wake next

    def seconds(self) -> float:
        """How far behind the running loop is (starts watching it on the first call); 0 with no
        loop running (nothing to be behind)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0.0
        if self._loop is not loop or self._task is None or self._task.done():
            self._watch(loop)
            return 0.0
        now = loop.time()
        decayed = self._lag * 0.5 ** ((now - self._seen) / self.half_life)
        return max(decayed, now - self._due)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._loop = loop
        self._lag, self._seen, self._due = 0.0, loop.time(), loop.time() + self.interval
        self._task = loop.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self._due = loop.time() + self.interval
                await asyncio.sleep(self.interval)
                now = loop.time()
                late = max(0.0, now - self._due)
                decayed = self._lag * 0.5 ** ((now - self._seen) / self.half_life)
                self._lag, self._seen = max(late, decayed), now


loop_lag = LoopLag()
