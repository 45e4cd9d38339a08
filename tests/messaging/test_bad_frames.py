"""Issue 10 defect 7: every malformed frame gets an error frame, never a 1011 close or a traceback."""

from __future__ import annotations

import logging

import pytest

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
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await receive_until(communicator, "pong"))["id"] is None  # still open and serving
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await communicator.disconnect()
