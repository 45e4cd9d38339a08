"""`make reliability`: run every reliability check at full size and print the table.

    .venv/bin/python reliability/run.py [--soak-minutes N] [pytest args...]

Runs tests/reliability/ with PARLEY_RELIABILITY_LONG=1 (long checks included), collects the
rows the checks record, adds a failing row for each check that is not built yet, prints
check | what was tried | result, and exits non-zero if any row failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.report import LONG_ENV, REPORT_ENV, Row, read  # noqa: E402

# Every check of issue 10's suite, in the order of the table. A check with no recorded row
# gets this row, which fails: not built is not passing.
EXPECTED = {
    "1. Tenant isolation probe": "not run",
    "2. Crash and resume": "not run",
    "3. Redis outage": "not run",
    "4. Worker crash": "not run",
    "5. PostgreSQL restart": "not run",
    "6. One-time-code attack": "not run",
    "7. API fuzzing": "not run",
    "8. Soak": "not run",
}


def table(rows: list[Row]) -> str:
    lines = ["| check | what was tried | result |", "|---|---|---|"]
    for row in rows:
        verdict = "PASS" if row.passed else "FAIL"
        lines.append(f"| {row.check} | {row.tried} | **{verdict}** — {row.result} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="length of the soak check")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="sec_reliability_") as tmp:
        report = Path(tmp) / "rows.jsonl"
        env = dict(
            os.environ,
            **{REPORT_ENV: str(report), LONG_ENV: "1", "PARLEY_SOAK_MINUTES": str(args.soak_minutes)},
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability",
            "-m",
            "reliability",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        pytest_result = subprocess.run([*command, *pytest_args], cwd=ROOT, env=env, check=False)
        rows = read(report)
    recorded = {row.check.split(" (")[0] for row in rows}
    for check, why in EXPECTED.items():
        if check not in recorded:
            rows.append(Row(check, "—", why, passed=False))
    rows.sort(key=lambda row: row.check)
    print()
    print(table(rows))
    failed = [row for row in rows if not row.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows pass; pytest exit code {pytest_result.returncode}.")
    return 1 if failed or pytest_result.returncode not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
