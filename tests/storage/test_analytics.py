"""compute_analytics: agent win rates and voting-rule statistics from result documents."""

from __future__ import annotations

from typing import Any

import pytest

from storage import compute_analytics


def result(
    rule: str,
    team: list[str],
    author: str | None,
    *,
    consensus: float = 1.0,
    rounds: int = 3,
    early: bool = False,
    cost: float = 0.0,
    duration: float = 10.0,
) -> dict[str, Any]:
    return {
        "session_id": "s",
        "status": "completed",
        "voting_rule": rule,
        "team": team,
        "rounds_planned": 3,
        "rounds_run": rounds,
        "stopped_early": early,
        "winner": None if author is None else {"id": "P1", "author": author, "title": "t"},
        "tally": {"rule": rule, "consensus": consensus},
        "usage": {"llm_calls": 1, "cost_usd": cost},
        "duration_s": duration,
    }


def test_win_rate_is_normalised_by_participation() -> None:
    """An agent on one team that wins once beats one that wins twice out of four."""
    results = [
        result("rated", ["analyst", "creative"], "creative"),
        result("rated", ["analyst", "skeptic"], "analyst"),
        result("rated", ["analyst", "skeptic"], "analyst"),
        result("rated", ["analyst", "skeptic"], "skeptic"),
        result("rated", ["analyst", "ethicist"], None),
    ]
    stats = compute_analytics(results)
    rows = [(a.agent, a.sessions, a.wins, a.win_rate) for a in stats.agents]
    assert rows == [
        ("creative", 1, 1, 1.0),
        ("analyst", 5, 2, 0.4),
        ("skeptic", 3, 1, pytest.approx(1 / 3)),
        ("ethicist", 1, 0, 0.0),
    ]


def test_per_rule_means_and_early_stop_rate() -> None:
    results = [
        result("ranked", ["a", "b"], "a", consensus=0.5, rounds=2, early=True, cost=0.01, duration=4.0),
        result("ranked", ["a", "b"], "b", consensus=1.0, rounds=3, early=False, cost=0.03, duration=8.0),
        result("ranked", ["a", "b"], "a", consensus=0.0, rounds=1, early=True, cost=0.02, duration=6.0),
        result("majority", ["a", "b"], "b", consensus=0.5, rounds=3, early=False, cost=0.5, duration=1.0),
    ]
    ranked, majority = compute_analytics(results).rules
    assert ranked.voting_rule == "ranked"
    assert ranked.sessions == 3
    assert ranked.mean_consensus == pytest.approx(0.5)
    assert ranked.mean_rounds == pytest.approx(2.0)
    assert ranked.early_stop_rate == pytest.approx(2 / 3)
    assert ranked.mean_cost_usd == pytest.approx(0.02)
    assert ranked.mean_duration_s == pytest.approx(6.0)
    assert (majority.voting_rule, majority.sessions, majority.early_stop_rate) == ("majority", 1, 0.0)


@pytest.mark.parametrize(
    ("counts", "order"),
    [
        ({"rated": 1, "approval": 2}, ["approval", "rated"]),
        ({"rated": 2, "approval": 2}, ["approval", "rated"]),
    ],
)
def test_rules_are_listed_most_used_first_then_by_name(counts: dict[str, int], order: list[str]) -> None:
    results = [result(rule, ["a"], "a") for rule, n in counts.items() for _ in range(n)]
    assert [r.voting_rule for r in compute_analytics(results).rules] == order


def test_missing_or_mistyped_fields_are_left_out_of_the_means() -> None:
    """An older or partial document does not fail the report, and does not count as zero."""
    partial = {"voting_rule": "rated", "team": ["a"], "tally": {"consensus": None}, "rounds_run": True}
    stats = compute_analytics([partial, result("rated", ["a"], "a", consensus=0.8, rounds=2)])
    (rated,) = stats.rules
    assert rated.sessions == 2
    assert rated.mean_consensus == pytest.approx(0.8)
    assert rated.mean_rounds == pytest.approx(2.0)
    assert [(a.agent, a.sessions, a.wins) for a in stats.agents] == [("a", 2, 1)]


def test_a_rule_no_session_reports_has_none_not_zero() -> None:
    (rule,) = compute_analytics([{"voting_rule": "rated"}]).rules
    assert (rule.mean_consensus, rule.mean_rounds, rule.early_stop_rate) == (None, None, None)


def test_no_results_give_empty_analytics() -> None:
    stats = compute_analytics([])
    assert (stats.sessions, stats.agents, stats.rules) == (0, [], [])
