"""Parley's ASGI application with a memory probe, for `bench/idle_sockets.py --trace`.

Serve it instead of `config.asgi:application`: tracemalloc starts once Django is imported,
and when $PARLEY_MEMORY_PROBE_DIR/<pid>-<n>.request appears the process writes
<pid>-<n>.pickle there: a tracemalloc snapshot plus a count of live objects by type (after a
full collection). A file, not a signal: the servers' event loops own signal handling. The bench diffs two
dumps (before the sockets opened, with them open) to show where each socket's memory goes.
Not for production: tracing costs CPU and roughly doubles the memory of every allocation.
"""

from __future__ import annotations

import collections
import gc
import itertools
import os
import pickle
import threading
import time
import tracemalloc
from pathlib import Path

from config.asgi import application

# Started after the import: only what serving allocates is traced, so snapshots stay small and
# quick (tracing Django's import made each dump take minutes).
tracemalloc.start(int(os.environ.get("PARLEY_MEMORY_PROBE_FRAMES", "8")))

__all__ = ["application"]

_dumps = itertools.count()
_directory = Path(os.environ.get("PARLEY_MEMORY_PROBE_DIR", "/tmp"))


def _dump(path: Path) -> None:
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        pickle.dump({"snapshot": snapshot, "types": types, "traced": tracemalloc.get_traced_memory()}, out)
    partial.rename(path)


def _watch() -> None:
    while True:
        n = next(_dumps)
        request = _directory / f"{os.getpid()}-{n}.request"
        while not request.exists():
            time.sleep(0.2)
        _dump(request.with_suffix(".pickle"))


threading.Thread(target=_watch, name="memory-probe", daemon=True).start()
