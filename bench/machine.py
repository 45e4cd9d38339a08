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


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy (all cores, every process: /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU used so far by every process of the machine's PostgreSQL (all databases)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        times = p.info.get("cpu_times")
        if p.info.get("name") == "postgres" and times is not None:
            total += times.user + times.system
    return total


def machine_shares(before: Any, after: Any) -> tuple[float, float]:
    """(busy, steal) as fractions of all cores' time between two psutil.cpu_times() readings.
    Busy counts everything but idle and I/O wait; steal (time the hypervisor gave to another
    guest) is part of neither."""
    fields = after._fields
    spent = {name: getattr(after, name) - getattr(before, name) for name in fields}
    total = sum(spent.values())
    if total <= 0:
        return 0.0, 0.0
    idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
    steal = spent.get("steal", 0.0)
    # guest time is already counted in user on Linux.
    total -= spent.get("guest", 0.0) + spent.get("guest_nice", 0.0)
    return (total - idle - steal) / total, steal / total
