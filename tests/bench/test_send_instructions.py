"""Smoke run of bench/send_instructions.py: the child writes its groups (without valgrind),
and under valgrind the parent prints instructions per group (never a timed assertion)."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.bench.test_inbox_load import run_bench


def test_the_child_writes_every_group_it_counts() -> None:
    out = run_bench("bench/send_instructions.py", "--child", "--no-count", "--size", "3", "--groups", "2")
    assert "6 messages written in 2 groups of 3" in out, out


def test_agents_replies_in_each_group_are_written_too() -> None:
    """`--replies`: a group's agent replies go into conversations whose window is open (none is
    refused: every send of the counted groups is written)."""
    out = run_bench(
        "bench/send_instructions.py", "--child", "--no-count", "--size", "4", "--groups", "3", "--replies", "2"
    )
    assert "12 messages written in 3 groups of 4" in out, out


def test_through_sockets_every_send_is_answered_as_written() -> None:
    """The customers' chat sockets (in process) send the groups; none is refused for its rate."""
    out = run_bench(
        "bench/send_instructions.py", "--child", "--no-count", "--through", "socket", "--size", "3", "--groups", "5"
    )
    assert "15 messages written in 5 groups of 3" in out and "refused" not in out, out


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_under_callgrind_it_prints_instructions_per_group_and_message() -> None:
    out = run_bench("bench/send_instructions.py", "--sizes", "2", "--groups", "1", timeout=600)
    found = re.search(r"groups of 2: ([\d.]+) M instructions per group, ([\d.]+) M per message \(1\.000x", out)
    assert found is not None, out
    per_group, per_message = map(float, found.groups())
    assert per_group > 0 and per_message == pytest.approx(per_group / 2, abs=0.01), out
