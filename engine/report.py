"""The session report: the `ask --json` document of docs/cli.md, as a typed model.

Scripts read that document by its keys and in its order, so `SessionReport.model_dump(mode="json")` is
it, field for field and in the contract's key order: add fields, never rename or reorder them. The
report is derived from the event log (`engine.outcome.build_report`) and stored with the session's
`session_completed` event; reports stored as plain dicts, before this model existed, validate into it
unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, JsonValue, SerializerFunctionWrapHandler, model_serializer

from engine.rules import VotingRule
from engine.turns import Phase, Usage
from engine.voting import TallyResult

__all__ = [
    "Ballot",
    "Degradation",
    "ProposalRecord",
    "SessionReport",
    "SessionStatus",
    "SessionUsage",
    "TranscriptEntry",
]

#: Where a session stands; the store keeps the same value on its session row.
SessionStatus = Literal["running", "completed", "failed"]


class _GivenOnly(BaseModel):
    """A model that writes its `_OPTIONAL` fields out only when they were given.

    The document has always left such keys out rather than writing them as null, and a stored one reads
    back with exactly the keys it had.
    """

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {key: value for key, value in data.items() if key in given or key not in self._OPTIONAL}


class ProposalRecord(BaseModel):
    """A valid proposal, numbered P1.. in team order; the winner is one of them."""

    id: str
    author: str
    title: str
    description: str
    benefits: list[str] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)


class Ballot(_GivenOnly):
    """One voter's ballot in proposal ids, as it was counted, with the fields of docs/tally.md.

    Values are kept as the voter cast them, unchecked: a malformed ballot belongs in the audit trail,
    and the tally's `invalid` list says why it did not count. A ballot carries only the fields it was
    cast with (none at all for a turn that fell back, `abstain` alone for a deliberate abstention).
    """

    _OPTIONAL = frozenset({"choice", "ratings", "ranking", "approve", "abstain"})

    voter: str
    choice: JsonValue = None
    ratings: dict[str, JsonValue] | None = None
    ranking: list[JsonValue] | None = None
    approve: list[JsonValue] | None = None
    abstain: bool = False


class TranscriptEntry(_GivenOnly):
    """One discussion turn; a turn that fell back carries a stand-in text and `fallback` true."""

    _OPTIONAL = frozenset({"latency_ms"})

    round: int
    agent: str
    content: str
    fallback: bool
    #: Not written by the engine; read by the statistics view when a document carries it.
    latency_ms: float | None = None


class Degradation(BaseModel):
    """Something that did not go as planned: an agent's turn that fell back, or a step of the session."""

    #: None when the problem is the session's, not one agent's.
    agent: str | None
    step: str
    reason: str


class SessionUsage(Usage):
    """What the session's model calls used, in total (the inherited fields), by agent and by phase."""

    by_agent: dict[str, Usage] = Field(default_factory=dict)
    by_phase: dict[Phase, Usage] = Field(default_factory=dict)


class SessionReport(BaseModel):
    """A session's result, proposals, ballots, transcript and cost, as `ask --json` prints it."""

    session_id: str
    status: SessionStatus
    topic: str
    voting_rule: VotingRule
    team: list[str]
    rounds_planned: int
    rounds_run: int
    stopped_early: bool
    stop_reason: str | None
    #: None only when no valid ballot was cast; `degraded` then says why.
    winner: ProposalRecord | None
    #: The counted vote (docs/tally.md); None when there was nothing to count.
    tally: TallyResult | None
    proposals: list[ProposalRecord]
    ballots: list[Ballot]
    transcript: list[TranscriptEntry]
    degraded: list[Degradation]
    usage: SessionUsage
    #: The session's own time, from its first step to its result.
    duration_s: float
    seed: int
    model: str | None
