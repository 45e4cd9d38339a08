"""`config.sql.pipelined` starts its transaction inside the pipeline (BEGIN goes out with the
first statement instead of a round trip of its own) and stays one transaction: all or nothing,
committed in the last round trip, and psycopg's own transaction start is back afterwards."""

from __future__ import annotations

import ctypes
import gc
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from config.sql import _gil_free_pqflush, flush_releasing_gil, libpq_paths, pipelined, unpipelined
from tests.conftest import World
from tests.psycopg_waits import socket_waits


def _other_connection() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )


@pytest.fixture
def table(live_db: World) -> Iterator[str]:
    name = f"pipeline_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE public.{name} (id integer PRIMARY KEY)")
    yield f"public.{name}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE public.{name}")


def _rows(table: str) -> list[int]:
    with _other_connection() as other:
        return [row[0] for row in other.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def _begins_itself(raw: Any) -> bool:
    return "_start_query" not in vars(raw)


def test_a_pipelined_transaction_commits_everything_and_hands_psycopg_its_start_back(table: str) -> None:
    with transaction.atomic(), pipelined(commit=True):
        raw = connection.connection
        assert not _begins_itself(raw)  # BEGIN is queued in the pipeline, not synced on its own
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (1), (2)")
            cursor.execute(f"SELECT count(*) FROM {table}")
            assert cursor.fetchone() == (2,)
        # In a transaction BEGIN opened before the INSERT: the server says so at the next sync
        # (inside a pipeline the client learns the status only then).
        with unpipelined():
            assert raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert _begins_itself(raw)
    assert raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _rows(table) == [1, 2]
    # An ordinary transaction after it starts its own BEGIN as before.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (3)")
        assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert _rows(table) == [1, 2, 3]


def test_a_failing_statement_rolls_back_the_statements_before_it(table: str) -> None:
    with pytest.raises(DatabaseError), transaction.atomic(), pipelined(commit=True), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (10)")
        cursor.execute(f"INSERT INTO {table} VALUES (10)")  # duplicate key
    assert _rows(table) == []  # nothing half-written: the first INSERT was in the transaction
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _begins_itself(connection.connection)
    with transaction.atomic(), pipelined(commit=True), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (10)")
    assert _rows(table) == [10]


def test_unpipelined_work_inside_stays_in_the_same_transaction(table: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(), pipelined(commit=True):
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (20)")
        with unpipelined(), connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (21)")
            assert cursor.rowcount == 1
        raise RuntimeError("after both")
    assert _rows(table) == []


def test_inside_an_outer_transaction_nothing_is_begun_again(table: str) -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (30)")
        with transaction.atomic(), pipelined(commit=True):
            assert _begins_itself(connection.connection)  # the outer transaction is open
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES (31)")
        assert _rows(table) == []  # the outer block commits, not the inner pipeline
    assert _rows(table) == [30, 31]


def test_a_savepoint_that_fails_inside_keeps_the_rest_of_the_transaction(table: str) -> None:
    """As config.jobs does: out of the pipeline, a savepoint whose statement fails is rolled back
    alone, and the transaction BEGIN opened in the pipeline goes on and commits."""
    with transaction.atomic(), pipelined(commit=True):
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (40)")
        with unpipelined():
            with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES (40)")  # duplicate key
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES (41)")
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (42)")
        assert _rows(table) == []  # nothing visible before the commit: one transaction
    assert _rows(table) == [40, 41, 42]


def test_statements_go_out_without_a_wait_on_the_socket_until_an_answer_is_read(table: str) -> None:
    """Issue 9: an execute in the pipeline sends its statement without a wait on the socket (no
    poll, no wait for the GIL after it); the next read waits for the answers of all of them."""
    with transaction.atomic(), pipelined(commit=True), connection.cursor() as cursor:
        pipeline = connection.connection._pipeline
        with socket_waits() as waits:
            for n in range(5):
                cursor.execute(f"INSERT INTO {table} VALUES (%s)", [n])
        assert waits[0] == 0
        with socket_waits() as waits:
            cursor.execute(f"SELECT count(*), max(id) FROM {table}")
            assert cursor.fetchone() == (5, 4)
        assert 1 <= waits[0] < 6  # fewer than one per statement: they went out together
        assert not pipeline.command_queue
    assert _rows(table) == [0, 1, 2, 3, 4]


def test_a_long_run_of_statements_is_handed_over_one_by_one_and_written_in_order(table: str) -> None:
    count = 300
    with transaction.atomic(), pipelined(commit=True), connection.cursor() as cursor:
        pipeline = connection.connection._pipeline
        for n in range(count):
            cursor.execute(f"INSERT INTO {table} VALUES (%s)", [n])
            assert not pipeline.command_queue  # with libpq (and on its way), not held back
        cursor.execute(f"SELECT count(*), min(id), max(id) FROM {table}")
        assert cursor.fetchone() == (count, 0, count - 1)
    assert _rows(table) == list(range(count))


def test_a_failing_statement_among_queued_ones_is_raised_and_nothing_is_written(table: str) -> None:
    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
        pipelined(commit=True),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"INSERT INTO {table} VALUES (50)")
        cursor.execute(f"INSERT INTO {table} VALUES (50)")  # duplicate key: sent, not raised yet
        cursor.execute(f"INSERT INTO {table} VALUES (51)")
        cursor.execute(f"SELECT count(*) FROM {table}")
        cursor.fetchone()  # the read sends them: the duplicate is raised here
    assert _rows(table) == []
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_statements_go_out_through_libpq_with_the_gil_released(table: str) -> None:
    """The pipeline's sends use libpq's own PQflush through ctypes (a foreign call that lets go
    of the GIL), not psycopg's C `flush`, which holds it while the send wakes PostgreSQL."""
    with transaction.atomic(), pipelined(commit=True), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (7)")
        pqflush = _gil_free_pqflush()
        assert pqflush is not None, "this machine's psycopg (binary, Linux) must take the GIL-free path"
        # A CDLL call, not a PyDLL one (which would keep the GIL): ctypes releases it for the call.
        assert pqflush._flags_ == ctypes.CDLL._func_flags_ != ctypes.PyDLL._func_flags_
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (1,)
    assert _rows(table) == [7]


def test_flushing_a_closed_connection_says_so() -> None:
    with _other_connection() as other:
        pgconn = other.pgconn
    with pytest.raises(psycopg.OperationalError, match="flushing failed"):
        flush_releasing_gil(pgconn)


def test_libpq_is_found_among_the_mappings_whatever_its_path() -> None:
    maps = [
        "7f00-7f01 r-xp 00000000 08:01 123 /opt/my venv/lib/psycopg_binary.libs/libpq-e9b5c9ac.so.5.18\n",
        "7f01-7f02 r--p 00010000 08:01 123 /opt/my venv/lib/psycopg_binary.libs/libpq-e9b5c9ac.so.5.18\n",
        "7f02-7f03 r-xp 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libssl.so.3\n",
        "7f03-7f04 rw-p 00000000 00:00 0 \n",
        "7ffd-7ffe rw-p 00000000 00:00 0                          [stack]\n",
    ]
    assert libpq_paths(maps) == {"/opt/my venv/lib/psycopg_binary.libs/libpq-e9b5c9ac.so.5.18"}
    # Two libpqs in one process: which one psycopg runs on cannot be told from here.
    assert len(libpq_paths([*maps, "7f05-7f06 r-xp 00000000 08:01 789 /usr/lib/libpq.so.5.15\n"])) == 2


def test_a_pipeline_is_freed_when_its_block_ends_without_waiting_for_the_collector(table: str) -> None:
    """The generators `pipelined` puts on a pipeline are closures over it: left in place, every
    pipeline outlived its block in a reference cycle, ~15 objects for the collector each time
    (issue 9: the largest part of a loaded server's garbage). With the collector off, reference
    counting alone frees each pipeline, ended or ended for `unpipelined` work; one ended by an
    error has its generators back as psycopg's too (the error's traceback is psycopg's own)."""
    pipelines: list[weakref.ref[Any]] = []

    def current() -> None:
        pipelines.append(weakref.ref(connection.connection._pipeline))

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with transaction.atomic(), pipelined(commit=True):
            current()
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES (30)")
            with unpipelined(), connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES (31)")
            current()  # a new pipeline after the unpipelined work
        assert len(pipelines) == 2 and all(ref() is None for ref in pipelines), "a pipeline is held in a cycle"
    finally:
        if was_enabled:
            gc.enable()
    held: list[Any] = []
    with pytest.raises(DatabaseError), transaction.atomic(), pipelined(commit=True):
        held.append(connection.connection._pipeline)
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (30)")  # duplicate key
            cursor.execute(f"SELECT 1 FROM {table}")
            cursor.fetchall()
    assert not {"_communicate_gen", "_fetch_gen"} & set(vars(held[0]))
    assert _rows(table) == [30, 31]
