"""CPU readings the benchmarks share: a process's, PostgreSQL's, the whole machine's (Linux).

On a shared 2-core machine the load generator and PostgreSQL compete with the server, and a
neighbour's steal time slows a run without any process here being busier; these readings,
taken over a run's window, tell a slow machine from a slow change."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc): a figure the machine's load does not
    distort the way wall-clock rates are."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_schedule(pid: int) -> tuple[float, float]:
    """(on a core, waiting for a core) seconds of a process's main thread so far (Linux
    /proc/<pid>/task/<pid>/schedstat): a server process's event loop runs there, and the
    time it was runnable but not running is what the machine's other processes cost it — every
    socket of the process waits that long too, whatever the server does."""
    fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy so far (all cores, every process), steal
    included: `_spent`'s busy and steal of one reading."""
    import psutil

    busy, steal, _total = _spent(psutil.cpu_times())
    return busy + steal


def postgres_cpu_seconds() -> float:
    """CPU used so far by the machine's PostgreSQL (all databases): its live processes' own, and
    the postmaster's reaped children's. Without those, a backend that ended inside a window (a
    connection closed by another program) took its CPU out of the later reading, and a window's
    difference came out negative (CI, 2026-12-04: "PostgreSQL -321% CPU")."""
    import psutil

    # Summed in the kernel's clock ticks, which is what it counts: as float seconds the same CPU
    # summed in another order (a backend's time moved from the live processes to the reaped
    # children) could read a rounding error lower (CI: 1111.9199999999992 < 1111.9199999999994).
    hertz = os.sysconf("SC_CLK_TCK")
    ticks = 0
    for p in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = p.info.get("cpu_times")
        if p.info.get("name") != "postgres" or times is None:
            continue
        spent = [times.user, times.system]
        try:
            postmaster = psutil.Process(p.info["ppid"]).name() != "postgres"
        except (psutil.Error, TypeError):
            postmaster = False
        if postmaster:  # its ended backends' CPU, counted once they are reaped
            spent += [times.children_user, times.children_system]
        ticks += sum(round(seconds * hertz) for seconds in spent)
    return ticks / hertz


def _spent(times: Any) -> tuple[float, float, float]:
    """(busy, steal, total) CPU-seconds in a psutil.cpu_times() reading or a difference of two.
    Busy is everything but idle, I/O wait and steal (time the hypervisor gave another guest);
    guest time is already counted in user on Linux, so it is left out of the total."""
    spent = {name: getattr(times, name) for name in times._fields}
    total = sum(spent.values()) - spent.get("guest", 0.0) - spent.get("guest_nice", 0.0)
    steal = spent.get("steal", 0.0)
    busy = total - spent.get("idle", 0.0) - spent.get("iowait", 0.0) - steal
    return busy, steal, total


def machine_shares(before: Any, after: Any) -> tuple[float, float]:
    """(busy, steal) as fractions of all cores' time between two psutil.cpu_times() readings."""
    difference = type(after)(*(getattr(after, name) - getattr(before, name) for name in after._fields))
    busy, steal, total = _spent(difference)
    if total <= 0:
        return 0.0, 0.0
    return busy / total, steal / total


# Steal above this share of the cores' time marks a run as measured on a machine a neighbour
# was taking: issue 9's 20 s runs at 1,000 msgs/s had 0-3% steal, one with 26% read as a
# collapse (customer -> viewing agent p99 11 s against 0.4 s in the runs around it).
STEAL_WARNING = 0.05


def steal_warning(steal: float) -> str | None:
    """A line to print under a run's figures when the hypervisor took a share of the cores that
    makes them incomparable with other runs; None below STEAL_WARNING."""
    if steal < STEAL_WARNING:
        return None
    return (
        f"warning: the hypervisor took {steal * 100:.0f}% of the cores' time (steal) during the load: "
        "this run's latency and throughput figures are not comparable with runs without it; run it again"
    )
