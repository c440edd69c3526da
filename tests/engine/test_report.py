"""SessionReport: the `ask --json` document of docs/cli.md, as a model, and its exact JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.report import Ballot, SessionReport, TranscriptEntry
from tests.helpers import CONTRACT_KEYS
from tests.storage.untyped import untyped_report


def text(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False)


def test_the_document_keeps_the_contract_key_order() -> None:
    report = SessionReport.model_validate(untyped_report())
    document = report.model_dump(mode="json")
    assert list(document) == CONTRACT_KEYS
    assert list(document["usage"])[:4] == ["llm_calls", "prompt_tokens", "completion_tokens", "cost_usd"]


def test_an_untyped_report_validates_into_the_same_bytes() -> None:
    """A report stored as a plain dict reads back as exactly that dict: keys, order, numbers."""
    stored = untyped_report()
    assert text(SessionReport.model_validate(stored).model_dump(mode="json")) == text(stored)


@pytest.mark.parametrize(
    "ballot",
    [
        {"voter": "analyst", "ranking": ["P2", "P1"]},
        {"voter": "analyst", "abstain": True},
        {"voter": "analyst"},  # a vote turn that fell back
        {"voter": "analyst", "ratings": {"P1": "five", "P2": True}},  # malformed, kept as cast
        {"voter": "analyst", "choice": None},
        {"voter": "analyst", "choice": 3, "approve": ["P1", 2]},
    ],
)
def test_a_ballot_writes_exactly_the_fields_it_was_cast_with(ballot: dict[str, Any]) -> None:
    assert text(Ballot.model_validate(ballot).model_dump(mode="json")) == text(ballot)


def test_a_malformed_ballot_is_not_coerced() -> None:
    """A rating of "5" stays a string: the tally calls it invalid, and the report shows why."""
    ballot = Ballot.model_validate({"voter": "analyst", "ratings": {"P1": "5"}})
    assert ballot.ratings == {"P1": "5"}


def test_latency_is_written_only_when_an_entry_has_it() -> None:
    plain = {"round": 1, "agent": "analyst", "content": "hello", "fallback": False}
    timed = {**plain, "latency_ms": 812.5}
    assert TranscriptEntry.model_validate(plain).model_dump(mode="json") == plain
    assert TranscriptEntry.model_validate(timed).model_dump(mode="json") == timed
