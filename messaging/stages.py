"""Where a websocket send's time goes on the server: a timestamp at each stage of every send,
written to a file per process (`bench/inbox_load.py --stages` sets PARLEY_STAGE_TRACE and prints
the table: `stage_report`). Off unless that variable is set: then each stage costs one module attribute read.

The stages of one send, in order:
- arrived: its frame was parsed and admitted (consumers.StreamConsumer.take_frame);
- worker: its socket's worker took it (frames of one socket are handled one at a time);
- rights: the socket's rights versions were read (one gathered MGET); a send's are read while
  it is validated and queued (consumers.StreamConsumer.send_while_rights_read: `overlapped`),
  so its `queued` follows `worker`, not `rights`;
- queued: checked and queued for its business's writer (group_commit.LiveGatherer.send);
- taken: a writer took it into a group (`size`: the group's sends);
- tokens: the group's send tokens were in (asked for as each send was queued:
  send_limits.PrefetchedTokens);
- written: the group's transaction committed, on a database thread;
- published: its events were handed to the channel layer;
- answered: its answer went out (`message.accepted`, or the send's own `message.created`).
A send refused when its frame arrived has only `arrived` (here: its frame taken by the consumer)
and `refused` (`refused_at_arrival`).

The process's garbage-collector passes are traced too (`gc`: the generation, `at`, `cpu`: the
collecting thread's CPU seconds, `wall`): a pass stops the event loop, and its cost per second
depends on the thresholds (config/memory.py, `tune_collector`).
"""

from __future__ import annotations

import atexit
import contextvars
import gc
import json
import os
import time
from typing import Any

PATH = os.environ.get("PARLEY_STAGE_TRACE", "")
ENABLED = bool(PATH)
STAGES = ("arrived", "worker", "rights", "queued", "taken", "tokens", "written", "published", "answered")
ARRIVED = "_parley_stage_arrived"  # the frame's arrival, carried in its payload to its worker
DUMP_EVERY = 0.5  # seconds: small appends, so a dump never stalls the loop for long

Trace = dict[str, float]

_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("parley_stage_trace", default=None)
_finished: list[Trace] = []
_dumped_at = 0.0


def arrived(payload: dict[str, Any]) -> None:
    payload[ARRIVED] = time.monotonic()


def begin(payload: dict[str, Any]) -> None:
    """On the socket's worker, as it takes a send frame."""
    started = payload.pop(ARRIVED, None)
    _current.set({"arrived": started, "worker": time.monotonic()} if started is not None else None)


def mark(stage: str) -> None:
    trace = _current.get()
    if trace is not None:
        trace[stage] = time.monotonic()


def current() -> Trace | None:
    return _current.get()


def mark_on(trace: Trace | None, stage: str, **figures: float) -> None:
    """A stage of a send handled elsewhere (its group's writer), by its trace."""
    if trace is not None:
        trace[stage] = time.monotonic()
        trace.update(figures)


def end() -> None:
    trace = _current.get()
    _current.set(None)
    if trace is None:
        return
    trace["answered"] = time.monotonic()
    _finish(trace)


def refused_at_arrival(started: float) -> None:
    """A send frame refused when it arrived (`overloaded`, `rate_limited`: never queued): from
    the consumer taking the frame (`started`) to its error frame handed to the socket — the
    server's part of an attempt's refusal, which the generator sees only with its own lag."""
    _finish({"arrived": started, "refused": time.monotonic()})


def _finish(trace: Trace) -> None:
    global _dumped_at
    _finished.append(trace)
    now = time.monotonic()
    if now - _dumped_at > DUMP_EVERY:
        _dumped_at = now
        dump()


_pass_started: tuple[float, float] | None = None


def collector_pass(phase: str, info: dict[str, int]) -> None:
    """A `gc.callbacks` entry: each collection pass, timed on the thread that runs it (any
    thread that allocates; one pass at a time, under the GIL)."""
    global _pass_started
    if phase == "start":
        _pass_started = (time.monotonic(), time.thread_time())
        return
    if _pass_started is None:
        return
    at, cpu = _pass_started
    _pass_started = None
    _finished.append(
        {"gc": info["generation"], "at": at, "cpu": time.thread_time() - cpu, "wall": time.monotonic() - at}
    )


def dump() -> None:
    """Append the traces finished since the last dump (one JSON line each): writing them all
    again every time blocked the event loop longer as a run went on, which the trace measures."""
    if not PATH or not _finished:
        return
    # A collector pass on another thread may append meanwhile: only what was read is removed.
    finished = _finished[:]
    del _finished[: len(finished)]
    lines = "".join(json.dumps(trace, separators=(",", ":")) + "\n" for trace in finished)
    with open(f"{PATH}.{os.getpid()}.jsonl", "a") as out:
        out.write(lines)


if ENABLED:
    atexit.register(dump)
    gc.callbacks.append(collector_pass)
