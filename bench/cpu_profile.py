"""On-CPU profiles of a server process: Linux perf's samples, with Python's own frames.

py-spy samples wall-clock time: a thread is counted wherever it is when the sampler looks, on a
core or not. With `--gil` it is the thread holding the GIL, and a thread can hold it while the
scheduler has put it off its core — a write to a loopback socket wakes the reader on the other
end (Redis, PostgreSQL, a client), which the kernel often runs at once in the writer's place.
On the inbox load of issue 9 (400–800 msgs/s, 2 cores), py-spy `--gil` put 7.8% of a server's
samples in the Redis connection's write and 5.4% in the websocket frame's write; perf's
cpu-clock samples, which count only time on a core, put 2.5% in the first and 13.5% in the
whole kernel, every system call of the process together. perf answers "what would be cheaper
if this code did less"; py-spy `--gil`, "what holds the event loop up".

How: the server runs with PYTHON_PERF_JIT_SUPPORT=1 (Python 3.13): each Python function runs
through a small trampoline that CPython writes, with its unwinding information, to a jitdump
file; perf records cpu-clock samples with their stacks (`--call-graph dwarf`), `perf inject
--jit` names the trampolines `py::function:file`, and `collapse` keeps the Python frames of each
stack, root first, and on top the native function the sample was in (the interpreter itself,
malloc, the kernel…), as py-spy's collapsed stacks are written, so `inbox_load.top_frames`
reads both. Needs Debian's `linux-perf` and a kernel that lets perf sample (run as root).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# What the profiled process needs in its environment (set before it starts).
ENV = {"PYTHON_PERF_JIT_SUPPORT": "1"}
SAMPLES_PER_SECOND = 199
# Bytes of stack copied per sample for perf's unwinder: a server's deepest stacks (a send group
# in its greenlet, under the event loop and uvicorn) need ~20 KB.
STACK_BYTES = 32768

# A frame's file is named below the first of these in its path (the project's own files below
# its root): computed once, not per frame of every sample.
_PATH_MARKERS = ("/site-packages/", "/lib/python3.", f"{Path(__file__).resolve().parent.parent}/")
_FRAME = re.compile(r"^\s*[0-9a-f]+ (?P<symbol>.+?) \((?P<dso>[^()]*)\)$")
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


def unavailable() -> str | None:
    """Why an on-CPU profile cannot be taken here, or None if it can."""
    if sys.version_info < (3, 13):
        return "needs Python 3.13 (its perf_jit support names Python's frames in perf's stacks)"
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: apt-get install linux-perf)"
    probe = subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"perf cannot sample on this machine: {probe.stderr.strip()[-300:]}"
    return None


def start(pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes]:
    """perf on `pid` for `seconds`, its samples into `raw`."""
    return subprocess.Popen(
        [
            "perf",
            "record",
            "--no-buildid-cache",  # nothing left in ~/.debug
            "--clockid",
            "monotonic",  # the jitdump's clock: perf inject matches its records by time
            "-e",
            "cpu-clock",
            "-F",
            str(SAMPLES_PER_SECOND),
            "--call-graph",
            f"dwarf,{STACK_BYTES}",
            "-p",
            str(pid),
            "-o",
            str(raw),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish(raw: Path, out: Path, pids: Iterable[int]) -> str | None:
    """Name the Python frames of `raw`'s samples and write them to `out` as collapsed stacks;
    the reason if that failed. Call it once the processes (`pids`) have ended: CPython buffers
    its jitdump, and the last functions it compiled reach the file at exit. Removes what the
    profile left: `raw`, the processes' jitdumps and the per-function files `perf inject` made
    of them."""
    injected = raw.with_suffix(".jit")
    try:
        subprocess.run(
            ["perf", "inject", "--jit", "-i", str(raw), "-o", str(injected)], check=True, capture_output=True, text=True
        )
        script = subprocess.run(["perf", "script", "-i", str(injected)], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        return f"perf failed: {error.stderr[-300:] if error.stderr else error}"
    finally:
        raw.unlink(missing_ok=True)
        injected.unlink(missing_ok=True)
        for pid in pids:
            # CPython writes its jitdump where perf looks, /tmp; perf inject an ELF file per
            # function beside it (thousands for a server).
            Path(f"/tmp/jit-{pid}.dump").unlink(missing_ok=True)
            for jitted in Path("/tmp").glob(f"jitted-{pid}-*.so"):
                jitted.unlink(missing_ok=True)
    stacks = collapse(script.stdout.splitlines())
    out.write_text("".join(f"{stack} {n}\n" for stack, n in stacks.most_common()))
    return None


def collapse(lines: Iterable[str]) -> Counter[str]:
    """perf script's samples (a header line, then one frame per line, innermost first, then a
    blank line) → `frame;frame;… count`, root first: the Python frames as `function (file)`
    and on top the native function the sample was in, as `[function (library)]` (`[kernel]`
    for the kernel's). Frames perf inlined are skipped: the function they were inlined into
    names the place."""
    stacks: Counter[str] = Counter()
    frames: list[tuple[str, str]] = []
    in_sample = False
    for line in [*lines, ""]:
        if not line.strip():
            if in_sample and frames:
                stacks[_stack(frames)] += 1
            frames, in_sample = [], False
            continue
        if not line[0].isspace():  # a sample's header: command, pid, time, event
            frames, in_sample = [], True
            continue
        found = _FRAME.match(line)
        if found is not None and found["dso"] != "inlined":
            frames.append((_OFFSET.sub("", found["symbol"]), found["dso"]))
    return stacks


def _stack(frames: list[tuple[str, str]]) -> str:
    python = [_python_frame(symbol) for symbol, _dso in frames if symbol.startswith("py::")]
    symbol, dso = frames[0]
    if symbol.startswith("py::"):
        top = "[python]"
    elif "kernel" in dso:
        top = "[kernel]"
    else:
        top = f"[{symbol} ({dso.rsplit('/', 1)[-1]})]"
    return ";".join([*reversed(python), top])


def _python_frame(symbol: str) -> str:
    """`py::Class.method:/path/to/file.py` → `Class.method (file.py path below the project or
    site-packages)`."""
    name, _, path = symbol[len("py::") :].partition(":")
    for marker in _PATH_MARKERS:
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = path.split("/", 1)[-1]  # 13/asyncio/tasks.py -> asyncio/tasks.py
            break
    return f"{name} ({path})"
