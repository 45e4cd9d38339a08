"""`bench/inbox_load.py`'s summary against the p99 goal: a target that met the goal at its
highest rate tested has its limit above that rate, so its figure is a lower bound and a ratio
against it is not a measurement (a run whose limit server met the goal at every rate tried
printed "parley vs limit at the p99 goal: 0.50×" as if measured)."""

from __future__ import annotations

from typing import Any

from bench.inbox_load import Result, default_reply_rate, goal_summary, send_limit_notes

GOAL = 0.1


def _result(target: str, rate: float, p99: float, *, lost: int = 0) -> Result:
    figures: dict[str, Any] = {"offered": rate, "persisted": rate, "c2a_p99": p99, "lost": lost, "unanswered": 0}
    return Result(target, figures)


def test_a_ratio_is_printed_when_both_passed_the_goal_within_the_rates_tested() -> None:
    lines = goal_summary(
        [
            _result("parley", 200, 0.09),
            _result("limit", 200, 0.02),
            _result("parley", 400, 0.30),
            _result("limit", 400, 0.08),
            _result("parley", 600, 0.90),
            _result("limit", 600, 0.20),
        ],
        GOAL,
    )
    assert lines == [
        "parley: highest persisted msgs/s at p99 ≤ 100 ms: 200.0",
        "limit: highest persisted msgs/s at p99 ≤ 100 ms: 400.0",
        "parley vs limit at the p99 goal: 0.50×",
    ]


def test_a_target_that_met_the_goal_at_its_highest_rate_is_a_lower_bound() -> None:
    lines = goal_summary(
        [
            _result("parley", 200, 0.097),
            _result("limit", 200, 0.018),
            _result("parley", 400, 0.23),
            _result("limit", 400, 0.039),
        ],
        GOAL,
    )
    assert lines == [
        "parley: highest persisted msgs/s at p99 ≤ 100 ms: 200.0",
        "limit: highest persisted msgs/s at p99 ≤ 100 ms: 400.0 (met at the highest rate tested: its limit is higher)",
        "parley vs limit at the p99 goal: at most 0.50× (limit met it at its highest rate)",
    ]


def test_parley_meeting_the_goal_everywhere_gives_a_lower_bound_and_both_give_none() -> None:
    parley_only = goal_summary([_result("parley", 300, 0.05), _result("limit", 300, 0.2)], GOAL)
    assert parley_only == [
        "parley: highest persisted msgs/s at p99 ≤ 100 ms: 300.0 (met at the highest rate tested: its limit is higher)",
        "limit: highest persisted msgs/s at p99 ≤ 100 ms: 0.0",
    ]
    both = goal_summary([_result("parley", 100, 0.05), _result("limit", 100, 0.01)], GOAL)
    assert both[-1] == "parley vs limit at the p99 goal: unknown (both met it at their highest rate tested)"
    lower = goal_summary([_result("parley", 300, 0.05), _result("limit", 300, 0.02), _result("limit", 600, 0.3)], GOAL)
    assert lower[-1] == "parley vs limit at the p99 goal: at least 1.00× (parley met it at its highest rate)"


def test_a_rate_with_a_loss_never_meets_the_goal() -> None:
    lines = goal_summary([_result("parley", 100, 0.05, lost=1), _result("parley", 50, 0.04)], GOAL)
    assert lines == ["parley: highest persisted msgs/s at p99 ≤ 100 ms: 50.0"]


def test_a_load_over_the_send_limit_is_said_for_customers_and_agents() -> None:
    """Session 27: 500 customers at 1,800 msgs/s (3.6 a second each against a limit of 2) and 50
    agents replying a tenth of that were refused `rate_limited` on both servers; the limit
    server's sends held by that limit at the end counted as unanswered and took it out of the
    p99 summary, which read as its load."""
    assert send_limit_notes(1000, 500, 100, 50) == []  # 2 a second each: at the limit, not over
    customers, agents = send_limit_notes(1800, 500, 180, 50)
    assert customers.startswith("note: 3.6 messages/s per customer is over the send limit (2/s, bursts of 20)")
    assert "more --customers" in customers
    assert agents.startswith("note: 3.6 messages/s per agent is over the send limit") and "--reply-rate" in agents
    assert send_limit_notes(2000, 1500, 200, 50) == [send_limit_notes(1800, 500, 200, 50)[1]]  # agents only


def test_the_default_reply_rate_stays_within_the_agents_send_limit() -> None:
    assert default_reply_rate(500, 50) == 50  # a tenth
    assert default_reply_rate(1000, 50) == 100  # the goal load: a tenth, at the limit
    assert default_reply_rate(2800, 50) == 100  # a tenth would be 5.6 a second per agent
    assert send_limit_notes(2800, 1500, default_reply_rate(2800, 50), 50) == []
