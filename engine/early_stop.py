"""When to end the discussion before the planned number of rounds.

The policy reads only structured fields every discussion turn carries: `ready` (the agent says it can
make a proposal) and `position` (its stance in one line). Free text is never parsed for agreement, so
"I don't agree" can never count as agreement.

It stops after a round when either holds for a quorum (default two thirds, rounded up) of the team:
- **ready**: the agent answered and set `ready`;
- **stable**: the agent's position is essentially unchanged since the previous round (word-set
  Jaccard similarity at or above `stability`), i.e. further rounds are not moving anyone.

Agents that failed (fallback turns) count against the quorum, never for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pydantic import BaseModel

from engine.turns import DiscussionTurn

_WORD = re.compile(r"[a-z0-9à-ÿ]+")


class StopDecision(BaseModel):
    stop: bool
    reason: str | None = None


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets (1.0 for two empty texts)."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def decide(
    round_no: int,
    rounds: Mapping[int, Mapping[str, DiscussionTurn | None]],
    *,
    team_size: int,
    quorum: float = 2 / 3,
    stability: float = 0.8,
) -> StopDecision:
    """Whether to stop after `round_no`, given every round's turns so far (None marks a fallback)."""
    needed = max(1, math.ceil(quorum * team_size - 1e-9))
    current = rounds.get(round_no, {})
    ready = sum(1 for turn in current.values() if turn is not None and turn.ready)
    if ready >= needed:
        return StopDecision(
            stop=True, reason=f"quorum ready: {ready} of {team_size} agents were ready to propose"
        )
    previous = rounds.get(round_no - 1)
    if previous is not None:
        stable = sum(
            1
            for agent, turn in current.items()
            if turn is not None
            and (before := previous.get(agent)) is not None
            and turn.position.strip()
            and similarity(before.position, turn.position) >= stability
        )
        if stable >= needed:
            return StopDecision(
                stop=True,
                reason=(
                    f"positions stable: {stable} of {team_size} agents kept their position "
                    f"from round {round_no - 1} to {round_no}"
                ),
            )
    return StopDecision(stop=False)
