"""`bench.inbox_load.stage_report`: each stage's time since the one before, and the whole of the sends
that were written — a send refused before its group is no part of the write's figures."""

from __future__ import annotations

from bench.inbox_load import stage_report


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
