"""Issue 10 defect 7: every malformed frame gets an error frame, never a 1011 close or a traceback."""

from __future__ import annotations

import logging
import math

import pytest

from messaging.consumers import parse_frame
from tests.conftest import World
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect

pytestmark = pytest.mark.django_db(transaction=False)

DEEP = [
    "[" * 100000,  # larger than a frame may be
    "[" * 60000,  # within the size limit, deeper than the parser's recursion limit
    '{"type": "send", "body": ' + "[" * 50000 + "}",
    '{"a":' * 20000 + "1" + "}" * 20000,
    "[" * 60000 + "]" * 60000,
]


@pytest.mark.parametrize("path", ["/ws/inbox/", "/ws/chat/"])
async def test_deeply_nested_frames_get_error_frames(
    live_db: World, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    if path == "/ws/inbox/":
        session = await adb(session_key)(user=live_db.agent_a)
    else:
        session = await adb(session_key)(customer=await adb(make_customer)())
    communicator, connected, _ = await ws_connect(path, host=live_db.business_a.host, session=session)
    assert connected
    with caplog.at_level(logging.ERROR):
        for text in DEEP:
            await communicator.send_to(text_data=text)
            assert (await receive_until(communicator, "error"))["code"] == "bad_frame"
        # Lone surrogates: valid JSON, but no UTF-8 column can hold them.
        await communicator.send_to(text_data='{"type": "send", "body": "\\ud800", "client_msg_id": "x"}')
        assert (await receive_until(communicator, "error"))["code"] == "bad_frame"
        await communicator.send_to(text_data='{"type": "send", "body": "\\udc00\\ud800", "client_msg_id": "x"}')
        assert (await receive_until(communicator, "error"))["code"] == "bad_frame"
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await receive_until(communicator, "pong"))["id"] is None  # still open and serving
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await communicator.disconnect()


def test_parse_frame_reads_what_json_allows_and_nothing_else() -> None:
    assert parse_frame('{"type":"send","body":"Grüße 🥨 \\u00e9\\ud83d\\ude00","n":-0,"x":1.5}') == {
        "type": "send",
        "body": "Grüße 🥨 é😀",
        "n": 0,
        "x": 1.5,
    }
    assert parse_frame('{"up_to": 18446744073709551615}') == {"up_to": 2**64 - 1}
    # Past 2**64 an integer is a float, which every id check refuses as not an integer.
    assert isinstance(parse_frame('{"up_to": 18446744073709551616}')["up_to"], float)
    # What orjson refuses and the standard library reads, read as before (the handlers refuse
    # non-finite numbers as invalid: tests/messaging/test_bad_input.py).
    assert parse_frame('{"up_to": 1e400, "n": -Infinity}') == {"up_to": math.inf, "n": -math.inf}
    assert parse_frame("[" * 2000 + "]" * 2000) is not None
    for bad in (None, "", "{", "[1,]", "{'a': 1}", '"\\ud800"', '"\\udc00"', "[" * 60000 + "]" * 60000):
        assert parse_frame(bad) is None, bad[:20] if bad else bad
