"""Ids from clients: only a whole number within bigint's range names anything. An id past it
reached PostgreSQL through the send core's raw SQL and came back as a `server_error` without
the send's client_msg_id; `true` and `1.9` were taken as conversation 1."""

from __future__ import annotations

from typing import Any

import pytest

from messaging.errors import MessagingError, MessagingErrorCode
from messaging.ids import BIGINT_MAX, client_int, conversation_pk


@pytest.mark.parametrize("value", [1, 42, "42", " 7 ", BIGINT_MAX, str(BIGINT_MAX)])
def test_whole_numbers_are_ids(value: Any) -> None:
    assert conversation_pk(value) == int(value)
    assert client_int(value) == int(value)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        1.9,
        1.0,
        1e20,
        float("inf"),
        BIGINT_MAX + 1,
        -BIGINT_MAX - 2,
        10**30,
        "9223372036854775808",
        "1e3",
        "0x10",
        "١٢",  # Arabic-Indic digits: int() reads them, no client sends them
        "²",
        "",
        None,
        [1],
        {"id": 1},
    ],
)
def test_anything_else_names_nothing(value: Any) -> None:
    with pytest.raises(MessagingError) as missing:
        conversation_pk(value)
    assert missing.value.code == MessagingErrorCode.NOT_FOUND
    with pytest.raises(MessagingError) as invalid:
        client_int(value)
    assert invalid.value.code == MessagingErrorCode.INVALID
