"""The early-stop policy reads structured stances only, never free text."""

from __future__ import annotations

import pytest

from engine.early_stop import decide, similarity
from engine.turns import DiscussionTurn


def turn(position: str, *, ready: bool = False, message: str = "...") -> DiscussionTurn:
    return DiscussionTurn(message=message, position=position, ready=ready)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("adopt the four day week", "adopt the four day week", 1.0),
        ("Adopt the four-day week!", "adopt the four day week", 1.0),
        ("", "", 1.0),
        ("ship it now", "wait a quarter", 0.0),
    ],
)
def test_similarity_is_word_set_jaccard(a: str, b: str, expected: float) -> None:
    assert similarity(a, b) == pytest.approx(expected)


def test_quorum_of_ready_agents_stops() -> None:
    """Two thirds of five, rounded up, is four."""
    rounds = {1: {a: turn(a, ready=a != "e") for a in "abcde"}}
    decision = decide(1, rounds, team_size=5)
    assert decision.stop
    assert decision.reason == "quorum ready: 4 of 5 agents were ready to propose"


def test_below_quorum_continues() -> None:
    rounds = {1: {a: turn(a, ready=a in "abc") for a in "abcde"}}
    assert not decide(1, rounds, team_size=5).stop


def test_disagreement_in_text_never_counts_as_agreement() -> None:
    """'I agree' / 'I don't agree' in the message is ignored; only `ready` and `position` count."""
    msgs = ["I agree with everyone", "I don't agree", "Agreed, consensus!", "I agree", "agree agree"]
    rounds = {1: {f"a{i}": turn(f"position {i}", message=m) for i, m in enumerate(msgs)}}
    assert not decide(1, rounds, team_size=5).stop


def test_stable_positions_stop_from_round_two() -> None:
    r1 = {"a": turn("adopt it gradually"), "b": turn("reject it"), "c": turn("pilot in one team")}
    r2 = {"a": turn("adopt it gradually"), "b": turn("reject it"), "c": turn("abandon the idea")}
    decision = decide(2, {1: r1, 2: r2}, team_size=3)
    assert decision.stop
    assert decision.reason is not None
    assert "positions stable: 2 of 3" in decision.reason


def test_changed_positions_continue() -> None:
    r1 = {"a": turn("adopt it"), "b": turn("reject it"), "c": turn("pilot")}
    r2 = {"a": turn("reject it now"), "b": turn("pilot for a month"), "c": turn("adopt everywhere")}
    assert not decide(2, {1: r1, 2: r2}, team_size=3).stop


def test_fallbacks_count_against_the_quorum() -> None:
    rounds = {1: {"a": turn("x", ready=True), "b": None, "c": None}}
    assert not decide(1, rounds, team_size=3).stop


def test_empty_positions_are_not_stable() -> None:
    r1 = {"a": turn(""), "b": turn(""), "c": turn("")}
    assert not decide(2, {1: r1, 2: dict(r1)}, team_size=3).stop
