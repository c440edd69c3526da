"""Structured outputs are validated, whatever the model sends."""

from __future__ import annotations

import pytest

from engine.errors import LLMOutputInvalid
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


@pytest.mark.parametrize(
    ("rule", "ballot", "problem"),
    [
        ("majority", {"choice": "B"}, None),
        ("majority", {"choice": "Z"}, "unknown option 'Z'; choose one of A, B, C"),
        ("majority", {}, "missing field 'choice'"),
        ("rated", {"ratings": {"A": 5, "B": 1}}, None),
        ("rated", {"ratings": {"A": 6}}, "rating 6 for 'A' is outside 1-5"),
        ("rated", {"ratings": {"A": True}}, "rating True for 'A' is outside 1-5"),
        ("ranked", {"ranking": ["B", "A"]}, None),
        ("ranked", {"ranking": ["B", "B"]}, "option 'B' is listed twice"),
        ("condorcet", {"ranking": []}, "missing field 'ranking'"),
        ("approval", {"approve": ["A", "C"]}, None),
        ("approval", {"approve": ["D"]}, "unknown option 'D'; choose from A, B, C"),
    ],
)
def test_ballot_problems(rule: str, ballot: dict[str, object], problem: str | None) -> None:
    assert ballot_problem(ballot, rule, LABELS) == problem  # type: ignore[arg-type]


def test_ballot_schema_only_allows_the_voters_labels() -> None:
    schema = ballot_schema("ranked", LABELS)
    assert schema["properties"]["ranking"]["items"]["enum"] == LABELS
    rated = ballot_schema("rated", LABELS)
    assert rated["properties"]["ratings"]["required"] == LABELS


def test_parse_ballot_keeps_only_ballot_fields() -> None:
    assert parse_ballot('{"choice": "A", "reason": "best"}', "majority", LABELS) == {"choice": "A"}
