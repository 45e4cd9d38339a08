"""Rows of the reliability table, written by the checks and read by reliability/run.py."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

REPORT_ENV = "PARLEY_RELIABILITY_REPORT"
LONG_ENV = "PARLEY_RELIABILITY_LONG"


@dataclass(frozen=True)
class Row:
    check: str
    tried: str
    result: str
    passed: bool


def long_run() -> bool:
    """True under `make reliability`: checks run at full size (e.g. 10,000 guesses, not 600)."""
    return os.environ.get(LONG_ENV, "") == "1"


def record(*, check: str, tried: str, result: str, passed: bool) -> None:
    """Append a row to the report file when one is being written (make reliability); a no-op in
    `make test`, where the assertions alone decide."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(json.dumps(asdict(Row(check, tried, result, passed))) + "\n")


def read(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
