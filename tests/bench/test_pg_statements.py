"""bench/pg_statements.py: PostgreSQL's statement log read back into where its time went."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from bench import pg_statements
from tests.conftest import World

# As PostgreSQL 15 writes them (Debian's log_line_prefix), from a run of bench/inbox_load.py.
LOG = """\
2026-12-06 10:17:09.101 UTC [12880] postgres@bench_2898823b LOG:  duration: 0.020 ms  parse <unnamed>: BEGIN
2026-12-06 10:17:09.102 UTC [12880] postgres@bench_2898823b LOG:  duration: 0.600 ms  execute _pg3_4: WITH counter AS \
(INSERT INTO messaging_streamcounter (id, last_id) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET last_id = 1
2026-12-06 10:17:09.102 UTC [12880] postgres@bench_2898823b DETAIL:  parameters: $1 = '3', $2 = '3'
2026-12-06 10:17:09.103 UTC [12880] postgres@bench_2898823b LOG:  duration: 0.400 ms  execute _pg3_4: WITH counter AS \
(INSERT INTO messaging_streamcounter (id, last_id) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET last_id = 1
2026-12-06 10:17:09.104 UTC [12881] postgres@bench_2898823b LOG:  duration: 0.150 ms  bind _pg3_2: SELECT c."id",
\t  c."status"
\tFROM messaging_conversation c
2026-12-06 10:17:09.105 UTC [12881] postgres@bench_2898823b LOG:  duration: 1.000 ms  execute <unnamed>: COMMIT
2026-12-06 10:17:09.106 UTC [12881] postgres@bench_2898823b LOG:  duration: 0.250 ms  statement: SET search_path = "public"
2026-12-06 10:17:09.107 UTC [12881] postgres@bench_2898823b LOG:  checkpoint starting: time
"""


def test_each_logged_duration_is_counted_by_phase_and_statement() -> None:
    summary = pg_statements.parse(LOG)

    assert summary.count == 6  # the DETAIL and checkpoint lines are not statements
    assert summary.ms == pytest.approx(2.42)
    assert dict(summary.by_phase) == pytest.approx({"parse": 0.02, "execute": 2.0, "bind": 0.15, "statement": 0.25})
    [counter] = [t for (phase, text), t in summary.by_statement.items() if text.startswith("WITH counter AS")]
    assert counter.count == 2 and counter.ms == pytest.approx(1.0)
    # A statement's continuation lines belong to it, its whitespace collapsed.
    assert ("bind", 'SELECT c."id", c."status" FROM messaging_conversation c') in summary.by_statement


def test_the_report_gives_time_a_second_per_message_and_the_costliest_first() -> None:
    lines = pg_statements.report(pg_statements.parse(LOG), seconds=2.0, messages=100.0, top=2)

    assert lines[0].startswith("PostgreSQL statements (its log, the load window): 3 a second, 1 ms of statement time")
    assert "(0.01 ms per customer message)" in lines[0]
    assert "bind 0, execute 1, parse 0, statement 0" in lines[0]
    # The two costliest: the counter's statement (two calls, 1.0 ms), then COMMIT (1.0 ms, one call).
    assert "WITH counter AS" in lines[2] and lines[2].split()[:3] == ["0.5", "1.0", "500"]
    assert "COMMIT" in lines[3] and lines[3].split()[:3] == ["0.5", "0.5", "1000"]
    assert len(lines) == 4


def test_a_window_with_nothing_logged_says_so() -> None:
    assert "none logged" in pg_statements.report(pg_statements.parse("no statements\n"), seconds=1, messages=1)[0]


def test_the_log_window_reads_what_was_written_between_start_and_finish(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text("before\n")
    window = pg_statements.LogWindow(log)
    window.start()
    with log.open("a") as appending:
        appending.write(LOG)
    window.finish()
    with log.open("a") as appending:
        appending.write("after\n")

    assert window.text() == LOG


def _conninfo(dbname: str) -> str:
    """The test database's server, as Django connects to it, for a session of our own."""
    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname=dbname,
    )


def test_statement_logging_is_turned_on_and_off_for_the_bench_database_only(live_db: World) -> None:
    name = connection.settings_dict["NAME"]
    dsn, other = _conninfo(name), _conninfo("postgres")

    def setting(conninfo: str) -> str:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute("SHOW log_min_duration_statement").fetchone()
            assert row is not None
            return str(row[0])

    untouched = setting(other)
    try:
        pg_statements.statement_log(dsn, name, on=True)
        assert setting(dsn) == "0"  # a new session on the bench database logs every statement
        assert setting(other) == untouched  # other databases are left as they are
    finally:
        pg_statements.statement_log(dsn, name, on=False)
    assert setting(dsn) == untouched


def test_the_wait_sampler_sees_a_session_waiting_for_a_lock_and_at_which_statement(live_db: World) -> None:
    name = connection.settings_dict["NAME"]
    dsn = _conninfo(name)
    with (
        _probe_table(dsn, "bench_wait_probe", "(id int PRIMARY KEY)", "VALUES (1)"),
        psycopg.connect(dsn) as holder,
        psycopg.connect(dsn, autocommit=True) as waiter,
    ):
        holder.execute("SELECT id FROM bench_wait_probe WHERE id = 1 FOR UPDATE")
        blocked = threading.Thread(
            target=lambda: waiter.execute("SELECT id FROM bench_wait_probe WHERE id = 1 FOR UPDATE"), daemon=True
        )
        blocked.start()
        sampler = pg_statements.WaitSampler(dsn, name, every=0.002)
        sampler.start()
        time.sleep(0.3)
        sampler.stop()
        holder.rollback()  # the waiter gets its row and finishes
        blocked.join(5)

    assert sampler.error is None and sampler.samples > 10
    # The waiting session was seen waiting for the holder's transaction in (nearly) every sample;
    # the holder, idle in its transaction, is not active and not counted.
    assert sampler.states[("Lock", "transactionid")] >= sampler.samples * 0.9
    lines = sampler.report()
    assert "Lock/transactionid 1.0" in lines[0] or "Lock/transactionid 0.9" in lines[0]
    assert "Lock/transactionid" in lines[2] and "SELECT id FROM bench_wait_probe WHERE id = 1 FOR UPDATE" in lines[2]


def test_table_reads_count_each_sequential_scan_and_the_rows_it_read(live_db: World) -> None:
    """`--pg-scans`: a statement that reads a table whole shows as sequential scans and their
    rows; lookups by key as index scans."""
    name = connection.settings_dict["NAME"]
    dsn = _conninfo(name)
    with _probe_table(
        dsn, "bench_scan_probe", "(id int PRIMARY KEY, v int)", "SELECT g, g FROM generate_series(1, 200) g"
    ):
        scans = pg_statements.TableScans(dsn)
        scans.start()
        with psycopg.connect(dsn, autocommit=True) as reader:  # its counts are reported as it closes
            reader.execute("SET enable_indexscan = off")
            reader.execute("SET enable_bitmapscan = off")
            for _ in range(5):
                reader.execute("SELECT count(*) FROM bench_scan_probe WHERE v > 0").fetchone()
            reader.execute("RESET enable_indexscan")
            reader.execute("SET enable_seqscan = off")
            for key in range(1, 4):
                reader.execute("SELECT v FROM bench_scan_probe WHERE id = %s", [key]).fetchone()
            pid = reader.info.backend_pid
        with psycopg.connect(dsn, autocommit=True) as watcher:  # its session has ended: its counts are in
            deadline = time.monotonic() + 10
            while watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                assert time.monotonic() < deadline, "the reader's session did not end"
                time.sleep(0.01)
        scans.finish()

    table = "public.bench_scan_probe"
    seq, rows_read, idx = (a - b for a, b in zip(scans.after[table], scans.before.get(table, (0, 0, 0)), strict=True))
    assert (seq, rows_read, idx) == (5, 1000, 3)
    lines = scans.report()
    assert lines[0].startswith("PostgreSQL table reads over")
    [probe] = [line for line in lines if line.endswith(table)]
    assert probe.split()[:3] == [f"{5 / scans.seconds:.1f}", f"{1000 / scans.seconds:.1f}", f"{3 / scans.seconds:.1f}"]


@contextlib.contextmanager
def _probe_table(dsn: str, table: str, columns: str, rows: str) -> Iterator[None]:
    """A scratch table of the test database with these rows, dropped afterwards."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE IF NOT EXISTS {table} {columns}")
        setup.execute(f"INSERT INTO {table} {rows} ON CONFLICT DO NOTHING")
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute(f"DROP TABLE IF EXISTS {table}")
