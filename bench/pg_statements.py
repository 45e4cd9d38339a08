"""Where PostgreSQL's time goes in a load window: statement by statement from its own log
(--pg-log), what its busy sessions wait on, sampled (--pg-waits), and how each table was read
(--pg-scans).

`bench/inbox_load.py --pg-log PATH` turns on `log_min_duration_statement = 0` for the bench
database only (`ALTER DATABASE … SET`: every session opened on it from then on logs each
statement with its duration; other databases are untouched), notes where PostgreSQL's log file
ends when the load starts and when it stops, and summarises what was logged in between: the
statements a second, the time PostgreSQL spent in them a second and per customer message, split
by protocol phase (a prepared statement's parse, bind and execute are logged apart; `statement`
is the simple protocol), and the statements that took the most time.

The durations are PostgreSQL's wall time for each message, from its arrival to its answer: a
statement that waited for a lock (a send group's stream counter, held by another process's group
until its commit) or for the WAL flush (COMMIT) counts the wait. Logging every statement costs
PostgreSQL CPU of its own: a run with --pg-log is for where the time goes, not for the latency
figures. PATH is the server's log file as this machine writes it (Debian:
/var/log/postgresql/postgresql-<version>-main.log); the bench must be able to read it, so
PostgreSQL runs on the same machine.

`--pg-waits` samples `pg_stat_activity` every few milliseconds during the load (`WaitSampler`):
how many of the bench database's sessions were, on average, running a statement (`CPU`: no wait
event), waiting for a lock, for the WAL's flush, or for their client's next message in the middle
of a transaction (`Client/ClientRead` while active: a pipelined group whose writer is still
computing what it sends next, its rows locked meanwhile) — and at which statement.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A logged duration: `duration: 0.123 ms  <phase>: <text>`, whatever log_line_prefix puts before.
_DURATION = re.compile(r"LOG:  duration: ([0-9.]+) ms  (statement|parse [^:]*|bind [^:]*|execute [^:]*): (.*)$")
TEXT_WIDTH = 90


def statement_log(database_url: str, database: str, *, on: bool) -> None:
    """Every statement of new sessions on `database` logged with its duration (on), or not (off).
    Needs a superuser (the bench's own PostgreSQL role, as for creating the database)."""
    import psycopg
    from psycopg import sql

    setting = "SET log_min_duration_statement = 0" if on else "RESET log_min_duration_statement"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(database)))


@dataclass
class LogWindow:
    """The part of PostgreSQL's log written between `start` and `finish`."""

    path: Path
    begin: int = 0
    end: int = 0

    def start(self) -> None:
        self.begin = self.path.stat().st_size

    def finish(self) -> None:
        self.end = self.path.stat().st_size

    def text(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.begin)
            return log.read(max(0, self.end - self.begin)).decode("utf-8", "replace")


@dataclass
class StatementTimes:
    count: int = 0
    ms: float = 0.0


@dataclass
class Summary:
    by_statement: dict[tuple[str, str], StatementTimes] = field(default_factory=lambda: defaultdict(StatementTimes))

    @property
    def by_phase(self) -> dict[str, float]:
        phases: dict[str, float] = defaultdict(float)
        for (phase, _statement), times in self.by_statement.items():
            phases[phase] += times.ms
        return phases

    @property
    def count(self) -> int:
        return sum(s.count for s in self.by_statement.values())

    @property
    def ms(self) -> float:
        return sum(s.ms for s in self.by_statement.values())


def parse(text: str) -> Summary:
    """Each logged duration by (phase, the statement's text with its whitespace collapsed, cut to
    TEXT_WIDTH characters). A statement's continuation lines (a tab first) belong to it."""
    summary = Summary()
    current: list[Any] | None = None  # [ms, phase, text]

    def close() -> None:
        if current is not None:
            ms, phase, statement = current
            key = (phase, " ".join(statement.split())[:TEXT_WIDTH])
            times = summary.by_statement[key]
            times.count += 1
            times.ms += ms

    for line in text.splitlines():
        if current is not None and line.startswith("\t"):
            current[2] += " " + line.strip()
            continue
        close()
        current = None
        match = _DURATION.search(line)
        if match:
            phase = match.group(2).split(" ", 1)[0]
            current = [float(match.group(1)), phase, match.group(3)]
    close()
    return summary


def report(summary: Summary, *, seconds: float, messages: float, top: int = 10) -> list[str]:
    """What PostgreSQL spent a second and per customer message (`messages` a second), by phase,
    then the `top` statements by time."""
    if not summary.count:
        return ["PostgreSQL statements: none logged in the load window (is --pg-log the server's log file?)"]
    seconds = max(seconds, 1e-9)
    per_message = f" ({summary.ms / seconds / messages:.2f} ms per customer message)" if messages else ""
    phases = ", ".join(f"{phase} {ms / seconds:.0f}" for phase, ms in sorted(summary.by_phase.items()))
    out = [
        f"PostgreSQL statements (its log, the load window): {summary.count / seconds:,.0f} a second, "
        f"{summary.ms / seconds:,.0f} ms of statement time a second{per_message}; ms a second by phase: {phases}",
        "  ms/s   calls/s   µs each  phase    statement",
    ]
    ranked = sorted(summary.by_statement.items(), key=lambda item: -item[1].ms)[:top]
    for (phase, statement), times in ranked:
        out.append(
            f"  {times.ms / seconds:6.1f} {times.count / seconds:8.1f} {times.ms / times.count * 1000:8.0f}  "
            f"{phase:8} {statement}"
        )
    return out


class WaitSampler(threading.Thread):
    """Samples what the database's active sessions wait on, every `every` seconds, until `stop`."""

    def __init__(self, database_url: str, database: str, every: float = 0.005) -> None:
        super().__init__(daemon=True, name="pg-waits")
        self.database_url, self.database, self.every = database_url, database, every
        self.samples = 0
        self.states: Counter[tuple[str, str]] = Counter()
        self.at: Counter[tuple[str, str, str]] = Counter()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                while not self.stopping.is_set():
                    rows = conn.execute(
                        "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), "
                        "left(regexp_replace(query, '\\s+', ' ', 'g'), %s) FROM pg_stat_activity "
                        "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                        [TEXT_WIDTH, self.database],
                    ).fetchall()
                    self.samples += 1
                    for kind, event, query in rows:
                        self.states[(kind, event)] += 1
                        self.at[(kind, event, query)] += 1
                    time.sleep(self.every)
        except BaseException as error:  # reported with the figures, never raised into the run
            self.error = error

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def report(self, top: int = 8) -> list[str]:
        if self.error is not None:
            return [f"PostgreSQL waits: not sampled ({self.error!r})"]
        if not self.samples:
            return ["PostgreSQL waits: no samples"]
        n = self.samples
        states = ", ".join(
            f"{kind}/{event or '-'} {count / n:.2f}" for (kind, event), count in self.states.most_common()
        )
        out = [
            f"PostgreSQL waits ({n} samples of its active sessions): sessions on average by wait: {states or 'none'}",
            "  sessions  wait                      at statement",
        ]
        for (kind, event, query), count in self.at.most_common(top):
            out.append(f"  {count / n:8.2f}  {kind + '/' + (event or '-'):25} {query}")
        return out


# (sequential scans, rows they read, index scans) of one table, from pg_stat_user_tables.
Scans = tuple[int, int, int]


class TableScans:
    """How the bench database's tables were read during the load (`--pg-scans`): sequential
    scans a second and the rows they read, index scans a second, from `pg_stat_user_tables`
    before and after — every session's reads, whichever plan its statements ran on. A send
    group's statements look rows up by key: a table scanned whole in every group (a generic plan
    made on a table without statistics: issue 9, session 41) shows here as scans at the groups'
    rate, reading the table's rows each time. Sessions report their counts when a transaction
    ends and at most every second or so: figures for a load of many seconds."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.before: dict[str, Scans] = {}
        self.after: dict[str, Scans] = {}
        self.seconds = 0.0
        self._started = 0.0

    def _read(self) -> dict[str, Scans]:
        import psycopg

        # A new session each time: no statistics snapshot kept from the first read.
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schemaname || '.' || relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), "
                "coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            ).fetchall()
        return {name: (int(seq), int(rows_read), int(idx)) for name, seq, rows_read, idx in rows}

    def start(self) -> None:
        self.before, self._started = self._read(), time.monotonic()

    def finish(self) -> None:
        self.after, self.seconds = self._read(), time.monotonic() - self._started

    def report(self, top: int = 8) -> list[str]:
        seconds = max(self.seconds, 1e-9)
        changes = []
        for name, (seq, rows_read, idx) in self.after.items():
            seq0, rows0, idx0 = self.before.get(name, (0, 0, 0))
            if seq > seq0 or idx > idx0:
                changes.append((rows_read - rows0, seq - seq0, idx - idx0, name))
        if not changes:
            return ["PostgreSQL table reads: none counted"]
        out = [
            f"PostgreSQL table reads over {self.seconds:.1f} s (pg_stat_user_tables), most rows read by sequential scans first:",
            "   seq scans/s   their rows/s   index scans/s  table",
        ]
        for rows_read, seq, idx, name in sorted(changes, reverse=True)[:top]:
            out.append(f"  {seq / seconds:12.1f} {rows_read / seconds:14.1f} {idx / seconds:15.1f}  {name}")
        return out
