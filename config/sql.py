"""Many rows as one SQL row source bound through a few parameters.

The hot writers (the send core, billing's charges, notification outcomes) write a group of rows
per statement. Spelled as `VALUES (%s, %s, …), (…)` a group of 100 messages is ~1,500
parameters, and Django's psycopg cursor binds client-side: psycopg adapts and quotes each one in
Python, about a third of a notifications delivery job's time in the profile. Here each column is
one parameter instead: a JSON array of the column's values, unnested in step with the others
(`ROWS FROM (json_array_elements_text(%s::json), …)`); or, when every row holds the same value
(a group's timestamp, its status, its author), a single scalar. A one-row group is scalars only.

Why JSON text and not `%s::bigint[]` / `%s::text[]` parameters: psycopg dumps a list element by
element in Python (client-side or server-side binding alike), while a JSON encoder (orjson)
encodes the whole column in C. Measured with psycopg 3.3 on this machine: 200 event frames of
~600 bytes cost 5.7 ms as a text[] parameter and 0.9 ms as JSON; 200 ids 0.24 ms and 0.10 ms.

    source, params = rows_source([("id", "bigint"), ("body", "text")], [(1, "a"), (2, "b")])
    cursor.execute(f"UPDATE t SET body = v.body FROM {source} WHERE t.id = v.id", params)

Rows come out in the order given (ordered by their position, not left to the plan): upserts
that lock rows rely on it to lock in one order everywhere.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg import _queries as psycopg_queries
from psycopg import pq
from psycopg.adapt import AdaptersMap
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8Dumper

Column = tuple[str, str]  # (name, SQL type)
# A statement's text and its parameters, as writers of several apps hand them to one another.
Statement = tuple[str, list[Any]]


def with_statements(others: Sequence[Statement], last: Statement) -> Statement:
    """`last` with `others` run within it (`WITH s0 AS (…), s1 AS (…) <last>`): one statement,
    one round trip. Data-modifying statements in WITH see one snapshot, not each other's
    changes: they must touch different rows."""
    if not others:
        return last
    sql = ", ".join(f"s{n} AS ({other_sql})" for n, (other_sql, _params) in enumerate(others))
    params = [value for _sql, other_params in others for value in other_params]
    return f"WITH {sql} {last[0]}", params + last[1]


# psycopg turns a statement's `%s` placeholders into PostgreSQL's `$n` by scanning its text with
# a regular expression, in Python, and keeps the result (an LRU of 128 texts) only for texts of
# at most MAX_CACHED_STATEMENT_LENGTH characters: a send group's one numbered statement (the
# counter, the events and what goes with them: messaging.events.execute_numbered) is 4.1–4.6 KB,
# so it was scanned anew for every group, 0.17 ms of the event loop's CPU each time (perf on a
# loaded server: the scan was 0.8% of its samples). The texts this code makes come in a few
# dozen shapes (rows_source binds values, never spells them), so the LRU holds them as it holds
# shorter ones; its size bounds the memory.
STATEMENT_CACHE_LENGTH = 16_384
if not hasattr(psycopg_queries, "MAX_CACHED_STATEMENT_LENGTH"):  # pragma: no cover - a psycopg upgrade
    raise ImportError("psycopg._queries.MAX_CACHED_STATEMENT_LENGTH is gone: see config/sql.py")
psycopg_queries.MAX_CACHED_STATEMENT_LENGTH = max(psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, STATEMENT_CACHE_LENGTH)


def _uniform(values: Sequence[Any]) -> bool:
    first = values[0]
    kind = type(first)
    # Same type as well as equal: 1 == True == Decimal(1) must not merge into one scalar.
    return all(value is first or (type(value) is kind and value == first) for value in values)


def _json_default(value: Any) -> Any:
    """Values orjson has no type for, as the text PostgreSQL's input functions read back exactly.
    (orjson writes datetimes, dates and UUIDs itself, as `isoformat()` and `str()` do: full
    microseconds, where DjangoJSONEncoder would cut timestamps to milliseconds.)"""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Jsonb):
        return value.obj  # nested: its element's text is the document's JSON
    raise TypeError(f"cannot bind {type(value).__name__} in a row source")


def _json_column(values: Sequence[Any]) -> str:
    # orjson rather than the standard library's encoder (C too, but set up anew in Python on
    # every call): a send group encodes ~25 columns, 2–5 µs each there against 0.2–0.3 µs, and a
    # column of timestamps 8× faster.
    try:
        return orjson.dumps(values, default=_json_default).decode()
    except orjson.JSONEncodeError as error:
        # orjson's own message names the type only; `_json_default`'s says what was asked.
        raise TypeError(f"{error.__cause__ or error} ({error})") from error


def rows_source(columns: Sequence[Column], rows: Sequence[Sequence[Any]], alias: str = "v") -> tuple[str, list[Any]]:
    """`(SELECT … ) AS alias` with the columns by name and of their SQL types, and its
    parameters (in the order they appear in the SQL). `rows` must not be empty; each row holds
    one value per column, in the order of `columns`. Text values must not contain NUL (which
    PostgreSQL text cannot hold in any binding)."""
    if not rows:
        raise ValueError("rows_source needs at least one row")
    if len(rows) == 1:
        return _one_row_source(columns, rows[0], alias)
    by_column = list(zip(*rows, strict=True))
    if len(by_column) != len(columns):
        raise ValueError(f"{len(columns)} columns but rows of {len(by_column)} values")
    select: list[str] = []
    scalars: list[Any] = []
    arrays: list[tuple[str, str]] = []
    encoded: list[Any] = []
    for (name, sql_type), values in zip(columns, by_column, strict=True):
        if _uniform(values):
            select.append(f"%s::{sql_type} AS {name}")
            scalars.append(values[0])
        else:
            select.append(f"u.{name}::{sql_type} AS {name}")
            arrays.append((name, sql_type))
            encoded.append(_json_column(values))
    if arrays:
        source = (
            "ROWS FROM ("
            + ", ".join("json_array_elements_text(%s::json)" for _column in arrays)
            + f") WITH ORDINALITY AS u({', '.join(name for name, _type in arrays)}, ordinal_)"
        )
    else:
        source = "generate_series(1, %s) AS u(ordinal_)"
        encoded = [len(rows)]
    # The LIMIT tells the planner how many rows to expect (within 2×; a few texts per statement,
    # not one per group size): a function's rows are otherwise estimated at 100 (1,000 for
    # generate_series once prepared), so joining a group of 3 rows to a table of a few thousand
    # looked cheaper as a hash join over the whole table than as a few index lookups.
    expected = 1 << (len(rows) - 1).bit_length()
    return (
        f"(SELECT {', '.join(select)} FROM {source} ORDER BY u.ordinal_ LIMIT {expected}) AS {alias}",
        [*scalars, *encoded],
    )


def _one_row_source(columns: Sequence[Column], row: Sequence[Any], alias: str) -> tuple[str, list[Any]]:
    """`rows_source` of one row: every column a scalar (the usual send group of one, at low
    rates, makes several of these per group)."""
    if len(row) != len(columns):
        raise ValueError(f"{len(columns)} columns but rows of {len(row)} values")
    select = ", ".join(f"%s::{sql_type} AS {name}" for name, sql_type in columns)
    return (
        f"(SELECT {select} FROM generate_series(1, %s) AS u(ordinal_) ORDER BY u.ordinal_ LIMIT 1) AS {alias}",
        [*row, 1],
    )


class _Pipeline:
    """The pipeline `pipelined` holds on this thread's connection, stopped and started again
    around code that cannot run in one (`unpipelined`)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.stack: ExitStack | None = None
        self.pipeline: Any = None

    def start(self) -> None:
        self.stack = ExitStack()
        self.pipeline = self.stack.enter_context(self.raw.pipeline())
        _send_without_waiting(self.pipeline)

    def stop(self, error: BaseException | None = None) -> None:
        stack, self.stack = self.stack, None
        pipeline, self.pipeline = self.pipeline, None
        if stack is None:
            return
        try:
            stack.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
        finally:
            # After the pipeline's own exit, whose sync still goes through its generators.
            _send_as_psycopg_does(pipeline)


def libpq_paths(maps: Iterable[str]) -> set[str]:
    """The files named libpq* among a process's mappings (lines of /proc/<pid>/maps)."""
    # Each line: address, perms, offset, device, inode, then the path (which may hold spaces).
    mapped = {fields[5].strip() for fields in (line.split(maxsplit=5) for line in maps) if len(fields) == 6}
    return {path for path in mapped if path.rsplit("/", 1)[-1].startswith("libpq")}


@functools.cache
def _gil_free_pqflush() -> Any:
    """libpq's `PQflush` of the libpq psycopg runs on, called through ctypes (which lets go of
    the GIL for a foreign call); None where that libpq cannot be told for sure (not Linux, or
    more than one libpq loaded), and callers use psycopg's own `flush`."""
    if pq.__impl__ == "python":
        return None  # psycopg's own libpq calls are ctypes calls: they release the GIL already
    try:
        with open("/proc/self/maps") as maps:
            paths = libpq_paths(maps)
        if len(paths) != 1:  # the one psycopg loaded (a connection exists by now), and no other
            return None
        libpq = ctypes.CDLL(paths.pop())
    except OSError:
        return None
    if libpq.PQlibVersion() != pq.version():
        return None
    pqflush = libpq.PQflush
    pqflush.argtypes, pqflush.restype = [ctypes.c_void_p], ctypes.c_int
    return pqflush


def flush_releasing_gil(pgconn: Any) -> int:
    """`pgconn.flush()` (send what libpq buffered; 1 if some is left, 0 if all went) without
    holding the GIL during the send. psycopg's C build holds it in `flush`, and on loopback the
    send wakes the PostgreSQL backend that reads it, which the scheduler often runs at once in
    this thread's place: the thread then sits off the CPU *holding the GIL*, and the process's
    event loop, every socket's delivery, waits until the kernel gives the thread a core again.
    On a full 2-core machine that was the largest single place the GIL was held (a seventh of
    the servers' GIL-holding samples, py-spy `--gil`, 200 msgs/s; 1.4% after). End to end, the
    inbox's customer → agent p99 at 700 msgs/s was 127 / 119 ms against 430 / 220 ms in one
    alternating series, a median of 361 against 422 ms in a noisier one (issue 9,
    docs/performance.md)."""
    pqflush = _gil_free_pqflush()
    if pqflush is None:
        return int(pgconn.flush())
    pointer = pgconn.pgconn_ptr
    if pointer is None:
        raise psycopg.OperationalError("flushing failed: the connection is closed")
    left = int(pqflush(pointer))
    if left < 0:
        message = pgconn.error_message.decode(errors="replace").strip()
        raise psycopg.OperationalError(f"flushing failed: {message}")
    return left


def _send_without_waiting(pipeline: Any) -> None:
    """An execute in the pipeline sends its statement without waiting on the socket; only a
    read (a fetch, the sync at the pipeline's end) waits. psycopg's own execute polls the socket
    (with the GIL released) and sends: then the GIL has to be won back from a busy event loop,
    on a send group's dozen statements 21–35 such waits where 2–4 are round trips (issue 9).
    Here an execute hands its statement to libpq and flushes what the socket takes at once
    (nonblocking, with the GIL released only for the send itself: `flush_releasing_gil`), so the
    server still starts on it while this thread goes on;
    what the socket did not take goes with the next read, which then waits for the answers as
    psycopg does. A failing statement is raised at the next read or at the end, as `pipelined`
    says. Set on each pipeline `pipelined` opens (a pipeline lives as long as its block)."""
    from psycopg.generators import send

    queue = pipeline.command_queue
    fetch = pipeline._fetch_gen

    def send_queued() -> Iterator[Any]:
        while queue:
            queue.popleft()()  # into libpq's buffer: the connection is nonblocking in a pipeline
        if flush_releasing_gil(pipeline.pgconn):
            # The socket did not take it all (the server is not reading while its answers wait
            # for us): as psycopg does, wait for room, reading what arrives meanwhile, so
            # neither side blocks on a full buffer and libpq's buffer stays bounded.
            yield from send(pipeline.pgconn)

    def fetch_after_sending(*, flush: bool) -> Iterator[Any]:
        yield from send_queued()
        yield from fetch(flush=flush)

    pipeline._communicate_gen = send_queued
    pipeline._fetch_gen = fetch_after_sending


def _send_as_psycopg_does(pipeline: Any) -> None:
    """Undo `_send_without_waiting` once the pipeline's block is over: its generators are
    closures over the pipeline, set on the pipeline, a reference cycle that outlived every send
    group until the collector found it — a pipeline, its queues, the closures and their cells,
    ~15 objects each time: at 1,000 msgs/s most of a server's cyclic garbage (issue 9)."""
    vars(pipeline).pop("_communicate_gen", None)
    vars(pipeline).pop("_fetch_gen", None)


_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid


def _native_timestamptz_loader() -> type[psycopg.abc.Loader]:
    # psycopg's global map holds its own loaders; Django registers its loader on each connection.
    loader = psycopg.adapters.get_loader(_TIMESTAMPTZ_OID, pq.Format.TEXT)
    if loader is None:
        raise RuntimeError("psycopg has no timestamptz loader")
    return loader


_NATIVE_TIMESTAMPTZ_LOADER = _native_timestamptz_loader()


def _session_in_utc(wrapper: Any) -> bool:
    """Django loads timestamptz values in UTC (USE_TZ, no per-database TIME_ZONE) and the
    session's TimeZone is UTC, so psycopg's own loader makes the same datetimes. Asked of libpq
    directly (GUC_REPORT: the server reports every change of it), not through `connection.info`,
    which builds an object and encodes and decodes the names on each of a send group's cursors."""
    return wrapper.timezone is datetime.UTC and wrapper.connection.pgconn.parameter_status(b"TimeZone") == b"UTC"


# A session opened with this option plans every prepared statement generically for its whole
# life (messaging.sending._plan_generically says why a send group wants that): a loop slot's
# (tenancy.loop_db), whose statements are all send groups'.
GENERIC_PLANS_OPTION = "-c plan_cache_mode=force_generic_plan"


def with_generic_plans(options: dict[str, Any]) -> dict[str, Any]:
    """Django's OPTIONS for a database, its sessions planning generically (GENERIC_PLANS_OPTION
    added to libpq's `options`, after any the configuration sets)."""
    given = str(options.get("options") or "")
    return {**options, "options": f"{given} {GENERIC_PLANS_OPTION}".strip()}


def session_plans_generically(wrapper: Any) -> bool:
    """The Django connection's sessions were opened planning generically (`with_generic_plans`)."""
    return GENERIC_PLANS_OPTION in str((wrapper.settings_dict.get("OPTIONS") or {}).get("options") or "")


def prepared_cursor() -> Any:
    """A Django cursor on this thread's connection whose statements are prepared: parsed once per
    connection and then bound, not parsed and planned from their text on every run. Django binds
    client-side (each value quoted into the statement's text, so no two texts are alike and
    nothing can be prepared); of the ~7.2 ms PostgreSQL worked per send group of five, ~3.9 ms
    went to parsing and planning, most of it the lock's and the stream counter's (issue 9). For
    statements whose text does not change with their values (`rows_source` binds a column as
    one parameter). Plans stay PostgreSQL's choice (`plan_cache_mode`): custom for the first runs, generic only
    where it is estimated no worse. Statements live as long as the connection (PgBouncer in
    session mode keeps them; see docs/deploy.md). Django's own cursors bind client-side and are
    never prepared: `prepare_threshold` (config.database) concerns only cursors like this one."""
    # This thread's connection, looked up once: `connection` is a proxy that finds it anew on
    # every attribute (a send group makes several of these cursors).
    # django-stubs types the cursor makers as taking a wrapper, not the driver's cursor they wrap.
    wrapper: Any = connections[DEFAULT_DB_ALIAS]
    wrapper.ensure_connection()
    # django-tenants sets the business's search_path when Django makes a cursor (once per
    # connection and schema: TENANT_LIMIT_SET_CALLS, remembered in `search_path_set_schemas`); a
    # driver cursor made here bypasses that, so a block of prepared cursors only (a send group's)
    # ran under the schema before. A Django cursor is made only while the path is not set yet.
    if not getattr(wrapper, "search_path_set_schemas", True):
        wrapper.cursor().close()
    wrapper.validate_thread_sharing()
    cursor = _PreparedCursor(wrapper.connection, _prepared_adapters(wrapper))
    # Wrapped as Django wraps its own (errors, the query log tests and debug pages read).
    return wrapper.make_debug_cursor(cursor) if wrapper.queries_logged else wrapper.make_cursor(cursor)


class _PreparedCursor(psycopg.Cursor[Any]):
    """A driver cursor whose adapters derive from its connection's map for prepared cursors
    (`_prepared_adapters`), made once per connection: registering them on each cursor copied
    the connection's dumpers and loaders every time (two copies of ~100 entries, several
    cursors a send group; issue 9)."""

    def __init__(self, connection: psycopg.Connection[Any], adapters: AdaptersMap) -> None:
        super().__init__(connection)
        # As psycopg's BaseCursor sets its own, from this map instead of the connection's.
        self._adapters = AdaptersMap(adapters)
        self._adapters._register_loader_callback = functools.partial(self._loaders_changed, weakref.ref(self))


_ADAPTERS_ATTRIBUTE = "_parley_prepared_adapters"


def _prepared_adapters(wrapper: Any) -> AdaptersMap:
    """The connection's adapters with what prepared cursors bind and read differently, made
    once per connection (and session time zone): what is registered on the connection after
    that is not seen by its prepared cursors (Django and Parley register nothing there after
    connecting)."""
    connection = wrapper.connection
    made: dict[bool, AdaptersMap] = getattr(connection, _ADAPTERS_ATTRIBUTE, None) or {}
    utc = _session_in_utc(wrapper)
    adapters = made.get(utc)
    if adapters is None:
        adapters = AdaptersMap(connection.adapters)
        # Every integer as bigint: psycopg picks int2, int4 or int8 by a value's size, and a
        # statement is prepared per text and parameter types, so ids passing 32,767 would
        # prepare it again.
        adapters.register_dumper(int, Int8Dumper)
        if utc:
            # psycopg's own timestamptz loader (compiled) instead of Django's, a Python call per
            # value that loads with it and then replaces the time zone with UTC: in a UTC session
            # psycopg's gives that same UTC datetime itself. A send group's lock reads ~11
            # timestamps per conversation (issue 9).
            adapters.register_loader(_TIMESTAMPTZ_OID, _NATIVE_TIMESTAMPTZ_LOADER)
        made[utc] = adapters
        setattr(connection, _ADAPTERS_ATTRIBUTE, made)
    return adapters


_local = threading.local()


def _commits_at_exit() -> bool:
    """The atomic block around the caller is the outermost one and will commit when it exits."""
    blocks = connection.atomic_blocks
    return len(blocks) == 1 and connection.commit_on_exit and not connection.needs_rollback


@contextmanager
def pipelined(*, commit: bool = False) -> Iterator[None]:
    """Inside a transaction: send each statement without waiting for the previous one's answer
    (psycopg 3's pipeline mode); the client waits only where a result is read (a fetch) and at
    the end. A writer's statements whose results it never reads (`SET search_path`, upserts
    without RETURNING, the final one) then share a round trip with the next statement that is
    read: on a busy process every round trip also costs a wait for the GIL after the answer.

    A failing statement aborts the rest of the pipeline and is raised at the next read or at
    the end, so this is only for work that is all-or-nothing anyway (one transaction, rolled
    back on any database error). Inside, `cursor.rowcount` and `cursor.description` of a
    statement are known only once it is fetched: code that reads them first (Django's
    `.update()` and `.save()`, procrastinate's defer) must run in `unpipelined()`.

    `commit=True`, directly inside the transaction's outermost `atomic()` (`with atomic(),
    pipelined(commit=True):`): the COMMIT goes out with the statements still queued, in the
    pipeline's last round trip; the atomic block's own commit then finds the transaction over
    and sends nothing (psycopg's commit of an idle connection), and runs the on_commit hooks as
    always. Otherwise the pipeline's end and the COMMIT were a round trip each. A failing
    statement aborts the pipeline before the COMMIT, which the server then skips: the error is
    raised here and the atomic block rolls back as usual. Inside an outer transaction (a
    caller's, a test's) nothing changes: its commit is the outer block's."""
    raw = connection.connection
    if not connection.in_atomic_block or raw is None or raw.pgconn.pipeline_status:  # nested: already pipelined
        yield
        return
    state = _local.state = _Pipeline(raw)
    begun_here = False
    try:
        with connection.wrap_database_errors:
            state.start()
            try:
                begun_here = _begin_in_pipeline(raw)
                yield
                if commit and _commits_at_exit():
                    with connection.cursor() as cursor:
                        cursor.execute("COMMIT")
            except BaseException as error:
                state.stop(error)
                raise
            state.stop()
    finally:
        if begun_here:
            vars(raw).pop("_start_query", None)  # psycopg's own again
        _local.state = None


def _begin_in_pipeline(raw: Any) -> bool:
    """Queue the transaction's BEGIN in the pipeline, to go out with the first statement.
    psycopg, which starts the transaction itself at the first statement, syncs the pipeline
    right after its BEGIN (so that it sees the transaction open before the next statement): a
    round trip of its own, one of four in a send group. Here BEGIN is queued like any statement
    and psycopg is told not to start one (its `_start_query` is bypassed on this connection
    until `pipelined` ends: by then the transaction is open, or over). Only when no transaction
    is open yet and the connection is not in autocommit; otherwise psycopg's own path runs."""
    if raw.autocommit or raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    raw.wait(raw._exec_command(raw._get_tx_start_command()))  # in a pipeline: queued, not sent
    pipeline = raw._pipeline

    def start_query() -> Iterator[None]:
        # Bypassed only while this pipeline lasts (never for a later user of the connection).
        if raw._pipeline is not pipeline:
            yield from type(raw)._start_query(raw)

    raw._start_query = start_query
    return True


@contextmanager
def unpipelined() -> Iterator[None]:
    """Out of `pipelined` for a while: what was queued is sent and answered first (its errors
    raised here), and the pipeline starts again after."""
    state: _Pipeline | None = getattr(_local, "state", None)
    if state is None or state.stack is None:
        yield
        return
    with connection.wrap_database_errors:
        state.stop()
    try:
        yield
    finally:
        state.start()
