"""Tallies follow docs/tally.md exactly: scores, ties, invalid ballots and the output shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.ballots import complete_ballot
from engine.errors import BallotDocumentError
from engine.rules import VOTING_RULES, VotingRule
from engine.voting import (
    InvalidBallot,
    TallyInput,
    TallyResult,
    ballot_fits,
    parse_document,
    tally,
    tally_jsonl_line,
)

P3 = ["P1", "P2", "P3"]
ROOT = Path(__file__).resolve().parents[2]

CONTRACT_INPUT = """{
  "rule": "ranked",
  "candidates": ["P1", "P2", "P3"],
  "authors": {"P1": "analyst", "P2": "creative", "P3": "skeptic"},
  "recusal": false,
  "seed": 0,
  "ballots": [
    {"voter": "analyst",    "ranking": ["P2", "P1", "P3"]},
    {"voter": "creative",   "ranking": ["P1", "P3", "P2"]},
    {"voter": "skeptic",    "ranking": ["P3", "P2", "P1"]},
    {"voter": "pragmatist", "ranking": ["P2", "P1", "P3"]},
    {"voter": "ethicist",   "ranking": ["P1", "P2", "P3"]}
  ]
}"""

CONTRACT_OUTPUT = """{
  "rule": "ranked",
  "winner": "P2",
  "scores": {"P1": 6, "P2": 6, "P3": 3},
  "ranking": ["P2", "P1", "P3"],
  "tied": ["P1", "P2"],
  "tiebreak": "head_to_head",
  "valid_ballots": 5,
  "abstentions": 0,
  "invalid": [],
  "consensus": 0.4,
  "score_share": 0.4,
  "absolute_majority": null,
  "unanimity_reached": null,
  "fallback": null,
  "condorcet_winner": "P2"
}"""

OUTPUT_KEYS = [
    "rule",
    "winner",
    "scores",
    "ranking",
    "tied",
    "tiebreak",
    "valid_ballots",
    "abstentions",
    "invalid",
    "consensus",
    "score_share",
    "absolute_majority",
    "unanimity_reached",
    "fallback",
    "condorcet_winner",
]


def doc(
    rule: VotingRule,
    ballots: list[dict[str, Any]],
    *,
    candidates: list[str] = P3,
    authors: dict[str, str] | None = None,
    recusal: bool = False,
    seed: int = 0,
) -> TallyInput:
    return TallyInput(
        rule=rule, candidates=candidates, authors=authors or {}, recusal=recusal, seed=seed, ballots=ballots
    )


def cast(field: str, *values: Any) -> list[dict[str, Any]]:
    """One ballot per value, from voters v0, v1, ..."""
    return [{"voter": f"v{i}", field: value} for i, value in enumerate(values)]


def run(rule: VotingRule, ballots: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return tally(doc(rule, ballots, **kwargs)).model_dump(mode="json")


# --- the contract's example and the two worked examples -------------------------------------------


def test_contract_example_gives_the_contract_output() -> None:
    """Borda 6/6/3, P2 wins the tie head to head and is the Condorcet winner, keys in contract order."""
    out = tally(parse_document(CONTRACT_INPUT)).model_dump(mode="json")
    assert out == json.loads(CONTRACT_OUTPUT)
    assert list(out) == OUTPUT_KEYS


def test_contract_example_through_jsonl_serializes_to_the_same_json() -> None:
    line = json.dumps(json.loads(CONTRACT_INPUT))
    out = tally_jsonl_line(line, rule=None, seed=None)
    assert json.dumps(out) == json.dumps(json.loads(CONTRACT_OUTPUT))


RATED_21_21_19 = cast(
    "ratings",
    {"P1": 4, "P2": 5, "P3": 4},
    {"P1": 4, "P2": 5, "P3": 4},
    {"P1": 4, "P2": 5, "P3": 4},
    {"P1": 5, "P2": 3, "P3": 4},
    {"P1": 4, "P2": 3, "P3": 3},
)


def test_rated_tie_at_21_is_broken_head_to_head() -> None:
    """Sums 21/21/19; three ballots rate P2 above P1, so P2 wins although P1 is listed first."""
    assert run("rated", RATED_21_21_19) == {
        "rule": "rated",
        "winner": "P2",
        "scores": {"P1": 21, "P2": 21, "P3": 19},
        "ranking": ["P2", "P1", "P3"],
        "tied": ["P1", "P2"],
        "tiebreak": "head_to_head",
        "valid_ballots": 5,
        "abstentions": 0,
        "invalid": [],
        "consensus": 0.6,
        "score_share": 0.3443,
        "absolute_majority": None,
        "unanimity_reached": None,
        "fallback": None,
        "condorcet_winner": None,
    }


def test_majority_winner_with_three_of_five_holds_an_absolute_majority() -> None:
    assert run("majority", cast("choice", "P2", "P1", "P2", "P1", "P2")) == {
        "rule": "majority",
        "winner": "P2",
        "scores": {"P1": 2, "P2": 3, "P3": 0},
        "ranking": ["P2", "P1", "P3"],
        "tied": [],
        "tiebreak": None,
        "valid_ballots": 5,
        "abstentions": 0,
        "invalid": [],
        "consensus": 0.6,
        "score_share": 0.6,
        "absolute_majority": True,
        "unanimity_reached": None,
        "fallback": None,
        "condorcet_winner": None,
    }


# --- each rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ballots", "winner", "scores", "ranking"),
    [
        ("majority", cast("choice", "P3", "P1", "P3"), "P3", {"P1": 1, "P2": 0, "P3": 2}, ["P3", "P1", "P2"]),
        (
            "rated",
            # a candidate left unrated adds nothing
            cast("ratings", {"P1": 2, "P2": 5}, {"P1": 2, "P3": 1}),
            "P2",
            {"P1": 4, "P2": 5, "P3": 1},
            ["P2", "P1", "P3"],
        ),
        (
            "ranked",
            cast("ranking", ["P3", "P1", "P2"], ["P1", "P3", "P2"], ["P3", "P2", "P1"]),
            "P3",
            {"P1": 3, "P2": 1, "P3": 5},
            ["P3", "P1", "P2"],
        ),
        # a partial ranking: listed candidates get n-1, n-2, ...; the unlisted get 0
        (
            "ranked",
            cast("ranking", ["P2"], ["P3", "P2"]),
            "P2",
            {"P1": 0, "P2": 3, "P3": 2},
            ["P2", "P3", "P1"],
        ),
        ("unanimity", cast("choice", "P2", "P2"), "P2", {"P1": 0, "P2": 2, "P3": 0}, None),
        (
            "approval",
            cast("approve", ["P1", "P3"], ["P3"], ["P2", "P3"], []),
            "P3",
            {"P1": 1, "P2": 1, "P3": 3},
            None,
        ),
        (
            "condorcet",
            cast("ranking", ["P1", "P2", "P3"], ["P2", "P1", "P3"], ["P1", "P3", "P2"]),
            "P1",
            {"P1": 2, "P2": 0, "P3": -2},
            ["P1", "P2", "P3"],
        ),
    ],
)
def test_each_rule_scores_and_winner(
    rule: VotingRule,
    ballots: list[dict[str, Any]],
    winner: str,
    scores: dict[str, int],
    ranking: list[str] | None,
) -> None:
    result = tally(doc(rule, ballots))
    assert result.winner == winner
    assert result.scores == scores
    assert all(type(s) is int for s in result.scores.values())
    if ranking is not None:
        assert result.ranking == ranking
    assert sorted(result.ranking) == P3


@pytest.mark.parametrize(
    ("rule", "ballots", "absolute_majority", "score_share"),
    [
        ("majority", cast("choice", "P1", "P1", "P2", "P3"), False, 0.5),
        ("majority", cast("choice", "P1", "P1", "P2"), True, 0.6667),
        ("unanimity", cast("choice", "P1", "P1", "P1"), True, 1.0),
        ("condorcet", cast("ranking", ["P1", "P2", "P3"]), None, None),
        ("approval", cast("approve", ["P1", "P2"], ["P1"]), None, 0.6667),
    ],
)
def test_absolute_majority_and_score_share(
    rule: VotingRule, ballots: list[dict[str, Any]], absolute_majority: bool | None, score_share: float | None
) -> None:
    """absolute_majority needs more than half the valid ballots; score_share is null under condorcet."""
    result = tally(doc(rule, ballots))
    assert result.absolute_majority is absolute_majority
    assert result.score_share == score_share


@pytest.mark.parametrize(
    ("ballots", "winner", "reached", "fallback", "tiebreak"),
    [
        (cast("choice", "P2", "P2", "P2"), "P2", True, None, None),
        (cast("choice", "P2", "P2", "P1"), "P2", False, "majority", None),
        (cast("choice", "P2", "P1"), None, False, "majority", "seeded_draw"),
        ([{"voter": "v0", "choice": "P3"}, {"voter": "v1", "abstain": True}], "P3", True, None, None),
    ],
)
def test_unanimity_reached_or_falls_back_to_majority(
    ballots: list[dict[str, Any]],
    winner: str | None,
    reached: bool,
    fallback: str | None,
    tiebreak: str | None,
) -> None:
    """Unanimity counts valid ballots only; otherwise the majority winner wins with fallback 'majority'."""
    result = tally(doc("unanimity", ballots))
    if winner is not None:
        assert result.winner == winner
    assert result.unanimity_reached is reached
    assert result.fallback == fallback
    assert result.tiebreak == tiebreak


@pytest.mark.parametrize("rule", [r for r in VOTING_RULES if r != "unanimity"])
def test_unanimity_fields_are_null_under_other_rules(rule: VotingRule) -> None:
    result = tally(doc(rule, [{"voter": "v0", "choice": "P1", "ranking": ["P1"], "approve": ["P1"]}]))
    assert result.unanimity_reached is None
    assert result.fallback is None


# --- consensus --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ballots", "consensus"),
    [
        # every highest rating is a top preference: both ballots count for the winner P1
        ("rated", cast("ratings", {"P1": 5, "P2": 5}, {"P1": 4, "P2": 2}), 1.0),
        # every approved candidate is a top preference
        ("approval", cast("approve", ["P1", "P2"], ["P1"], ["P3"]), 2 / 3),
        # the first of the ranking, not the Borda score, decides the top preference
        ("ranked", cast("ranking", ["P2", "P1", "P3"], ["P3", "P1", "P2"], ["P1", "P2", "P3"]), 1 / 3),
        ("condorcet", cast("ranking", ["P2", "P1", "P3"], ["P3", "P1", "P2"], ["P1", "P2", "P3"]), 1 / 3),
    ],
)
def test_consensus_is_the_share_of_ballots_whose_top_preference_won(
    rule: VotingRule, ballots: list[dict[str, Any]], consensus: float
) -> None:
    result = tally(doc(rule, ballots))
    assert result.winner == "P1"
    assert result.consensus == consensus  # exact: tally.md never rounds it


# --- recusal ----------------------------------------------------------------------------------------

AUTHORS = {"P1": "ana", "P2": "cy", "P3": "sk"}


@pytest.mark.parametrize(
    ("rule", "ballot", "scores", "invalid"),
    [
        ("majority", {"choice": "P1"}, {"P1": 0, "P2": 0, "P3": 0}, ["recused"]),
        ("unanimity", {"choice": "P1"}, {"P1": 0, "P2": 0, "P3": 0}, ["recused"]),
        ("majority", {"choice": "P2"}, {"P1": 0, "P2": 1, "P3": 0}, []),
        # the own candidate is unranked: the others move up to n-1, n-2
        ("ranked", {"ranking": ["P1", "P2", "P3"]}, {"P1": 0, "P2": 2, "P3": 1}, []),
        ("ranked", {"ranking": ["P2", "P1", "P1"]}, {"P1": 0, "P2": 2, "P3": 0}, []),
        # P1 is unranked, so both listed candidates beat it head to head
        ("condorcet", {"ranking": ["P1", "P3", "P2"]}, {"P1": -2, "P2": 0, "P3": 2}, []),
        # whatever the ballot says about its own candidate is ignored, even a rating out of range
        ("rated", {"ratings": {"P1": 5, "P2": 3}}, {"P1": 0, "P2": 3, "P3": 0}, []),
        ("rated", {"ratings": {"P1": 9, "P2": 3}}, {"P1": 0, "P2": 3, "P3": 0}, []),
        ("approval", {"approve": ["P1", "P3"]}, {"P1": 0, "P2": 0, "P3": 1}, []),
    ],
)
def test_recusal_ignores_what_a_ballot_says_about_its_own_candidate(
    rule: VotingRule, ballot: dict[str, Any], scores: dict[str, int], invalid: list[str]
) -> None:
    result = tally(doc(rule, [{"voter": "ana", **ballot}], authors=AUTHORS, recusal=True))
    assert result.scores == scores
    assert [i.reason for i in result.invalid] == invalid


def test_without_recusal_a_voter_may_vote_for_their_own_candidate() -> None:
    result = tally(doc("majority", cast("choice", "P1"), authors={"P1": "v0"}, recusal=False))
    assert result.winner == "P1"
    assert result.invalid == []


def test_recusal_leaves_a_voters_other_candidates_alone() -> None:
    """Only candidates the voter authored are recused; an author of two recuses from both."""
    result = tally(
        doc(
            "approval",
            [{"voter": "ana", "approve": ["P1", "P2", "P3"]}],
            authors={"P1": "ana", "P2": "ana", "P3": "cy"},
            recusal=True,
        )
    )
    assert result.scores == {"P1": 0, "P2": 0, "P3": 1}


# --- invalid ballots and abstentions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ballot", "reason"),
    [
        ("majority", {}, "missing field 'choice'"),
        ("majority", {"choice": None}, "missing field 'choice'"),
        ("majority", {"ranking": ["P1"]}, "missing field 'choice'"),
        ("majority", {"choice": 2}, "field 'choice' must be a candidate id"),
        ("majority", {"choice": "P9"}, "unknown candidate 'P9'"),
        ("unanimity", {"choice": "P9"}, "unknown candidate 'P9'"),
        ("rated", {}, "missing field 'ratings'"),
        ("rated", {"ratings": "x"}, "field 'ratings' must be an object"),
        ("rated", {"ratings": {"P1": 7}}, "rating 7 for 'P1' is outside 1-5"),
        ("rated", {"ratings": {"P2": 3, "P1": 0}}, "rating 0 for 'P1' is outside 1-5"),
        ("rated", {"ratings": {"P1": 4.5}}, "rating 4.5 for 'P1' is not an integer"),
        ("rated", {"ratings": {"P1": "5"}}, "rating '5' for 'P1' is not an integer"),
        ("rated", {"ratings": {"P1": True}}, "rating true for 'P1' is not an integer"),
        ("rated", {"ratings": {"P9": 3}}, "unknown candidate 'P9'"),
        ("ranked", {}, "missing field 'ranking'"),
        ("ranked", {"ranking": "P1"}, "field 'ranking' must be a list"),
        ("ranked", {"ranking": ["P1", "P9"]}, "unknown candidate 'P9'"),
        ("ranked", {"ranking": ["P1", 2]}, "unknown candidate 2"),
        ("ranked", {"ranking": ["P1", "P2", "P1"]}, "repeated candidate 'P1'"),
        ("condorcet", {"ranking": ["P3", "P3"]}, "repeated candidate 'P3'"),
        ("condorcet", {"choice": "P3"}, "missing field 'ranking'"),
        ("approval", {}, "missing field 'approve'"),
        ("approval", {"approve": {"P1": True}}, "field 'approve' must be a list"),
        ("approval", {"approve": ["P2", "P2"]}, "repeated candidate 'P2'"),
        ("approval", {"approve": ["P0"]}, "unknown candidate 'P0'"),
        ("majority", {"abstain": "yes"}, "missing field 'choice'"),
    ],
)
def test_invalid_ballot_is_an_abstention_with_its_reason(
    rule: VotingRule, ballot: dict[str, Any], reason: str
) -> None:
    result = tally(doc(rule, [{"voter": "bad", **ballot}]))
    assert result.invalid == [InvalidBallot(voter="bad", reason=reason)]
    assert result.valid_ballots == 0
    assert result.abstentions == 1
    assert result.winner is None


VALID_BALLOTS: dict[VotingRule, list[dict[str, Any]]] = {
    "majority": cast("choice", "P2", "P3", "P2"),
    "unanimity": cast("choice", "P2", "P3", "P2"),
    "rated": cast("ratings", {"P1": 2, "P2": 4}, {"P3": 5}),
    "ranked": cast("ranking", ["P2", "P3"], ["P3", "P1", "P2"]),
    "condorcet": cast("ranking", ["P2", "P3"], ["P3", "P1", "P2"], ["P1"]),
    "approval": cast("approve", ["P2", "P3"], ["P3"]),
}
#: Each is invalid under every rule, and each names P1 somewhere.
INVALID_BALLOTS: list[dict[str, Any]] = [
    {},
    {"choice": "P9", "ranking": ["P1", "P9"], "approve": ["P1", "P9"], "ratings": {"P1": 5, "P9": 5}},
    {"choice": ["P1"], "ranking": ["P1", "P1"], "approve": ["P1", "P1"], "ratings": {"P1": 6}},
    {"choice": 1, "ranking": "P1", "approve": "P1", "ratings": ["P1"]},
    {"choice": None, "ranking": [None], "approve": [["P1"]], "ratings": {"P1": 4.0}},
]


@pytest.mark.parametrize("rule", VOTING_RULES)
@pytest.mark.parametrize("bad", INVALID_BALLOTS)
def test_an_invalid_ballot_never_adds_to_any_score(rule: VotingRule, bad: dict[str, Any]) -> None:
    """Adding a broken ballot that names P1 changes no score, winner, ranking or consensus."""
    clean = tally(doc(rule, VALID_BALLOTS[rule]))
    dirty = tally(doc(rule, [{"voter": "bad", **bad}, *VALID_BALLOTS[rule]]))
    assert dirty.invalid
    assert dirty.invalid[0].voter == "bad"
    assert dirty.abstentions == clean.abstentions + 1
    assert dirty.model_dump(exclude={"invalid", "abstentions"}) == clean.model_dump(
        exclude={"invalid", "abstentions"}
    )


@pytest.mark.parametrize(
    "ballot",
    [{"abstain": True}, {"abstain": True, "choice": "P1"}],
)
def test_deliberate_abstention_counts_as_abstention_not_invalid(ballot: dict[str, Any]) -> None:
    result = tally(doc("majority", [{"voter": "quiet", **ballot}, {"voter": "v1", "choice": "P2"}]))
    assert result.abstentions == 1
    assert result.invalid == []
    assert result.valid_ballots == 1
    assert result.scores == {"P1": 0, "P2": 1, "P3": 0}
    assert result.consensus == 1.0


def test_abstentions_add_deliberate_and_invalid_ballots() -> None:
    ballots: list[dict[str, Any]] = [
        {"voter": "a", "abstain": True},
        {"voter": "b", "choice": "P9"},
        {"voter": "c", "choice": "P1"},
        {"voter": "d"},
    ]
    result = tally(doc("majority", ballots))
    assert (result.valid_ballots, result.abstentions) == (1, 3)
    assert [i.voter for i in result.invalid] == ["b", "d"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"choice": "P1"}, {"choice": "P2"}),
        ({"choice": "P1"}, {"choice": "P1"}),
        ({"abstain": True}, {"choice": "P2"}),
        ({"choice": "P9"}, {"choice": "P2"}),
    ],
)
def test_a_second_ballot_from_the_same_voter_is_invalid_and_the_first_counts(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    ballots = [{"voter": "twice", **first}, {"voter": "other", "choice": "P3"}, {"voter": "twice", **second}]
    plain = tally(doc("majority", ballots[:2]))
    result = tally(doc("majority", ballots))
    assert result.scores == plain.scores
    assert result.valid_ballots == plain.valid_ballots
    assert result.invalid == [*plain.invalid, InvalidBallot(voter="twice", reason="duplicate voter")]
    assert result.abstentions == plain.abstentions + 1


def test_duplicate_voter_is_refused_through_the_jsonl_path() -> None:
    line = json.dumps({"rule": "approval", "candidates": P3, "ballots": cast("approve", ["P1"]) * 2})
    out = tally_jsonl_line(line, rule=None, seed=None)
    assert out["scores"] == {"P1": 1, "P2": 0, "P3": 0}
    assert out["invalid"] == [{"voter": "v0", "reason": "duplicate voter"}]


@pytest.mark.parametrize("rule", VOTING_RULES)
@pytest.mark.parametrize(
    "ballots",
    [
        [],
        [
            {"voter": "a", "abstain": True},
            {"voter": "b", "choice": 1, "ranking": 1, "ratings": 1, "approve": 1},
        ],
    ],
)
def test_no_valid_ballot_has_no_winner_but_ranks_every_candidate(
    rule: VotingRule, ballots: list[dict[str, Any]]
) -> None:
    result = tally(doc(rule, ballots, candidates=["P1", "P2", "P3", "P4"]))
    assert result.winner is None
    assert sorted(result.ranking) == ["P1", "P2", "P3", "P4"]
    assert (result.tied, result.tiebreak) == ([], None)
    assert result.valid_ballots == 0
    assert result.abstentions == len(ballots)
    assert result.consensus == 0.0
    assert result.score_share == (None if rule == "condorcet" else 0.0)
    assert result.absolute_majority == (False if rule in ("majority", "unanimity") else None)
    assert result.unanimity_reached == (False if rule == "unanimity" else None)
    assert result.condorcet_winner is None


# --- ties -------------------------------------------------------------------------------------------

CYCLE_5 = cast("ranking", *[["P1", "P2", "P3"]] * 2, *[["P2", "P3", "P1"]] * 2, ["P3", "P1", "P2"])


@pytest.mark.parametrize(
    ("rule", "ballots", "winner", "tied", "tiebreak"),
    [
        # head_to_head: the contract example, and 21/21/19 rated
        ("ranked", json.loads(CONTRACT_INPUT)["ballots"], "P2", ["P1", "P2"], "head_to_head"),
        ("rated", RATED_21_21_19, "P2", ["P1", "P2"], "head_to_head"),
        # first_places: Borda 5/2/5, P1 and P3 split 2-2 head to head, P3 is first on two ballots
        (
            "ranked",
            cast("ranking", ["P2", "P1", "P3"], ["P3", "P1", "P2"], ["P3", "P1", "P2"], ["P1", "P3", "P2"]),
            "P3",
            ["P1", "P3"],
            "first_places",
        ),
        # first_places on ratings: sums 11/8/11, a 1-1 split, P3 is among the top ratings twice
        (
            "rated",
            cast(
                "ratings",
                {"P1": 3, "P2": 4, "P3": 2},
                {"P1": 3, "P2": 1, "P3": 4},
                {"P1": 5, "P2": 3, "P3": 5},
            ),
            "P3",
            ["P1", "P3"],
            "first_places",
        ),
        # first_places on Copeland: P2 and P3 at +1 split 2-2, P2 is first on two ballots
        (
            "condorcet",
            cast("ranking", ["P2", "P3", "P1"], ["P2", "P3", "P1"], ["P1", "P3", "P2"], ["P3", "P2", "P1"]),
            "P2",
            ["P2", "P3"],
            "first_places",
        ),
        # seeded_draw: Borda 2/5/5, a 2-2 split and two first places each
        (
            "ranked",
            cast("ranking", ["P2", "P3", "P1"], ["P3", "P2", "P1"], ["P3", "P1", "P2"], ["P2", "P1", "P3"]),
            None,
            ["P2", "P3"],
            "seeded_draw",
        ),
        # a Condorcet cycle: every Copeland score is 0 and every candidate is first once
        (
            "condorcet",
            cast("ranking", ["P1", "P2", "P3"], ["P2", "P3", "P1"], ["P3", "P1", "P2"]),
            None,
            P3,
            "seeded_draw",
        ),
        # choice ballots: head to head and first places equal the vote count, so a tie goes to the draw
        ("majority", cast("choice", "P1", "P3", "P1", "P3", "P2"), None, ["P1", "P3"], "seeded_draw"),
        ("unanimity", cast("choice", "P3", "P2"), None, ["P2", "P3"], "seeded_draw"),
        ("approval", cast("approve", ["P1", "P2"], ["P2", "P3"], ["P1"]), None, ["P1", "P2"], "seeded_draw"),
    ],
)
def test_tie_break_chain(
    rule: VotingRule, ballots: list[dict[str, Any]], winner: str | None, tied: list[str], tiebreak: str
) -> None:
    result = tally(doc(rule, ballots))
    assert result.tied == tied
    assert result.tiebreak == tiebreak
    assert result.winner in tied
    if winner is not None:
        assert result.winner == winner


def test_seeded_draw_is_among_those_sharing_the_most_first_places() -> None:
    """A Copeland 3-cycle where P3 has fewer first places: across seeds the draw gives P1 or P2, never P3."""
    winners = {tally(doc("condorcet", CYCLE_5, seed=seed)).winner for seed in range(40)}
    assert winners == {"P1", "P2"}


@pytest.mark.parametrize(
    ("rule", "ballots", "ranking"),
    [
        # P1 and P2 tie at 2 below P3; P2 beats P1 head to head on two of three ballots
        (
            "ranked",
            cast("ranking", ["P3", "P2", "P1"], ["P3", "P2", "P1"], ["P1", "P3", "P2"]),
            ["P3", "P2", "P1"],
        ),
        # P1 and P3 tie at 6 below P2; P3 is rated above P1 on two of three ballots
        (
            "rated",
            cast(
                "ratings",
                {"P1": 1, "P2": 5, "P3": 2},
                {"P1": 1, "P2": 5, "P3": 2},
                {"P1": 4, "P2": 5, "P3": 2},
            ),
            ["P2", "P3", "P1"],
        ),
        # P1 and P3 tie at -1 under Copeland and split 2-2; P3 is first on one ballot, P1 on none
        (
            "condorcet",
            cast("ranking", ["P3", "P1", "P2"], ["P2", "P3", "P1"], ["P2", "P1", "P3"], ["P2", "P1", "P3"]),
            ["P2", "P3", "P1"],
        ),
    ],
)
def test_ties_below_the_top_are_ordered_by_the_same_chain(
    rule: VotingRule, ballots: list[dict[str, Any]], ranking: list[str]
) -> None:
    result = tally(doc(rule, ballots))
    assert result.ranking == ranking
    assert (result.tied, result.tiebreak) == ([], None)


def test_seeded_draw_orders_the_whole_tied_group() -> None:
    """A four-way tie ranks all four, and the winner heads the ranking."""
    result = tally(
        doc("majority", cast("choice", "P1", "P2", "P3", "P4"), candidates=["P1", "P2", "P3", "P4"])
    )
    assert sorted(result.ranking) == ["P1", "P2", "P3", "P4"]
    assert result.ranking[0] == result.winner


FOUR_WAY = doc("majority", cast("choice", "P1", "P2", "P3", "P4"), candidates=["P1", "P2", "P3", "P4"])


def test_same_document_and_seed_give_the_same_output() -> None:
    for seed in range(10):
        seeded = FOUR_WAY.model_copy(update={"seed": seed})
        assert tally(seeded) == tally(seeded.model_copy(deep=True))


def test_different_seeds_can_draw_different_winners() -> None:
    winners = {tally(FOUR_WAY.model_copy(update={"seed": seed})).winner for seed in range(30)}
    assert len(winners) > 1


def test_candidate_order_in_the_document_never_decides_a_draw() -> None:
    """The draw shuffles sorted ids: listing the candidates in another order draws the same winner."""
    for seed in range(10):
        forward = tally(FOUR_WAY.model_copy(update={"seed": seed}))
        backward = tally(FOUR_WAY.model_copy(update={"seed": seed, "candidates": ["P4", "P3", "P2", "P1"]}))
        assert forward.winner == backward.winner


@pytest.mark.server  # starts a Python process
def test_seeded_draw_is_the_same_in_another_process() -> None:
    """The draw does not depend on hash randomization: a fresh process with another hash seed agrees."""
    line = FOUR_WAY.model_copy(update={"seed": 7}).model_dump_json()
    script = (
        "import json, sys; from engine.voting import tally_jsonl_line; "
        "print(json.dumps(tally_jsonl_line(sys.stdin.read(), rule=None, seed=None)))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=line,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert outputs == {json.dumps(tally_jsonl_line(line, rule=None, seed=None)) + "\n"}


# --- Condorcet winner -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ballots", "condorcet_winner"),
    [
        ("ranked", cast("ranking", ["P1", "P3", "P2"], ["P3", "P1", "P2"], ["P3", "P2", "P1"]), "P3"),
        ("condorcet", cast("ranking", ["P1", "P3", "P2"], ["P3", "P1", "P2"], ["P3", "P2", "P1"]), "P3"),
        ("ranked", cast("ranking", ["P1", "P2", "P3"], ["P2", "P3", "P1"], ["P3", "P1", "P2"]), None),
        ("condorcet", cast("ranking", ["P1", "P2", "P3"], ["P2", "P3", "P1"], ["P3", "P1", "P2"]), None),
        # a listed candidate beats an unlisted one
        ("condorcet", cast("ranking", ["P2"], ["P2"], ["P1", "P3"]), "P2"),
        # a head-to-head draw is no win
        ("condorcet", cast("ranking", ["P1", "P2", "P3"], ["P2", "P1", "P3"]), None),
        ("rated", cast("ratings", {"P1": 5, "P2": 1, "P3": 1}), None),
        ("approval", cast("approve", ["P1"]), None),
        ("majority", cast("choice", "P1"), None),
    ],
)
def test_condorcet_winner_only_when_one_beats_all(
    rule: VotingRule, ballots: list[dict[str, Any]], condorcet_winner: str | None
) -> None:
    """Set for ranked and condorcet when a candidate beats every other; null in a cycle or other rules."""
    assert tally(doc(rule, ballots)).condorcet_winner == condorcet_winner


# --- documents --------------------------------------------------------------------------------------

CHOICES = "majority, rated, ranked, unanimity, approval, condorcet"
GOOD = {"rule": "majority", "candidates": ["P1", "P2"], "ballots": [{"voter": "a", "choice": "P2"}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("", "not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xff\xff", "not UTF-8: byte 0xff at offset 0 is not valid UTF-8 text"),
        ("[1, 2]", "the document must be a JSON object, got an array"),
        ('"ranked"', "the document must be a JSON object, got a string"),
        (
            {**GOOD, "rule": "rnaked"},
            f"unknown voting rule 'rnaked'; choose one of {CHOICES}",
        ),
        (
            {k: v for k, v in GOOD.items() if k != "rule"},
            f"missing 'rule'; choose one of {CHOICES}",
        ),
        ({**GOOD, "candidates": []}, "no candidates: 'candidates' must be a non-empty list of ids"),
        ({**GOOD, "candidates": None}, "no candidates: 'candidates' must be a non-empty list of ids"),
        (
            {k: v for k, v in GOOD.items() if k != "candidates"},
            "no candidates: 'candidates' must be a non-empty list of ids",
        ),
        ({**GOOD, "candidates": ["P1", 2]}, "candidate ids must be strings, got 2"),
        ({**GOOD, "candidates": ["P1", "P2", "P1"]}, "duplicate candidate id 'P1'"),
        ({**GOOD, "ballots": {"voter": "a"}}, "'ballots' must be a list of ballots, got an object"),
        (
            {k: v for k, v in GOOD.items() if k != "ballots"},
            "missing 'ballots': it must be a list of ballots",
        ),
        (
            {**GOOD, "ballots": [{"voter": "a", "choice": "P1"}, {"choice": "P1"}]},
            "ballots[1] has no 'voter'",
        ),
        ({**GOOD, "ballots": [{"voter": "", "choice": "P1"}]}, "ballots[0] has no 'voter'"),
        ({**GOOD, "ballots": [{"voter": 7, "choice": "P1"}]}, "ballots[0]: 'voter' must be a string, got 7"),
        ({**GOOD, "ballots": ["P1"]}, "ballots[0] must be an object, got a string"),
        ({**GOOD, "authors": ["a"]}, "'authors' must be an object mapping candidate ids to voter ids"),
        ({**GOOD, "recusal": "yes"}, "'recusal' must be true or false, got 'yes'"),
        ({**GOOD, "seed": "7"}, "'seed' must be an integer, got '7'"),
    ],
)
def test_malformed_document_raises_a_one_line_reason(raw: str | bytes | dict[str, Any], message: str) -> None:
    with pytest.raises(BallotDocumentError) as caught:
        parse_document(raw)
    assert str(caught.value) == message
    assert "\n" not in message


def test_unknown_rule_override_is_rejected_even_when_the_document_rule_is_fine() -> None:
    with pytest.raises(BallotDocumentError, match="unknown voting rule 'Ranked'; choose one of"):
        parse_document(GOOD, rule="Ranked")


@pytest.mark.parametrize(
    ("raw", "kwargs", "rule", "seed"),
    [
        (json.dumps(GOOD), {}, "majority", 0),
        (json.dumps(GOOD).encode(), {}, "majority", 0),
        ({**GOOD, "seed": 3}, {}, "majority", 3),
        ({**GOOD, "seed": 3}, {"seed": 9}, "majority", 9),
        ({**GOOD, "rule": "rnaked"}, {"rule": "approval"}, "approval", 0),
        ({k: v for k, v in GOOD.items() if k != "rule"}, {"rule": "ranked"}, "ranked", 0),
    ],
)
def test_parse_document_applies_overrides(
    raw: str | bytes | dict[str, Any], kwargs: dict[str, Any], rule: str, seed: int
) -> None:
    """--rule and --seed override the document's own values, even an invalid rule."""
    parsed = parse_document(raw, **kwargs)
    assert (parsed.rule, parsed.seed) == (rule, seed)
    assert parsed.recusal is False
    assert parsed.authors == {}


def test_parse_document_does_not_change_the_dict_it_was_given() -> None:
    raw = dict(GOOD)
    parse_document(raw, rule="ranked", seed=4)
    assert raw == GOOD


def test_wrong_ballot_types_are_invalid_ballots_not_a_malformed_document() -> None:
    parsed = parse_document({**GOOD, "rule": "rated", "ballots": [{"voter": "a", "ratings": "x"}]})
    assert tally(parsed).invalid == [InvalidBallot(voter="a", reason="field 'ratings' must be an object")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"candidates": []},
        {"candidates": ["P1", "P1"]},
        {"ballots": [{"choice": "P1"}]},
    ],
)
def test_tally_input_built_directly_refuses_a_malformed_document(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BallotDocumentError):
        TallyInput(**{"rule": "majority", "candidates": ["P1"], "ballots": [], **kwargs})


def test_jsonl_line_reports_a_malformed_line_as_an_error_object() -> None:
    assert tally_jsonl_line("nope", rule=None, seed=None) == {
        "error": "not JSON: Expecting value at line 1 column 1"
    }


@pytest.mark.parametrize(("rule", "seed"), [(None, None), ("approval", None), (None, 5), ("majority", 11)])
def test_jsonl_line_applies_rule_and_seed_overrides(rule: str | None, seed: int | None) -> None:
    line = json.dumps({**GOOD, "seed": 2, "ballots": [{"voter": "a", "choice": "P2", "approve": ["P1"]}]})
    out = tally_jsonl_line(line, rule=rule, seed=seed)
    expected = tally(parse_document(line, rule=rule, seed=seed)).model_dump(mode="json")
    assert out == expected
    assert out["rule"] == (rule or "majority")
    assert out["winner"] == ("P1" if rule == "approval" else "P2")


def test_result_round_trips_through_json() -> None:
    result = tally(doc("ranked", json.loads(CONTRACT_INPUT)["ballots"]))
    assert TallyResult.model_validate_json(result.model_dump_json()) == result


# --- ballot_fits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ballot", "fits"),
    [
        ("majority", {"voter": "a", "choice": "P1"}, True),
        ("unanimity", {"voter": "a", "choice": "P1"}, True),
        ("ranked", {"voter": "a", "choice": "P1"}, False),
        ("ranked", {"voter": "a", "ranking": ["P1"]}, True),
        ("condorcet", {"voter": "a", "ranking": ["P1"]}, True),
        ("rated", {"voter": "a", "ranking": ["P1"]}, False),
        ("rated", {"voter": "a", "ratings": {"P1": 3}}, True),
        ("approval", {"voter": "a", "approve": []}, True),
        ("approval", {"voter": "a"}, False),
        ("approval", {"voter": "a", "abstain": True}, True),
        ("rated", {"voter": "a", "abstain": True}, True),
    ],
)
def test_ballot_fits_when_it_carries_the_rules_field(
    rule: VotingRule, ballot: dict[str, Any], fits: bool
) -> None:
    assert ballot_fits(rule, ballot) is fits


@pytest.mark.parametrize(
    ("ballot", "choice", "approve"),
    [
        ({"ranking": ["P2", "P1", "P3"], "ratings": {"P1": 4, "P2": 5, "P3": 1}}, "P2", ["P2", "P1"]),
        ({"ranking": ["P3", "P1"], "ratings": {"P1": 2, "P3": 3}}, "P3", ["P3"]),  # none rated 4: the first
        ({"ranking": ["P1"], "ratings": {"P1": 3, "P2": 4}}, "P1", ["P2"]),  # rated but unranked
    ],
)
def test_a_full_preference_ballot_derives_its_choice_and_approvals(
    ballot: dict[str, Any], choice: str, approve: list[str]
) -> None:
    completed = complete_ballot(ballot)
    assert (completed["choice"], completed["approve"]) == (choice, approve)
    for rule in VOTING_RULES:
        assert ballot_fits(rule, completed)


@pytest.mark.parametrize(
    "ballot",
    [
        {"ranking": ["P1"]},
        {"ratings": {"P1": 5}},
        {"ranking": "P1", "ratings": {"P1": 5}},
        {"ranking": ["P1"], "ratings": {"P1": 5}, "choice": "P3", "approve": []},
    ],
)
def test_completing_a_ballot_derives_nothing_it_lacks_the_grounds_for_and_keeps_what_was_cast(
    ballot: dict[str, Any],
) -> None:
    completed = complete_ballot(ballot)
    assert {k: completed[k] for k in ballot} == ballot
    if "choice" not in ballot:
        assert "choice" not in completed
