"""Issue 9 (backpressure): a send refused for load or rate goes again with the same client_msg_id
after the server's retry_after, and each further refusal of that message doubles the wait, so
messages waiting through a long overload do not come back every fraction of a second. The pages
(realtime.js `sendRetryDelay`) and the Python clients (config.websocket.send_retry_delay: bench,
reliability checks) follow one rule."""

from __future__ import annotations

from typing import Any

import pytest

from config.websocket import DEFAULT_RETRY_AFTER_SECONDS, SEND_RETRY_CAP_SECONDS, send_retry_delay
from tests.conftest import LiveServer, World, evaluate_on_public_page


def test_each_refusal_of_a_message_doubles_its_wait_up_to_the_cap() -> None:
    no_jitter = lambda: 0.0  # noqa: E731
    assert [send_retry_delay(0.5, n, no_jitter) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert send_retry_delay(0.5, 10_000, no_jitter) == SEND_RETRY_CAP_SECONDS


def test_the_servers_retry_after_is_never_shortened() -> None:
    no_jitter = lambda: 0.0  # noqa: E731
    assert send_retry_delay(45.0, 1, no_jitter) == 45.0
    assert send_retry_delay(45.0, 5, no_jitter) == 45.0  # above the cap: the server's word stands


def test_a_refusal_without_retry_after_waits_the_default() -> None:
    no_jitter = lambda: 0.0  # noqa: E731
    assert send_retry_delay(None, 1, no_jitter) == DEFAULT_RETRY_AFTER_SECONDS
    assert send_retry_delay(0.0, 2, no_jitter) == 2 * DEFAULT_RETRY_AFTER_SECONDS


def test_jitter_adds_up_to_a_quarter() -> None:
    assert send_retry_delay(2.0, 1, lambda: 1.0) == 2.5
    samples = [send_retry_delay(2.0, 1) for _ in range(500)]
    assert 2.0 <= min(samples) < 2.1 and 2.4 < max(samples) <= 2.5


# A pending message refused five times in a row (`overloaded`, retry_after 0.5 s), through the
# page's SendOutbox with a timer that records the delays asked for and ends the hold at once:
# what the page waits, and how often it sent the message again.
RECORD_RETRIES = """async () => {
  const m = await import("/static/parley/realtime.js");
  const delays = [];
  let resent = -1; // the first send is not a retry
  const pending = new Map();
  const outbox = new m.SendOutbox(pending, () => { resent += 1; }, { setTimer: (fn, ms) => { delays.push(ms); fn(); } });
  outbox.add({ client_msg_id: "c1" });
  const outcomes = [];
  for (let n = 0; n < 5; n++) {
    const frame = { type: "error", code: "overloaded", client_msg_id: "c1", retry_after: 0.5 };
    outcomes.push(outbox.refused(frame));
  }
  const rule = [[0.5, 1], [0.5, 4], [0.5, 8], [45, 3], [null, 1], [undefined, 2]].map(
    ([after, n]) => m.sendRetryDelay(after, n, () => 0));
  return { delays, resent, outcomes, rule, jittered: m.sendRetryDelay(2, 1, () => 1) };
}"""


@pytest.mark.browser
def test_the_page_backs_off_by_the_same_rule(live_db: World, live_server_process: LiveServer, browser: Any) -> None:
    result = evaluate_on_public_page(browser, live_server_process, RECORD_RETRIES)
    assert result["outcomes"] == ["retrying"] * 5
    assert result["resent"] == 5
    # Each refusal of the same message doubles the wait (with up to a quarter of jitter).
    for refusals, delay in enumerate(result["delays"], start=1):
        low = send_retry_delay(0.5, refusals, lambda: 0.0) * 1000
        assert low <= delay <= low * 1.25
    # The JS rule is the Python one (in milliseconds).
    expected = [(0.5, 1), (0.5, 4), (0.5, 8), (45, 3), (None, 1), (None, 2)]
    assert result["rule"] == [send_retry_delay(after, n, lambda: 0.0) * 1000 for after, n in expected]
    assert result["jittered"] == send_retry_delay(2.0, 1, lambda: 1.0) * 1000


# Three messages through the page's SendOutbox while the server refuses, with timers the test
# ends by hand: what goes on the socket at each step.
OUTBOX_ORDER = """async () => {
  const m = await import("/static/parley/realtime.js");
  const sent = [];
  const timers = [];
  const pending = new Map();
  const outbox = new m.SendOutbox(pending, (msg) => sent.push(msg.client_msg_id), {
    random: () => 0, setTimer: (fn, ms) => timers.push([fn, ms]),
  });
  const refuse = (id, code = "overloaded") => outbox.refused({ type: "error", code, client_msg_id: id, retry_after: 0.5, message: "no" });
  const steps = {};
  outbox.add({ client_msg_id: "c1" });
  outbox.add({ client_msg_id: "c2" });
  steps.both_sent = [...sent];
  steps.outcomes = [refuse("c1"), refuse("c2")]; // c2 was on its way: refused behind c1
  steps.timers = timers.map(([, ms]) => ms);
  outbox.add({ client_msg_id: "c3" });
  steps.while_held = [...sent];
  timers.shift()[0]();
  steps.after_hold = [...sent]; // the oldest alone
  outbox.add({ client_msg_id: "c4" });
  steps.window_full = [...sent];
  refuse("c1"); // refused again: a longer hold
  steps.second_hold = timers.map(([, ms]) => ms);
  timers.shift()[0]();
  steps.probe_again = [...sent];
  outbox.accepted({ client_msg_id: "c1" });
  steps.window_of_two = [...sent]; // one accepted: two may be on their way
  pending.delete("c1");
  steps.failed = refuse("c3", "blocked"); // on its way: failed, and the window has room for c4
  steps.after_failed = [...sent];
  outbox.accepted({ client_msg_id: "c2" });
  outbox.add({ client_msg_id: "c5" });
  steps.window_of_three = [...sent]; // c4 and c5 on their way
  outbox.accepted({ client_msg_id: "c4" });
  outbox.accepted({ client_msg_id: "c5" }); // none left: sends go at once again
  outbox.add({ client_msg_id: "c6" });
  outbox.add({ client_msg_id: "c7" });
  steps.at_once_again = [...sent];
  steps.window_after = outbox.window;
  sent.length = 0;
  outbox.accepted({ client_msg_id: "c7" });
  outbox.reconnected(); // a new socket: what is still pending goes again, not the failed or accepted ones
  steps.reconnected = [...sent];
  steps.other = outbox.refused({ type: "error", code: "bad_frame" });
  // Repeats refused after their message was stored: c1's copy came (dropped from pending), c2's not yet.
  steps.late = [refuse("c1"), refuse("c2")];
  steps.late_timers = timers.length;
  steps.late_sent = [...sent];
  // The page drops the one on its way (a takeover declined): the next goes.
  outbox.add({ client_msg_id: "c8" });
  refuse("c6");
  timers.shift()[0]();
  sent.length = 0;
  pending.delete("c6");
  outbox.dropped("c6");
  steps.after_drop = [...sent];
  // A refusal of a send not on its way since the hold (one from before it, answered late) starts no new hold.
  outbox.add({ client_msg_id: "c9" });
  steps.late_refusal = [refuse("c9"), timers.length, [...sent]];
  // The window closes while a send's copy came before its acceptance (the page dropped it from
  // pending): its acceptance afterwards opens no window, and what went at once is not sent again.
  const sentD = [];
  const timersD = [];
  const pendingD = new Map();
  const d = new m.SendOutbox(pendingD, (msg) => sentD.push(msg.client_msg_id), {
    random: () => 0, setTimer: (fn, ms) => timersD.push([fn, ms]),
  });
  d.add({ client_msg_id: "d1" });
  d.add({ client_msg_id: "d2" });
  d.refused({ type: "error", code: "overloaded", client_msg_id: "d1", retry_after: 0.5, message: "no" });
  timersD.shift()[0]();
  d.accepted({ client_msg_id: "d1" }); // d2 on its way
  pendingD.delete("d1");
  pendingD.delete("d2"); // d2's copy came first
  d.add({ client_msg_id: "d3" }); // goes in the window
  d.accepted({ client_msg_id: "d3" }); // nothing waits: the window closes
  d.add({ client_msg_id: "d4" }); // at once
  d.accepted({ client_msg_id: "d2" }); // d2's acceptance, late
  steps.copy_before_acceptance = [[...sentD], d.window];
  return steps;
}"""


@pytest.mark.browser
def test_the_page_holds_later_sends_behind_a_refused_one_and_keeps_their_order(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    """Issue 9: a refused message held while later ones went ahead was stored after them (7,661
    of 15,695 at 1,200 msgs/s offered), and every held message was retried on its own, each
    refused again while the server was full. The page's SendOutbox holds every send behind a
    refusal, and when the wait is over sends them oldest first in a window that starts at one
    and grows by one with each acceptance, until none is left."""
    steps = evaluate_on_public_page(browser, live_server_process, OUTBOX_ORDER)
    assert steps["both_sent"] == ["c1", "c2"]
    assert steps["outcomes"] == ["retrying", "retrying"]
    assert steps["timers"] == [send_retry_delay(0.5, 1, lambda: 0.0) * 1000]  # one hold, not one per message
    assert steps["while_held"] == ["c1", "c2"]  # c3 waits
    assert steps["after_hold"] == ["c1", "c2", "c1"]
    assert steps["window_full"] == ["c1", "c2", "c1"]  # c4 waits its turn
    assert steps["second_hold"] == [send_retry_delay(0.5, 2, lambda: 0.0) * 1000]  # doubled
    assert steps["probe_again"] == ["c1", "c2", "c1", "c1"]
    assert steps["window_of_two"] == ["c1", "c2", "c1", "c1", "c2", "c3"]
    assert steps["failed"] == "failed"
    assert steps["after_failed"] == ["c1", "c2", "c1", "c1", "c2", "c3", "c4"]
    assert steps["window_of_three"] == ["c1", "c2", "c1", "c1", "c2", "c3", "c4", "c5"]
    assert steps["at_once_again"] == ["c1", "c2", "c1", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert steps["window_after"] == 0
    assert steps["reconnected"] == ["c6"]
    assert steps["other"] == "other"
    assert steps["late"] == ["late", "late"] and steps["late_sent"] == ["c6"]  # no error shown,
    assert steps["late_timers"] == 0  # and no new hold
    assert steps["after_drop"] == ["c8"]
    assert steps["late_refusal"] == ["retrying", 0, ["c8"]]  # c9 waits behind c8
    assert steps["copy_before_acceptance"] == [["d1", "d2", "d1", "d2", "d3", "d4"], 0]  # d4 once
