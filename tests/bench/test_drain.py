"""The inbox benchmark's drain after the load: it waits while answers keep coming, not a fixed
time, so an overloaded run's last answers are counted rather than called undelivered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.inbox_load import drain_answers


@dataclass
class Page:
    pending: list[int] = field(default_factory=list)


async def _answer(pages: list[Page], every: float) -> None:
    """Answer one pending send every `every` seconds, page by page, until none is left."""
    for page in pages:
        while page.pending:
            await asyncio.sleep(every)
            page.pending.pop()


def _drained(pages: list[Page], every: float | None, *, quiet: float, longest: float) -> float:
    async def run() -> float:
        answering = asyncio.ensure_future(_answer(pages, every)) if every is not None else None
        started = time.perf_counter()
        await drain_answers(pages, quiet=quiet, longest=longest, poll=0.01)
        took = time.perf_counter() - started
        if answering is not None:
            answering.cancel()
        return took

    return asyncio.run(run())


def test_nothing_pending_returns_at_once() -> None:
    assert _drained([Page(), Page()], None, quiet=30, longest=30) < 5


def test_waits_past_the_quiet_time_while_answers_keep_coming() -> None:
    # 40 answers 0.05 s apart: 2 s in all, each well within the 0.5 s quiet time of the last.
    pages = [Page(list(range(20))), Page(list(range(20)))]
    took = _drained(pages, 0.05, quiet=0.5, longest=30)
    assert not any(page.pending for page in pages)
    assert took >= 1.9


def test_gives_up_after_the_quiet_time_without_an_answer() -> None:
    pages = [Page([1, 2])]
    took = _drained(pages, None, quiet=0.2, longest=10)
    assert pages[0].pending == [1, 2]
    assert 0.2 <= took < 5


def test_gives_up_at_the_longest_wait_while_answers_still_come() -> None:
    pages = [Page(list(range(1000)))]
    took = _drained(pages, 0.02, quiet=1, longest=0.4)
    assert pages[0].pending  # still answering when the wait ended
    assert 0.4 <= took < 5
