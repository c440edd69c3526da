"""build_report: the session's report, derived from its event log alone."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import TypeAdapter

from engine.errors import RuleMismatch
from engine.events import SessionEvent
from engine.history import SessionLog
from engine.outcome import build_report, retally
from tests.storage.untyped import untyped_session

_EVENTS: TypeAdapter[list[SessionEvent]] = TypeAdapter(list[SessionEvent])


def rebuilt(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    session_id, _ = untyped_session()
    report = build_report(session_id, SessionLog(_EVENTS.validate_python(payloads)), status="completed")
    return report.model_dump(mode="json")


def with_no_failed_calls(usage: dict[str, Any]) -> dict[str, Any]:
    """A stored usage document as it reads now: each usage gains `llm_calls_failed` and `llm_retries`."""
    newer = {"llm_calls_failed": 0, "llm_retries": 0}
    return {
        **usage,
        **newer,
        "by_agent": {a: {**u, **newer} for a, u in usage["by_agent"].items()},
        "by_phase": {p: {**u, **newer} for p, u in usage["by_phase"].items()},
    }


def shuffled_within_steps(payloads: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The same log with each step's turns completed in another order, as concurrent turns may."""
    out: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for payload in payloads:
        if payload["kind"] == "turn_completed":
            turns.append(payload)
            continue
        random.Random(seed).shuffle(turns)
        out += [*turns, payload]
        turns = []
    return out + turns


def test_the_log_of_an_untyped_session_rebuilds_its_stored_document_with_the_exact_consensus() -> None:
    """The untyped code rounded the consensus (2 of 3 was 0.6667); the duration was taken as the report
    was built, not at completion; usage had no `llm_calls_failed` and `llm_retries` (0 here). Nothing
    else differs."""
    _, payloads = untyped_session()
    stored = payloads[-1]["result"]
    assert stored["tally"]["consensus"] == 0.6667
    again = rebuilt(payloads)
    exact = {**stored["tally"], "consensus": 2 / 3}
    assert again == {
        **stored,
        "tally": exact,
        "duration_s": again["duration_s"],
        "usage": with_no_failed_calls(stored["usage"]),
    }
    assert again["duration_s"] >= stored["duration_s"]


def test_the_order_turns_completed_in_changes_no_byte_of_the_document() -> None:
    _, payloads = untyped_session()
    for payload in payloads:  # two fallbacks, so that `degraded` has an order to keep too
        if (
            payload["kind"] == "turn_completed"
            and payload["step"] == "round-1"
            and payload["agent"] != "creative"
        ):
            payload.update(fallback=True, reason="timeout after 20s")
    documents = {json.dumps(rebuilt(shuffled_within_steps(payloads, seed))) for seed in range(6)}
    assert len(documents) == 1
    document = json.loads(documents.pop())
    team = document["team"]
    assert list(document["usage"]["by_agent"]) == team
    assert list(document["usage"]["by_phase"]) == ["discussion", "proposal", "vote"]
    assert [(d["agent"], d["step"]) for d in document["degraded"]] == [
        ("analyst", "round-1"),
        ("pragmatist", "round-1"),
    ]
    assert [t["agent"] for t in document["transcript"]] == team
    assert [b["voter"] for b in document["ballots"]] == team


def test_an_old_session_with_ballots_of_one_family_recounts_only_within_it() -> None:
    """Stored before ballots carried the whole preference: its `choice` ballots fit majority and unanimity."""
    _, payloads = untyped_session()
    log = SessionLog(_EVENTS.validate_python(payloads))
    recount = retally(log, "unanimity")
    assert recount is not None
    assert recount.rule == "unanimity"
    with pytest.raises(RuleMismatch, match="can be re-counted under: majority, unanimity"):
        retally(log, "ranked")
