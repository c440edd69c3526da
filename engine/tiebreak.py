"""Head-to-head counts, and the tie-break chain that orders candidates sharing a score.

The chain (docs/tally.md) is:
1. `head_to_head`: a tied candidate that beats each of the other tied ones head to head wins;
2. `first_places`: otherwise the tied candidate that is the top preference on the most ballots wins;
3. `seeded_draw`: otherwise a draw among those sharing the most first places.

The draw shuffles the *sorted* tied ids with `random.Random(seed)`, so it depends only on the ids and
the seed: never on list order, `hash()` or the process. No candidate wins by being first in a list.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from engine.ballots import Preference

TieBreak = Literal["head_to_head", "first_places", "seeded_draw"]


@dataclass(frozen=True)
class Evidence:
    """All the chain reads besides the seed, counted once over the valid ballots."""

    #: (a, b) -> how many ballots prefer a to b.
    prefer: Mapping[tuple[str, str], int]
    #: candidate -> on how many ballots it is a top preference.
    first_places: Mapping[str, int]

    @classmethod
    def of(cls, candidates: Sequence[str], preferences: Sequence[Preference]) -> Evidence:
        prefer = {
            (a, b): sum(1 for p in preferences if p.prefers(a, b))
            for a in candidates
            for b in candidates
            if a != b
        }
        first = {c: sum(1 for p in preferences if c in p.tops) for c in candidates}
        return cls(prefer=prefer, first_places=first)

    def beats(self, a: str, b: str) -> bool:
        """Whether more ballots prefer `a` to `b` than `b` to `a`."""
        return self.prefer[(a, b)] > self.prefer[(b, a)]


def copeland_scores(candidates: Sequence[str], evidence: Evidence) -> dict[str, int]:
    """Head-to-head wins minus losses of each candidate against every other."""
    return {
        c: sum(1 if evidence.beats(c, o) else -1 if evidence.beats(o, c) else 0 for o in candidates if o != c)
        for c in candidates
    }


def condorcet_winner(candidates: Sequence[str], evidence: Evidence) -> str | None:
    """The candidate that beats every other head to head, if there is one (there is at most one)."""
    for c in candidates:
        if all(evidence.beats(c, o) for o in candidates if o != c):
            return c
    return None


def order_tied(group: Sequence[str], evidence: Evidence, *, seed: int) -> tuple[list[str], TieBreak | None]:
    """Order candidates that share a score, best first, by repeating the chain on those left.

    Returns the order and the step that decided the first place (None for a single candidate).
    """
    draw = sorted(group)
    random.Random(seed).shuffle(draw)
    left = list(group)
    ordered: list[str] = []
    first_step: TieBreak | None = None
    while len(left) > 1:
        pick, step = _decide(left, evidence, draw)
        if not ordered:
            first_step = step
        ordered.append(pick)
        left.remove(pick)
    return ordered + left, first_step


def _decide(tied: Sequence[str], evidence: Evidence, draw: Sequence[str]) -> tuple[str, TieBreak]:
    for c in tied:
        if all(evidence.beats(c, o) for o in tied if o != c):
            return c, "head_to_head"
    most = max(evidence.first_places[c] for c in tied)
    leaders = [c for c in tied if evidence.first_places[c] == most]
    if len(leaders) == 1:
        return leaders[0], "first_places"
    return next(c for c in draw if c in leaders), "seeded_draw"
