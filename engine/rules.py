"""The voting rules, as a closed set shared by every layer."""

from __future__ import annotations

from typing import Literal, get_args

VotingRule = Literal["majority", "rated", "ranked", "unanimity", "approval", "condorcet"]
VOTING_RULES: tuple[VotingRule, ...] = get_args(VotingRule)

#: The ballot field each rule reads (see docs/tally.md).
BALLOT_FIELD: dict[VotingRule, str] = {
    "majority": "choice",
    "unanimity": "choice",
    "rated": "ratings",
    "ranked": "ranking",
    "condorcet": "ranking",
    "approval": "approve",
}
