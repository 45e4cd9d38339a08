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


@pytest.fixture(autouse=True)
def _on_the_test_database() -> None:
    """pytest-django sets up the test database only when some collected test uses `db`: a run
    of `live_db`-only tests would otherwise write to DATABASE_URL's own database (shared)."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["NAME"] != database["TEST"]["NAME"]:
        pytest.fail(
            f"not on the test database ({database['NAME']!r}): run these checks together with a test that "
            "uses `db`, e.g. the whole tests/reliability directory (make reliability)"
        )
