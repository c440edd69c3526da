"""Ballots are anonymised and shuffled per voter, deterministically, without one's own proposal."""

from __future__ import annotations

from engine.events import LateUsage, TurnCompleted, TurnsAsked
from engine.history import SessionLog, ballot_options, map_ballot
from engine.report import ProposalRecord
from engine.turns import TurnReply, Usage

PROPOSALS = [
    ProposalRecord(id=f"P{i}", author=a, title=f"t{i}", description="d")
    for i, a in enumerate(["analyst", "creative", "skeptic", "pragmatist", "ethicist"], 1)
]


def test_own_proposal_is_left_out_under_recusal() -> None:
    options, labels = ballot_options("creative", PROPOSALS, seed=1, recusal=True)
    assert "P2" not in labels.values()
    assert len(options) == 4
    assert [o.label for o in options] == ["A", "B", "C", "D"]


def test_own_proposal_is_shown_without_recusal() -> None:
    _, labels = ballot_options("creative", PROPOSALS, seed=1, recusal=False)
    assert sorted(labels.values()) == ["P1", "P2", "P3", "P4", "P5"]


def test_shuffle_is_per_voter_and_deterministic() -> None:
    orders = {
        v: tuple(ballot_options(v, PROPOSALS, seed=7, recusal=False)[1].values())
        for v in ["analyst", "skeptic", "ethicist"]
    }
    assert len(set(orders.values())) > 1  # voters see different orders
    again = tuple(ballot_options("analyst", PROPOSALS, seed=7, recusal=False)[1].values())
    assert again == orders["analyst"]


def test_labels_hide_authors_and_ids() -> None:
    options, _ = ballot_options("analyst", PROPOSALS, seed=3, recusal=True)
    dumped = " ".join(o.model_dump_json() for o in options)
    assert "P1" not in dumped
    assert "skeptic" not in dumped


def test_map_ballot_translates_labels_and_keeps_unknown_ones() -> None:
    labels = {"A": "P3", "B": "P1"}
    assert map_ballot({"ranking": ["B", "A", "Z"]}, labels) == {"ranking": ["P1", "P3", "Z"]}
    assert map_ballot({"ratings": {"A": 5, "B": 2}}, labels) == {"ratings": {"P3": 5, "P1": 2}}
    assert map_ballot({"choice": "B"}, labels) == {"choice": "P1"}
    assert map_ballot(None, labels) == {}


def test_a_late_reply_brings_its_usage_marked_failed_in_place_of_the_unanswered_call() -> None:
    asked = TurnsAsked(step="round-1", phase="discussion", agents=["skeptic"])
    empty = TurnReply(session_id="s", step="round-1", agent="skeptic", phase="discussion")
    timed_out = TurnCompleted(
        step="round-1",
        agent="skeptic",
        reply=empty,
        fallback=True,
        reason="timeout after 1s",
        unanswered=True,
    )
    before, _, _ = SessionLog([asked, timed_out]).usage()
    assert (before.llm_calls, before.llm_calls_failed) == (1, 1)
    late = empty.model_copy(update={"usage": Usage(llm_calls=2, prompt_tokens=100)})
    after, by_agent, _ = SessionLog(
        [asked, timed_out, LateUsage(step="round-1", agent="skeptic", reply=late)]
    ).usage()
    assert (after.llm_calls, after.llm_calls_failed, after.prompt_tokens) == (2, 2, 100)
    assert by_agent["skeptic"] == after


def test_a_usage_stored_before_failed_calls_were_counted_reads_back_with_the_same_keys() -> None:
    stored = {"llm_calls": 3, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0}
    assert Usage.model_validate(stored).model_dump() == stored
    assert (Usage.model_validate(stored) + Usage()).model_dump() == {
        **stored,
        "llm_calls_failed": 0,
        "llm_retries": 0,
    }
