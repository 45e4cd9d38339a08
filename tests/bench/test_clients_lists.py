"""The load generator's agents that do not read their lists (`bench/inbox_load.py --list-sample`)
count their list batches without parsing them, and handle every other frame as before; the ones
that read theirs measure list staleness from them. Both servers' batch texts are told apart."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.clients import InboxPage, Stats, is_list_batch
from messaging.events import inbox_batch_message


class _Frames:
    """A socket that delivers `texts`, then closes for good (4401: the page does not reconnect)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.close_code = 4401

    async def __aiter__(self) -> AsyncIterator[str]:
        for text in self.texts:
            yield text


def _parley_batch(sent: float) -> str:
    event = {"id": 7, "type": "conversation.updated", "conversation": {"id": 3, "preview": f"{sent:.6f} bench"}}
    return str(inbox_batch_message(ranges=[(6, 7)], updates=[(7, json.dumps(event))])["text"])


def _limit_batch(sent: float) -> str:
    # bench/limit_server.py's frame: json.dumps with its default separators.
    return json.dumps(
        {"id": None, "type": "conversations.updated", "conversations": [{"id": 4, "preview": f"{sent:.6f} b"}]}
    )


def _message(sent: float) -> str:
    message = {"id": 8, "conversation_id": 9, "direction": "in", "client_msg_id": "c1-1", "body": f"{sent:.6f} x"}
    return json.dumps({"id": 8, "type": "message.created", "message": message})


def test_both_servers_list_batches_are_told_from_other_frames() -> None:
    sent = time.time()
    assert is_list_batch(_parley_batch(sent))
    assert is_list_batch(_limit_batch(sent))
    assert not is_list_batch(_message(sent))
    single = {"id": 7, "type": "conversation.updated", "conversation": {"id": 3, "preview": "p"}}
    assert not is_list_batch(json.dumps(single))


def _page(stats: Stats, *, reads_list: bool) -> tuple[InboxPage, list[dict[str, Any]]]:
    page = InboxPage(
        url="ws://127.0.0.1:1/ws/inbox/",
        host="127.0.0.1",
        port=1,
        cookie="",
        stats=stats,
        prefix="a1",
        view=None,
        reads_list=reads_list,
    )
    handled: list[dict[str, Any]] = []

    def on_frame(frame: dict[str, Any]) -> None:
        handled.append(frame)
        page.on_frame(frame)

    page.socket.on_frame = on_frame
    return page, handled


async def test_an_agent_that_does_not_read_its_list_counts_its_batches_and_handles_the_rest() -> None:
    stats = Stats(since=time.time() - 60)
    page, handled = _page(stats, reads_list=False)
    sent = time.time()
    await page.socket._reader(_Frames([_parley_batch(sent), _message(sent), _limit_batch(sent)]))  # type: ignore[arg-type]

    assert [f["type"] for f in handled] == ["message.created"]
    assert stats.frames == 3 and stats.frames_unread == 2
    assert stats.list_staleness == [] and stats.list_first_staleness == []
    # The message of a conversation not open here: a delivered ack, as inbox.js sends.
    assert page.acks.pending


async def test_an_agent_that_reads_its_list_measures_staleness_from_both_servers_batches() -> None:
    stats = Stats(since=time.time() - 60)
    page, handled = _page(stats, reads_list=True)
    sent = time.time()
    await page.socket._reader(_Frames([_parley_batch(sent), _limit_batch(sent)]))  # type: ignore[arg-type]

    assert [f["type"] for f in handled] == ["conversations.updated", "conversations.updated"]
    assert stats.frames == 2 and stats.frames_unread == 0
    assert len(stats.list_staleness) == 2 and len(stats.list_first_staleness) == 2
    assert all(0 <= s < 5 for s in stats.list_staleness)
