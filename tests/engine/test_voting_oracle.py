"""Our Borda, plurality and Copeland counts agree with pref_voting on random complete strict rankings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.voting import TallyInput, TallyResult, tally

pytestmark = pytest.mark.slow  # hundreds of random profiles, each counted by pref_voting too

pref_profiles = pytest.importorskip("pref_voting.profiles")
scoring_methods = pytest.importorskip("pref_voting.scoring_methods")
c1_methods = pytest.importorskip("pref_voting.c1_methods")

ORACLE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def profiles(draw: st.DrawFn) -> list[list[int]]:
    """1-9 voters, each with a complete strict ranking of 3-6 candidates (as indices 0..n-1)."""
    n = draw(st.integers(min_value=3, max_value=6))
    return draw(st.lists(st.permutations(range(n)), min_size=1, max_size=9))


def cid(index: int) -> str:
    return f"P{index + 1}"


def our_tally(rule: Any, rankings: list[list[int]], seed: int) -> TallyResult:
    n = len(rankings[0])
    ballots: list[dict[str, Any]]
    if rule == "majority":
        ballots = [{"voter": f"v{i}", "choice": cid(r[0])} for i, r in enumerate(rankings)]
    else:
        ballots = [{"voter": f"v{i}", "ranking": [cid(c) for c in r]} for i, r in enumerate(rankings)]
    return tally(TallyInput(rule=rule, candidates=[cid(i) for i in range(n)], seed=seed, ballots=ballots))


def top_set(result: TallyResult) -> set[str]:
    """The candidates sharing the top score, before any tie-break."""
    return set(result.tied) or {result.winner or ""}


def by_id(scores: dict[int, Any]) -> dict[str, Any]:
    return {cid(c): s for c, s in scores.items()}


@ORACLE
@given(profiles(), st.integers(min_value=0, max_value=2**32))
def test_borda_scores_and_winner_match_pref_voting(rankings: list[list[int]], seed: int) -> None:
    profile = pref_profiles.Profile(rankings)
    result = our_tally("ranked", rankings, seed)
    assert result.scores == by_id(profile.borda_scores())
    winners = {cid(c) for c in scoring_methods.borda(profile)}
    assert result.winner in winners
    assert top_set(result) == winners
    assert result.condorcet_winner == (None if (cw := profile.condorcet_winner()) is None else cid(cw))


@ORACLE
@given(profiles(), st.integers(min_value=0, max_value=2**32))
def test_plurality_scores_and_winner_match_pref_voting(rankings: list[list[int]], seed: int) -> None:
    """The majority rule with each voter's first choice is plurality."""
    profile = pref_profiles.Profile(rankings)
    result = our_tally("majority", rankings, seed)
    assert result.scores == by_id(profile.plurality_scores())
    winners = {cid(c) for c in scoring_methods.plurality(profile)}
    assert result.winner in winners
    assert top_set(result) == winners


@ORACLE
@given(profiles(), st.integers(min_value=0, max_value=2**32))
def test_copeland_scores_and_winner_match_pref_voting(rankings: list[list[int]], seed: int) -> None:
    profile = pref_profiles.Profile(rankings)
    result = our_tally("condorcet", rankings, seed)
    assert result.scores == by_id(profile.copeland_scores())
    winners = {cid(c) for c in c1_methods.copeland(profile)}
    assert result.winner in winners
    assert top_set(result) == winners
    assert result.condorcet_winner == (None if (cw := profile.condorcet_winner()) is None else cid(cw))
