"""The README and docs stand on their own in a fresh clone: every relative link points at a
file inside the repository, and the pieces a new reader needs are there."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|`(\.\./[^`]+)`")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]


def test_relative_links_stay_inside_the_repository() -> None:
    for doc in _docs():
        for match in LINK.finditer(doc.read_text()):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.name} points outside the repository: {target}"
            assert resolved.exists(), f"{doc.name} links a missing file: {target}"


def test_readme_covers_architecture_port_and_development_inboxes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/architecture.md)" in readme
    assert "make demo PORT=" in readme
    assert "/dev/outbox/" in readme and "/dev/mailbox/" in readme
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for heading in ("## Tenancy", "## Apps", "## Rules of the domain", "## Realtime", "## Background jobs"):
        assert heading in architecture
    assert "## Configuration" in architecture


def test_readme_holds_where_the_goals_stand_and_links_the_performance_log() -> None:
    """The README states each performance goal with its latest figures; the measurements'
    history (commands, machines, what was tried) lives in docs/performance.md, which it links."""
    readme = (ROOT / "README.md").read_text()
    assert "### Where the goals stand" in readme
    assert "(docs/performance.md)" in readme
    log = (ROOT / "docs" / "performance.md").read_text()
    assert log.startswith("# Performance log")
    assert "[Benchmarks](../README.md#benchmarks)" in log
