"""Ballots are anonymised and shuffled per voter, deterministically, without one's own proposal."""

from __future__ import annotations

from engine.history import ballot_options, map_ballot
from engine.report import ProposalRecord

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
