"""`bench/inbox_load.py` prints (through `bench/machine.py`) the whole machine's share over the load window beside the
server's and the generator's CPU: on a shared 2-core machine a run can be slow because a
neighbour took the cores (steal) while no process here was busier."""

from __future__ import annotations

from collections import namedtuple

from bench.machine import machine_shares

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_busy_and_steal_are_shares_of_all_cores_time() -> None:
    before = Times(100, 0, 50, 1000, 10, 0, 5, 20, 0, 0)
    # 10 s of two cores: 8 user, 2 system, 6 idle, 1 iowait, 1 softirq, 2 steal.
    after = Times(108, 0, 52, 1006, 11, 0, 6, 22, 0, 0)
    busy, steal = machine_shares(before, after)
    assert busy == 11 / 20
    assert steal == 2 / 20


def test_guest_time_is_not_counted_twice() -> None:
    # Linux counts a guest's time in user as well.
    before = Times(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    after = Times(4, 0, 0, 4, 0, 0, 0, 0, 2, 0)
    assert machine_shares(before, after) == (0.5, 0.0)


def test_no_time_passed_reads_as_nothing() -> None:
    same = Times(1, 1, 1, 1, 1, 1, 1, 1, 0, 0)
    assert machine_shares(same, same) == (0.0, 0.0)


def test_postgres_cpu_keeps_what_an_ended_backend_spent() -> None:
    """A backend that ends inside a window keeps its CPU in the reading (the postmaster's reaped
    children), so a window's PostgreSQL CPU is never negative."""
    import os
    import time

    import psycopg

    from bench.machine import postgres_cpu_seconds

    url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()  # ~0.3 s of CPU
        spent_by_then = postgres_cpu_seconds()
    deadline = time.monotonic() + 5
    after = postgres_cpu_seconds()
    while after < spent_by_then and time.monotonic() < deadline:  # until the postmaster reaped it
        time.sleep(0.05)
        after = postgres_cpu_seconds()
    assert after >= spent_by_then


def test_a_run_with_steal_says_its_figures_are_not_comparable() -> None:
    from bench.machine import STEAL_WARNING, steal_warning

    assert steal_warning(0.0) is None
    assert steal_warning(STEAL_WARNING / 2) is None
    warning = steal_warning(0.264)
    assert warning is not None and "26%" in warning and "not comparable" in warning
