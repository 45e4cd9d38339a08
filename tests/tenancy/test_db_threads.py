"""The database threads of the websocket consumers keep their connection while busy (issue 9).

Borrowing a connection from the pool for every call cost three statements besides the call's
own (the pool's check, `SET search_path`, the pool's `RESET` on return), each a wait for the GIL
on a busy server process. A thread now keeps its connection between calls and gives it back
after `keep` seconds without one. These tests run calls of two businesses through one thread
against the real database: each call sees its own schema, whatever the previous call left, a
rolled-back `SET` is never trusted, errors and leftover transactions do not poison the next
call, and an idle thread holds no connection.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections, transaction

from tenancy import db
from tenancy.db import DatabaseThreads, _isolated, holds_connections, release_connections
from tests.conftest import World


class Releases:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        release_connections()


@pytest.fixture
def releases() -> Releases:
    return Releases()


@pytest.fixture
def one_thread(releases: Releases) -> Iterator[DatabaseThreads]:
    threads = DatabaseThreads(1, keep=0.3, holds=holds_connections, release=releases)
    yield threads
    threads.shutdown()


def call(threads: DatabaseThreads, schema_name: str, fn: Callable[[], Any]) -> Any:
    return threads.submit(_isolated, schema_name, lambda: fn(), {}).result(timeout=10)


def session() -> dict[str, Any]:
    """What the call's session looks like: its backend, whether django-tenants still has to
    issue `SET search_path`, and the schema the database resolves names in."""
    path_known = connection.search_path_set_schemas is not None  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_schema()")
        pid, schema = cursor.fetchone()
    return {"pid": pid, "path_known_before": path_known, "schema": schema}


def test_a_busy_thread_keeps_its_connection_and_its_search_path(
    live_db: World, one_thread: DatabaseThreads, releases: Releases
) -> None:
    alpha = live_db.business_a.schema_name
    first = call(one_thread, alpha, session)
    second = call(one_thread, alpha, session)

    assert first["schema"] == second["schema"] == alpha
    assert second["pid"] == first["pid"]  # not given back and borrowed again
    assert first["path_known_before"] is False  # a fresh connection: SET issued
    assert second["path_known_before"] is True  # the session has it: no SET
    assert releases.count == 0


def test_interleaved_businesses_each_see_their_own_schema(live_db: World, one_thread: DatabaseThreads) -> None:
    alpha, beta = live_db.business_a.schema_name, live_db.business_b.schema_name
    seen = [call(one_thread, schema, session) for schema in (alpha, beta, alpha, beta, beta)]

    assert [s["schema"] for s in seen] == [alpha, beta, alpha, beta, beta]
    assert len({s["pid"] for s in seen}) == 1
    # The schema changed on every call but the last: a SET each time, then none.
    assert [s["path_known_before"] for s in seen] == [False, False, False, False, True]


def test_a_search_path_rolled_back_with_its_transaction_is_set_again(
    live_db: World, one_thread: DatabaseThreads
) -> None:
    alpha, beta = live_db.business_a.schema_name, live_db.business_b.schema_name
    call(one_thread, alpha, session)

    def fails_in_a_transaction() -> None:
        with transaction.atomic():
            session()  # SET search_path to beta inside the transaction
            raise RuntimeError("the call fails; the transaction and its SET roll back")

    with pytest.raises(RuntimeError):
        call(one_thread, beta, fails_in_a_transaction)

    # The session is back on alpha's path; trusting "beta" now would read alpha's tables.
    after = call(one_thread, beta, session)
    assert after["path_known_before"] is False
    assert after["schema"] == beta


def test_a_failed_statement_does_not_poison_the_next_call(live_db: World, one_thread: DatabaseThreads) -> None:
    alpha = live_db.business_a.schema_name

    def divides_by_zero() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    with pytest.raises(Exception, match="division by zero"):
        call(one_thread, alpha, divides_by_zero)
    assert call(one_thread, alpha, session)["schema"] == alpha


def test_a_transaction_left_open_is_not_carried_into_the_next_call(live_db: World, one_thread: DatabaseThreads) -> None:
    alpha = live_db.business_a.schema_name

    def leaves_a_transaction_open() -> None:
        connection.set_autocommit(False)
        session()

    call(one_thread, alpha, leaves_a_transaction_open)

    def state() -> tuple[bool, bool, str]:
        return connection.get_autocommit(), connection.in_atomic_block, session()["schema"]

    assert call(one_thread, alpha, state) == (True, False, alpha)


def test_an_idle_thread_gives_its_connection_back(
    live_db: World, one_thread: DatabaseThreads, releases: Releases
) -> None:
    call(one_thread, live_db.business_a.schema_name, session)
    time.sleep(0.8)  # keep is 0.3 s

    holds = one_thread.submit(lambda: connections["default"].connection is not None).result(timeout=10)
    assert releases.count == 1
    assert holds is False
    # Nothing more to give back: the thread waits without a timeout until the next call.
    time.sleep(0.5)
    assert releases.count == 1


def test_a_forked_child_starts_threads_of_its_own(live_db: World) -> None:
    """The parent's threads do not exist in a forked child: a call there must not queue for them."""
    parent = db.executor()
    parent.submit(lambda: None).result(timeout=10)  # a parent thread exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one call through the module's executor, then report
        try:
            ok = db.executor() is not parent and db.executor().submit(lambda: 42).result(timeout=5) == 42
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"


def _thread_name() -> str:
    return threading.current_thread().name


def test_a_steady_load_runs_on_the_thread_that_went_idle_last() -> None:
    """A call goes to the most recently idle thread: one caller's calls, one after the other,
    all run on one thread (one warm connection), not in turn on every thread the pool grew to."""
    threads = DatabaseThreads(4, keep=5.0, holds=lambda: False, release=lambda: None)
    try:
        release = threading.Event()
        burst = [threads.submit(release.wait, 10) for _ in range(4)]
        release.set()
        assert all(future.result(timeout=10) for future in burst)
        time.sleep(0.05)  # all four are idle now

        names = []
        for _ in range(50):
            names.append(threads.submit(_thread_name).result(timeout=10))
        assert len(threads._threads) == 4
        assert len(set(names)) == 1
    finally:
        threads.shutdown()


def test_calls_finding_every_thread_busy_run_in_order_and_shutdown_finishes_them() -> None:
    threads = DatabaseThreads(1, keep=5.0, holds=lambda: False, release=lambda: None)
    release = threading.Event()
    ran: list[int] = []
    busy = threads.submit(release.wait, 10)
    queued = [threads.submit(ran.append, index) for index in range(20)]
    release.set()
    threads.shutdown()  # waits: the queued calls run before the thread stops
    assert busy.result(timeout=0) is True
    assert all(future.done() for future in queued)
    assert ran == list(range(20))
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(_thread_name)


def test_the_pool_never_grows_past_max_workers() -> None:
    threads = DatabaseThreads(3, keep=5.0, holds=lambda: False, release=lambda: None)
    release = threading.Event()
    futures = [threads.submit(release.wait, 10) for _ in range(10)]
    assert len(threads._threads) == 3
    release.set()
    assert all(future.result(timeout=10) for future in futures)
    threads.shutdown()
    assert len(threads._threads) == 3


def test_an_idle_thread_handed_a_call_while_giving_its_connection_back_still_runs_it() -> None:
    """keep expires and the thread releases while a call is handed to it: the call waits in its
    mailbox and runs next, never lost."""
    released = threading.Event()
    slow_release = threading.Event()

    def release() -> None:
        released.set()
        slow_release.wait(10)

    threads = DatabaseThreads(1, keep=0.05, holds=lambda: True, release=release)
    try:
        threads.submit(_thread_name).result(timeout=10)
        assert released.wait(10)  # the thread is inside release, still on the idle stack
        future = threads.submit(_thread_name)
        slow_release.set()
        assert future.result(timeout=10).startswith("parley-db_")
    finally:
        slow_release.set()
        threads.shutdown()
