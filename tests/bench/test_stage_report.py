"""`bench.inbox_load.stage_report`: each stage's time since the one before, and the whole of the sends
that were written — a send refused before its group is no part of the write's figures."""

from __future__ import annotations

import gc
import time

from bench.inbox_load import collector_report, stage_report


def test_the_table_counts_each_stage_since_the_one_before_and_the_whole_of_written_sends() -> None:
    written = {
        "arrived": 10.0,
        "worker": 10.001,
        "rights": 10.003,
        "queued": 10.003,
        "taken": 10.010,
        "size": 3,
        "tokens": 10.012,
        "written": 10.030,
        "published": 10.031,
        "answered": 10.033,
    }
    refused = {"arrived": 20.0, "worker": 20.002, "rights": 20.004, "answered": 20.5}
    lines = stage_report([written, refused])
    assert lines[0].startswith("stages (server side, 2 sends)")
    table = {line.split(":")[0].strip(): line for line in lines[1:]}
    assert "(n=2)" in table["worker"] and "(n=2)" in table["rights"]
    assert table["written"].split()[1:4] == ["18.0", "18.0", "18.0"] and "(n=1)" in table["written"]
    assert table["answered"].split()[1] == "2.0"
    # The refused send's half second is not in the whole.
    assert table["whole"].split()[1:4] == ["33.0", "33.0", "33.0"] and "(n=1)" in table["whole"]
    assert "3.0 sends on average" in table["groups"]


def test_a_send_whose_rights_were_read_while_it_was_queued_counts_its_queueing_from_its_worker() -> None:
    overlapped = {
        "arrived": 1.0,
        "worker": 1.002,
        "queued": 1.005,
        "rights": 1.006,  # the read came back after the send was queued
        "overlapped": 1,
        "taken": 1.010,
        "published": 1.03,
        "answered": 1.04,
    }
    table = {line.split(":")[0].strip(): line for line in stage_report([overlapped])[1:]}
    assert table["rights"].split()[1] == "4.0"
    assert table["queued"].split()[1] == "3.0" and "(n=1)" in table["queued"]


def _written_send(arrived: float, written_ms: float) -> dict[str, float]:
    """A written send's trace: queued 1 ms after it arrived, taken 2 ms later, written in
    `written_ms`, answered 2 ms after that (whole: written_ms + 5)."""
    return {
        "arrived": arrived,
        "queued": arrived + 0.001,
        "taken": arrived + 0.003,
        "tokens": arrived + 0.003,
        "written": arrived + 0.003 + written_ms / 1000,
        "published": arrived + 0.004 + written_ms / 1000,
        "answered": arrived + 0.005 + written_ms / 1000,
    }


def test_the_written_sends_are_also_reported_by_window_of_their_arrival() -> None:
    send = _written_send
    refused = {"arrived": 100.5, "worker": 100.6, "answered": 101.0}
    lines = stage_report([send(100.0, 10), send(105.0, 10), send(112.0, 40), refused])
    start = lines.index("  by 10 s window of arrival, p50 / p99 ms: taken | written | whole")
    first, second = lines[start + 1 :]
    assert first.split(":")[0].strip() == "0 s" and "(n=2)" in first
    assert [cell.split() for cell in first.split(":", 1)[1].split("(")[0].split("|")] == [
        ["2.0", "2.0"],
        ["10.0", "10.0"],
        ["15.0", "15.0"],
    ]
    assert second.split(":")[0].strip() == "10 s" and "(n=1)" in second
    assert second.split("|")[1].split() == ["40.0", "40.0"]


def test_sends_refused_on_arrival_are_reported_apart_from_the_written_ones() -> None:
    written = _written_send(1.0, 7)
    refused = [{"arrived": 2.0, "refused": 2.0 + ms / 1000} for ms in (1, 2, 3, 4, 50)]
    table = {line.split(":")[0].strip(): line for line in stage_report([written, *refused])[1:]}
    assert table["refused on arrival"].split()[3:6] == ["3.0", "50.0", "50.0"] and "(n=5" in table["refused on arrival"]
    assert "(n=1)" in table["whole"] and table["whole"].split()[1] == "12.0"  # the refusals are not in it


def test_a_refusal_on_arrival_is_traced_from_the_frame_taken_to_the_error_sent() -> None:
    from messaging import stages

    before = len(stages._finished)
    taken = time.monotonic()
    stages.refused_at_arrival(taken)
    trace = stages._finished[-1]
    stages._finished[before:] = []
    assert trace["arrived"] == taken and trace["refused"] >= taken


def test_the_collectors_passes_are_counted_per_process_while_sends_were_handled() -> None:
    sends = [{"arrived": 100.0, "answered": 100.5}, {"arrived": 105.0, "answered": 110.0}]
    passes = {
        "stages-1.11.jsonl": [
            {"gc": 0, "at": 99.0, "cpu": 0.5, "wall": 0.5},  # before the first send: not counted
            {"gc": 0, "at": 101.0, "cpu": 0.002, "wall": 0.003},
            {"gc": 0, "at": 102.0, "cpu": 0.002, "wall": 0.002},
            {"gc": 1, "at": 103.0, "cpu": 0.010, "wall": 0.012},
            {"gc": 2, "at": 104.0, "cpu": 0.040, "wall": 0.050},
        ],
        "stages-1.12.jsonl": [{"gc": 0, "at": 109.0, "cpu": 0.001, "wall": 0.001}],
    }
    lines = collector_report(sends, passes)
    assert "over 10.0 s of sends" in lines[0]
    assert lines[1].split() == ["11:", "0.2", "0.10", "0.10", "|", "5.4", "|", "50.0", "(full)"]
    # The long passes, one by one: when (since the first send), wall and CPU milliseconds.
    assert lines[2].strip() == "passes ≥ 20 ms (since the first send, wall/CPU ms): +4.0 s 50/40 full"
    assert lines[3].split() == ["12:", "0.1", "0.00", "0.00", "|", "0.1", "|", "1.0", "(young)"]
    assert len(lines) == 4
    assert collector_report(sends, {}) == []


def test_a_collector_pass_is_traced_with_its_generation_and_cpu() -> None:
    from messaging import stages

    before = len(stages._finished)
    gc.callbacks.append(stages.collector_pass)
    try:
        gc.collect(1)
    finally:
        gc.callbacks.remove(stages.collector_pass)
    traced = stages._finished[before:]
    stages._finished[before:] = []
    assert [trace["gc"] for trace in traced] == [1]
    assert traced[0]["cpu"] >= 0 and traced[0]["wall"] >= 0
