"""The load generator's pages send as realtime.js's SendOutbox does (tests/messaging/test_send_retry.py
checks the page): in the order written, every later send held behind a refused one, then oldest
first in a window that starts at one and grows by one with each acceptance, until none is left."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import clients
from bench.clients import Stats, _Page


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, frame: dict[str, Any], *, queue: bool = True) -> None:
        self.sent.append(frame["client_msg_id"])


class Page(_Page):
    def __init__(self) -> None:
        self.stats = Stats()
        self.socket = RecordingSocket()  # type: ignore[assignment]
        self.pending = {}
        self.attempts = {}
        self.refusals = {}
        self.on_their_way = set()


def send(page: Page, cmid: str) -> None:
    page.send_message({"type": "send", "body": "x", "client_msg_id": cmid})


def refuse(page: Page, cmid: str, code: str = "overloaded") -> None:
    page.on_send_error({"type": "error", "code": code, "client_msg_id": cmid, "retry_after": 0.5})


async def test_later_sends_wait_behind_a_refused_one_and_go_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[tuple[float | None, int]] = []

    def short_wait(retry_after: float | None, refusals: int) -> float:
        waits.append((retry_after, refusals))
        return 0.01

    monkeypatch.setattr(clients, "send_retry_delay", short_wait)
    page = Page()
    sent = page.socket.sent  # type: ignore[attr-defined]
    send(page, "c-1")
    send(page, "c-2")
    refuse(page, "c-1")
    refuse(page, "c-2")  # on its way when c-1 was refused: refused behind it
    send(page, "c-3")
    assert sent == ["c-1", "c-2"] and waits == [(0.5, 1)]  # one hold, c-3 waits
    await asyncio.sleep(0.05)
    assert sent == ["c-1", "c-2", "c-1"]  # the oldest alone
    refuse(page, "c-1")
    await asyncio.sleep(0.05)
    assert waits == [(0.5, 1), (0.5, 2)] and sent == ["c-1", "c-2", "c-1", "c-1"]
    send(page, "c-4")  # the window is full: c-4 waits
    assert sent == ["c-1", "c-2", "c-1", "c-1"]
    page.on_accepted({"type": "message.accepted", "client_msg_id": "c-1"})
    assert sent[4:] == ["c-2", "c-3"]  # one accepted: two on their way
    refuse(page, "c-1")  # a repeat refused after its message was stored: no hold, counted apart
    assert not page.held and page.stats.errors == {"late overloaded": 1}
    assert page.stats.accepted == {"c-1"} and page.stats.refusals == 3
    refuse(page, "c-3", code="blocked")  # on its way: final, dropped, and c-4 takes its place
    assert page.stats.refused_final == {"c-3": "blocked"} and sent[6:] == ["c-4"]
    page.on_accepted({"type": "message.accepted", "client_msg_id": "c-2"})
    send(page, "c-5")  # a window of three: goes at once
    assert sent[7:] == ["c-5"] and page.window == 3
    page.on_accepted({"type": "message.accepted", "client_msg_id": "c-4"})
    page.on_accepted({"type": "message.accepted", "client_msg_id": "c-5"})
    assert page.window == 0 and not page.pending and not page.on_their_way
    send(page, "c-6")  # none left: sends go at once again
    send(page, "c-7")
    assert sent[-2:] == ["c-6", "c-7"]
    # A final refusal of the one on its way lets the next go.
    refuse(page, "c-6")
    await asyncio.sleep(0.05)
    assert sent[-1] == "c-6" and page.on_their_way == {"c-6"}
    refuse(page, "c-6", code="blocked")
    assert sent[-1] == "c-7" and page.on_their_way == {"c-7"}
    # A refusal of a send not on its way since the hold (answered late) starts no new hold.
    send(page, "c-8")
    refuse(page, "c-8")
    assert not page.held and sent[-1] == "c-7"
    sent.clear()
    page.reconnected()  # a new socket: what was on its way goes again, as the window lets
    assert sent == ["c-7"]


async def test_an_accepted_retry_is_timed_from_its_own_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """`send → accepted` counts from when the message was written, the page's waits after a
    refusal included; `its accepted attempt → accepted` only the attempt the server took."""
    monkeypatch.setattr(clients, "send_retry_delay", lambda retry_after, refusals: 0.2)
    page = Page()
    send(page, "c-1")
    refuse(page, "c-1")
    await asyncio.sleep(0.3)  # the page holds it, then sends it again
    assert page.socket.sent == ["c-1", "c-1"]  # type: ignore[attr-defined]
    page.on_accepted({"type": "message.accepted", "client_msg_id": "c-1"})
    (whole,) = page.stats.accept_latency
    (attempt,) = page.stats.attempt_accept_latency
    assert whole - attempt >= 0.2  # the page's hold is in the first, not in the second
