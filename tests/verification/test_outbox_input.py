"""/dev/outbox/?to= with input that can never be a stored number (a NUL above all, which
PostgreSQL refuses in a query) is a 400 with a message, never a 500 (issue 10, defect 10)."""

from __future__ import annotations

import pytest

from tests.conftest import World, public_client


@pytest.mark.parametrize("to", ["+49151\x001234", "\x00", "+49 151 <script>", "x" * 500])
def test_outbox_filter_that_is_not_a_number_is_a_clear_400(world: World, to: str) -> None:
    response = public_client(world.staff).get("/dev/outbox/", {"to": to})
    assert response.status_code == 400
    assert b"Filter by a phone number in international format" in response.content
    assert b'aria-invalid="true"' in response.content


def test_outbox_filter_by_a_number_still_works(world: World) -> None:
    response = public_client(world.staff).get("/dev/outbox/", {"to": "+4915123456789"})
    assert response.status_code == 200
    assert b'value="+4915123456789"' in response.content
