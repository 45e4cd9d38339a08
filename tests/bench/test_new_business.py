"""Smoke run of bench/new_business.py: it runs end to end, prints its figures, and a new
business's tables are analyzed as its messages pass the marks (never a timed assertion)."""

from __future__ import annotations

from tests.bench.test_inbox_load import run_bench


def test_new_business_bench_runs_and_analyzes_the_tables_as_they_grow() -> None:
    out = run_bench(
        "bench/new_business.py", "--messages", "1200", "--group-size", "20", "--seconds", "240", "--every", "1"
    )  # fmt: skip
    assert "1,200 messages in 60 groups" in out, out
    # 2,400 message ids reserved (each new conversation's group reserves twice): 1,024 and 2,048 passed.
    assert "tables analyzed at [" in out and "none" not in out, out
