"""Smoke runs of the benchmarks: they run end to end and print their figures. Never timed
assertions (the figures go to docs/performance.md and the README's goal table); only that
nothing accepted was lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bench(*args: str, timeout: int = 300) -> str:
    if not os.environ.get("REDIS_URL"):
        pytest.fail("the benchmarks serve with the Redis channel layer: set REDIS_URL")
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_inbox_load_compare_runs_all_three_servers_and_loses_nothing() -> None:
    out = run_bench(
        "bench/inbox_load.py",
        "--compare",
        "--customers", "6",
        "--agents", "2",
        "--rate", "4",
        "--reply-rate", "1",
        "--duration", "3",
        "--drain", "5",
        "--past-customers", "40",
        "--stages",
        "--generator-nice", "5",
    )  # fmt: skip
    assert "set-up: 40 past conversations in" in out
    # Parley's servers timed every stage of its customers' sends (messaging.stages).
    parley = out.split("== parley:")[1].split("\n== ")[0]
    traced = re.search(r"stages \(server side, (\d+) sends\)", parley)
    assert traced and int(traced.group(1)) > 0, parley
    for stage in ("worker", "rights", "queued", "taken", "tokens", "written", "published", "answered", "whole"):
        assert re.search(rf"^ +{stage}: +[\d.]+ +[\d.]+ +[\d.]+ +\(n=\d+\)$", parley, re.M), (stage, parley)
    for target in ("parley", "limit", "tutorial"):
        section = out.split(f"== {target}:")[1].split("\n== ")[0]
        assert re.search(r"customer messages/s: offered +\d", section), section
        assert "customer → viewing agent: p50" in section, section
        assert re.search(r"server: +\d+% CPU .* RSS peak +\d+ MiB", section), section
        assert re.search(r"generator: +\d+% CPU", section), section
        # The server processes' loop threads were read (a failed read would leave them 0% on a
        # core, 100% idle), and the three shares cover the window.
        shares = re.search(
            r"server loops: on a core +([\d.]+)% +waiting for a core +([\d.]+)% +idle +([\d.]+)%", section
        )
        assert shares and float(shares.group(1)) > 0, section
        assert 99 <= sum(map(float, shares.groups())) <= 101, section
        # The generator ran at the nice value asked for (lowering one's own priority needs no
        # privilege), reported with its figures.
        assert re.search(r"generator: .* nice 5$", section, re.M), section
        assert re.search(r"machine: +\d+% busy of \d+ cores +steal [\d.]+% +PostgreSQL \d+% CPU", section), section
        sent = int(re.search(r"lost: sent (\d+)", section).group(1))  # type: ignore[union-attr]
        assert sent > 0, section
        assert "accepted-but-not-persisted 0 " in section, section
        assert "persisted-but-not-received-by-customer 0 " in section, section
    # Every send Parley's clients wrote was answered (accepted, or refused and then accepted):
    # a server that stopped reading a socket left its sends unanswered and lost nothing.
    assert re.search(r"lost: sent \d+ .* unanswered at end 0 ", parley), parley
    assert "Parley as a ratio of each" in out
