"""The context an agent sees stays bounded however many rounds ran."""

from __future__ import annotations

import pytest

from engine.context import build_context, clip
from engine.turns import DiscussionTurn


def rounds_of(n: int, agents: int = 5, words: int = 200) -> dict[int, dict[str, DiscussionTurn | None]]:
    text = " ".join(["word"] * words)
    return {
        r: {
            f"agent{i}": DiscussionTurn(message=f"r{r} {text}", position=f"position of {i} in {r}")
            for i in range(agents)
        }
        for r in range(1, n + 1)
    }


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("one two three four five", 12, "one two…"),
        ("a  b\n c", 10, "a b c"),
    ],
)
def test_clip_cuts_at_a_word_boundary(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected


def test_first_round_sees_nothing() -> None:
    assert build_context({}, before_round=1, context_chars=3000, message_chars=600) == ([], [])


def test_previous_round_in_full_and_older_rounds_as_positions() -> None:
    context, summary = build_context(rounds_of(3), before_round=4, context_chars=100_000, message_chars=600)
    assert {e.round for e in context} == {3}
    assert [(e.agent, e.round) for e in summary] == [(f"agent{i}", 2) for i in range(5)]
    assert all(e.content.startswith("position of") for e in summary)


def test_context_size_stops_growing_after_round_three() -> None:
    sizes = [
        sum(
            len(e.content)
            for part in build_context(rounds_of(6), before_round=r, context_chars=100_000, message_chars=600)
            for e in part
        )
        for r in range(3, 7)
    ]
    assert len(set(sizes)) == 1


@pytest.mark.parametrize("before_round", [2, 3, 4, 5, 6])
def test_total_context_is_capped(before_round: int) -> None:
    context, summary = build_context(
        rounds_of(5), before_round=before_round, context_chars=3000, message_chars=600
    )
    assert sum(len(e.content) for e in context + summary) <= 3000


def test_fallback_turns_are_left_out() -> None:
    rounds = rounds_of(1, agents=2)
    rounds[1]["agent1"] = None
    context, _ = build_context(rounds, before_round=2, context_chars=3000, message_chars=600)
    assert [e.agent for e in context] == ["agent0"]
