"""Issue 10 (crash and resume): pages reconnect with exponential backoff and full jitter, so a
server restart does not bring every client back in the same instant; the Python clients
(reliability checks, bench) use the same rule (config.websocket.reconnect_delay)."""

from __future__ import annotations

from typing import Any

import pytest

from config.websocket import RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS, reconnect_delay
from tests.conftest import LiveServer, World, evaluate_on_public_page


def test_python_rule_is_full_jitter_doubling_to_the_cap() -> None:
    assert [reconnect_delay(n, lambda: 1.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert reconnect_delay(0, lambda: 0.0) == 0.0
    assert reconnect_delay(10_000, lambda: 1.0) == RECONNECT_CAP_SECONDS
    samples = [reconnect_delay(0) for _ in range(500)]
    assert 0 <= min(samples) < RECONNECT_BASE_SECONDS * 0.2
    assert RECONNECT_BASE_SECONDS * 0.8 < max(samples) <= RECONNECT_BASE_SECONDS


# A fake WebSocket that fails at once, and a setTimeout that records the delays asked for and
# runs the callback right away: what ResumingSocket waits between its reconnects.
RECORD_RECONNECTS = """async () => {
  const m = await import("/static/parley/realtime.js");
  const delays = [];
  const realTimeout = window.setTimeout;
  class FailingSocket extends EventTarget {
    constructor() { super(); this.readyState = 3; realTimeout(() => this.dispatchEvent(Object.assign(new Event("close"), { code: 1006 })), 0); }
    send() {}
  }
  window.WebSocket = FailingSocket;
  window.setTimeout = (fn, ms) => { if (delays.length < 40) { delays.push(ms); realTimeout(fn, 0); } return 0; };
  window.setInterval = () => 0;
  new m.ResumingSocket("/ws/chat/", { onFrame: () => {} });
  await new Promise((resolve) => realTimeout(resolve, 500));
  window.setTimeout = realTimeout;
  const one = (attempt) => m.reconnectDelay(attempt, () => 1);
  return { delays, caps: [0, 1, 2, 3, 4, 5, 6].map(one) };
}"""


@pytest.mark.browser
def test_page_reconnects_with_backoff_and_full_jitter(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    result = evaluate_on_public_page(browser, live_server_process, RECORD_RECONNECTS)
    # The JS rule is the Python one (in milliseconds).
    assert result["caps"] == [reconnect_delay(n, lambda: 1.0) * 1000 for n in range(7)]
    delays = result["delays"]
    assert len(delays) >= 20
    # Each wait is random below its cap: the first five caps double, later ones stay at 10 s.
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2**attempt) * 1000
    # Jitter: the waits at the cap are not all the same (without jitter they would all be 10 s).
    at_cap = delays[6:]
    assert len(set(at_cap)) > len(at_cap) // 2 and min(at_cap) < 9000
