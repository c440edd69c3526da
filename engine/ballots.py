"""Reading one raw ballot: a deliberate abstention, an invalid ballot with its reason, or a preference.

Ballots arrive as raw dicts (from an agent's structured output, a stored session or a tally document),
so every type is checked here: a ballot that is wrong in any way becomes an `InvalidBallot`, counted as
an abstention, and never a vote for any candidate.

Under recusal, whatever a ballot says about its own voter's candidate is dropped *before* it is
checked: that candidate counts as unchosen, unrated and unranked. A `choice` ballot left choosing
nothing is invalid with the reason `recused`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from engine.rules import BALLOT_FIELD, VotingRule

RATING_MIN = 1
RATING_MAX = 5


class InvalidBallot(BaseModel):
    """A ballot counted as an abstention, and why."""

    voter: str
    reason: str


@dataclass(frozen=True)
class Preference:
    """A valid ballot, read.

    `points` is what the ballot adds to each candidate's score under its rule (1 for a choice or an
    approval, the rating, or the Borda points of a ranking). It doubles as the ballot's preference
    order, because in every rule a higher number means preferred, and an unchosen, unrated or unlisted
    candidate has 0. A ranking that lists all n candidates gives the last one 0 too, but then no
    candidate is unlisted, so the order still holds.

    `tops` is the ballot's top preference: the choice, the first of the ranking, every highest rating,
    or every approved candidate.
    """

    voter: str
    points: Mapping[str, int]
    tops: frozenset[str]

    def prefers(self, a: str, b: str) -> bool:
        """Whether this ballot puts `a` above `b`."""
        return self.points.get(a, 0) > self.points.get(b, 0)


class _Rejected(Exception):
    """Internal signal: the ballot is invalid, for the reason in the message."""


def is_abstention(ballot: Mapping[str, Any]) -> bool:
    """Whether the ballot is a deliberate abstention (`"abstain": true`), whatever else it carries."""
    return ballot.get("abstain") is True


def ballot_fits(rule: VotingRule, ballot: Mapping[str, Any]) -> bool:
    """Whether a stored ballot carries the field `rule` reads; an abstention fits every rule."""
    return is_abstention(ballot) or BALLOT_FIELD[rule] in ballot


#: A rating at or above this approves the candidate, when a ballot's approvals are derived.
APPROVAL_RATING = 4


def complete_ballot(ballot: Mapping[str, Any]) -> dict[str, Any]:
    """A cast ballot with its `choice` and `approve` derived from its `ranking` and `ratings`.

    A ballot carries the voter's whole preference, so that one ballot counts under every rule: the
    `choice` is the first of the ranking, and the approvals are the candidates rated
    `APPROVAL_RATING` or more, or the first of the ranking when none is. A field the ballot already
    has is kept as cast, and nothing is derived from a field of the wrong type: `read_ballot` then
    rejects the ballot with its reason, whatever the rule.
    """
    out = dict(ballot)
    ranking, ratings = out.get("ranking"), out.get("ratings")
    if not isinstance(ranking, list) or not ranking or not isinstance(ratings, dict):
        return out
    out.setdefault("choice", ranking[0])
    liked = [c for c in ranking if isinstance(ratings.get(c), int) and ratings[c] >= APPROVAL_RATING]
    liked += sorted(
        c
        for c, r in ratings.items()
        if c not in liked and isinstance(c, str) and isinstance(r, int) and r >= APPROVAL_RATING
    )
    out.setdefault("approve", liked or ranking[:1])
    return out


def read_ballot(
    rule: VotingRule,
    ballot: Mapping[str, Any],
    *,
    candidates: Sequence[str],
    own: Collection[str] = (),
) -> Preference | InvalidBallot:
    """Read a cast ballot under `rule`; `own` holds the candidates the voter must recuse from."""
    voter = str(ballot.get("voter", ""))
    field = BALLOT_FIELD[rule]
    value = ballot.get(field)
    known = set(candidates)
    try:
        if value is None:
            raise _Rejected(f"missing field '{field}'")
        if field == "choice":
            points, tops = _read_choice(value, known, own)
        elif field == "ratings":
            points, tops = _read_ratings(value, known, own)
        elif field == "ranking":
            ranking = _read_list(field, value, known, own)
            n = len(candidates)
            points = {c: n - 1 - i for i, c in enumerate(ranking)}
            tops = frozenset(ranking[:1])
        else:
            approved = _read_list(field, value, known, own)
            points = dict.fromkeys(approved, 1)
            tops = frozenset(approved)
    except _Rejected as exc:
        return InvalidBallot(voter=voter, reason=str(exc))
    return Preference(voter=voter, points=points, tops=tops)


def _read_choice(value: Any, known: set[str], own: Collection[str]) -> tuple[dict[str, int], frozenset[str]]:
    if not isinstance(value, str):
        raise _Rejected("field 'choice' must be a candidate id")
    if value in own:
        raise _Rejected("recused")
    if value not in known:
        raise _Rejected(f"unknown candidate {quote(value)}")
    return {value: 1}, frozenset({value})


def _read_ratings(value: Any, known: set[str], own: Collection[str]) -> tuple[dict[str, int], frozenset[str]]:
    if not isinstance(value, dict):
        raise _Rejected("field 'ratings' must be an object")
    points: dict[str, int] = {}
    for key, rating in value.items():
        if key in own:
            continue
        if not isinstance(key, str) or key not in known:
            raise _Rejected(f"unknown candidate {quote(key)}")
        if not isinstance(rating, int) or isinstance(rating, bool):
            raise _Rejected(f"rating {quote(rating)} for {quote(key)} is not an integer")
        if not RATING_MIN <= rating <= RATING_MAX:
            raise _Rejected(f"rating {rating} for {quote(key)} is outside {RATING_MIN}-{RATING_MAX}")
        points[key] = rating
    best = max(points.values(), default=0)
    return points, frozenset(c for c, rating in points.items() if rating == best)


def _read_list(field: str, value: Any, known: set[str], own: Collection[str]) -> list[str]:
    if not isinstance(value, list):
        raise _Rejected(f"field '{field}' must be a list")
    seen: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in known:
            raise _Rejected(f"unknown candidate {quote(item)}")
        if item in own:
            continue
        if item in seen:
            raise _Rejected(f"repeated candidate {quote(item)}")
        seen.append(item)
    return seen


def quote(value: Any) -> str:
    """A value as a reason shows it: a string in single quotes, anything else as JSON."""
    if isinstance(value, str):
        return f"'{value}'"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
