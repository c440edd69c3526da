"""Structured outputs are validated, whatever the model sends."""

from __future__ import annotations

import pytest

from engine.errors import LLMOutputInvalid
from engine.rules import VOTING_RULES, VotingRule
from engine.schemas import (
    ballot_problem,
    ballot_schema,
    extract_json,
    parse_ballot,
    parse_discussion,
    parse_proposal,
)

LABELS = ["A", "B", "C"]


@pytest.mark.parametrize(
    "text",
    ['{"x": 1}', '```json\n{"x": 1}\n```', 'Sure! {"x": 1} hope that helps'],
)
def test_extract_json_tolerates_fences_and_chatter(text: str) -> None:
    assert extract_json(text) == {"x": 1}


def test_extract_json_admits_raw_newlines_inside_strings() -> None:
    assert extract_json('{"reason": "two\n\nlines"}') == {"reason": "two\n\nlines"}


@pytest.mark.parametrize("text", ["Sure! Here is my answer", "[1, 2]", "", '{"x": '])
def test_extract_json_rejects_non_objects(text: str) -> None:
    with pytest.raises(LLMOutputInvalid):
        extract_json(text)


def test_discussion_turn_parses() -> None:
    turn = parse_discussion('{"message": "I think so", "position": "yes", "ready": true}')
    assert turn.ready
    assert turn.position == "yes"


@pytest.mark.parametrize("text", ['{"message": "", "position": "p", "ready": false}', '{"position": "p"}'])
def test_discussion_turn_needs_a_message(text: str) -> None:
    with pytest.raises(LLMOutputInvalid):
        parse_discussion(text)


def test_proposal_needs_title_and_description() -> None:
    with pytest.raises(LLMOutputInvalid):
        parse_proposal('{"title": " ", "description": "d", "benefits": [], "steps": []}')
    assert (
        parse_proposal('{"title": "T", "description": "D", "benefits": ["b"], "steps": ["s"]}').title == "T"
    )


FULL = {"ranking": ["B", "A"], "ratings": {"A": 3, "B": 5, "C": 1}}


@pytest.mark.parametrize(
    ("rule", "ballot", "problem"),
    [
        ("majority", FULL, None),
        ("rated", FULL, None),
        ("condorcet", FULL, None),
        ("approval", {**FULL, "ranking": ["Z"]}, "unknown option 'Z'; choose from A, B, C"),
        ("majority", {"choice": "B"}, "missing field 'ranking'"),
        ("ranked", {"ranking": ["B", "A"]}, "missing field 'ratings'"),
        ("rated", {"ratings": {"A": 5, "B": 1}}, "missing field 'ranking'"),
        ("rated", {**FULL, "ratings": {"A": 6}}, "rating 6 for 'A' is outside 1-5"),
        ("ranked", {**FULL, "ratings": {"A": True}}, "rating True for 'A' is outside 1-5"),
        ("ranked", {**FULL, "ranking": ["B", "B"]}, "option 'B' is listed twice"),
        ("condorcet", {**FULL, "ranking": []}, "missing field 'ranking'"),
        (
            "rated",
            {"ranking": "B", "ratings": {"A": 9}},
            "rating 9 for 'A' is outside 1-5",
        ),  # its own field first
    ],
)
def test_ballot_problems(rule: str, ballot: dict[str, object], problem: str | None) -> None:
    """A ballot carries a ranking and ratings under every rule."""
    assert ballot_problem(ballot, rule, LABELS) == problem  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", VOTING_RULES)
def test_the_ballot_schema_asks_for_the_whole_preference_in_the_voters_labels(rule: VotingRule) -> None:
    schema = ballot_schema(rule, LABELS)
    assert schema["required"] == (
        ["ratings", "ranking", "reason"] if rule == "rated" else ["ranking", "ratings", "reason"]
    )
    assert schema["properties"]["ranking"]["items"]["enum"] == LABELS
    assert schema["properties"]["ratings"]["required"] == LABELS


def test_parse_ballot_keeps_only_ballot_fields() -> None:
    text = '{"ranking": ["A"], "ratings": {"A": 4}, "reason": "best"}'
    assert parse_ballot(text, "majority", LABELS) == {"ratings": {"A": 4}, "ranking": ["A"]}
