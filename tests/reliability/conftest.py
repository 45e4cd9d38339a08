"""Long reliability checks run only under `make reliability` (PARLEY_RELIABILITY_LONG=1)."""

from __future__ import annotations

import pytest

from reliability.report import long_run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if long_run():
        return
    skip = pytest.mark.skip(reason="long reliability check: run by `make reliability`")
    for item in items:
        if "reliability_long" in item.keywords:
            item.add_marker(skip)
