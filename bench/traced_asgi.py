"""Parley's ASGI application with a memory probe, for `bench/idle_sockets.py --trace`.

Serve it instead of `config.asgi:application`: tracemalloc starts before Django is imported,
and on SIGUSR1 the process writes, to $PARLEY_MEMORY_PROBE_DIR/<pid>-<n>.pickle, a tracemalloc
snapshot plus a count of live objects by type (after a full collection). The bench diffs two
dumps (before the sockets opened, with them open) to show where each socket's memory goes.
Not for production: tracing costs CPU and roughly doubles the memory of every allocation.
"""

from __future__ import annotations

import collections
import gc
import itertools
import os
import pickle
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

tracemalloc.start(int(os.environ.get("PARLEY_MEMORY_PROBE_FRAMES", "12")))

from config.asgi import application  # noqa: E402

__all__ = ["application"]

_dumps = itertools.count()


def _dump(signum: int, frame: FrameType | None) -> None:
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )
    directory = Path(os.environ.get("PARLEY_MEMORY_PROBE_DIR", "/tmp"))
    path = directory / f"{os.getpid()}-{next(_dumps)}.pickle"
    with path.open("wb") as out:
        pickle.dump({"snapshot": snapshot, "types": types, "traced": tracemalloc.get_traced_memory()}, out)


signal.signal(signal.SIGUSR1, _dump)
