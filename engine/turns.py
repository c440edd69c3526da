"""What the engine asks an agent for, and what comes back.

These models cross the bus, so they are plain pydantic models with a stable JSON form.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from engine.rules import VotingRule

Phase = Literal["discussion", "proposal", "vote"]


class Usage(BaseModel):
    """What model calls used.

    `llm_calls` counts every request sent to a model. `llm_calls_failed` counts those of them that
    brought nothing back in time: the provider failed it, it timed out, its reply came after the turn
    had timed out, or it was in flight when the process died.
    """

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    llm_calls_failed: int = 0
    #: Of the failed calls, those the provider answered with a 429 or a 5xx and that were tried again.
    llm_retries: int = 0

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out the newer counts when they were never set, so a usage stored before they existed
        reads back with exactly the keys it had; any usage counted now sets them."""
        data: dict[str, Any] = handler(self)
        for name in ("llm_calls_failed", "llm_retries"):
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            llm_calls=self.llm_calls + other.llm_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            llm_calls_failed=self.llm_calls_failed + other.llm_calls_failed,
            llm_retries=self.llm_retries + other.llm_retries,
        )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class DiscussionTurn(BaseModel):
    """One agent's contribution to a discussion round.

    `position` and `ready` are the structured stance the early-stop policy reads; the free text in
    `message` is never parsed for agreement.
    """

    message: str
    position: str = ""
    ready: bool = False


class Proposal(BaseModel):
    title: str
    description: str
    benefits: list[str] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)


class ContextEntry(BaseModel):
    """A line of earlier discussion, as shown to an agent."""

    round: int
    agent: str
    content: str


class BallotOption(Proposal):
    """A proposal as one voter sees it: under an anonymous label, in that voter's shuffled order."""

    label: str


class TurnRequest(BaseModel):
    session_id: str
    step: str
    agent: str
    phase: Phase
    topic: str
    round: int | None = None
    rounds_planned: int = 1
    final_round: bool = False
    context: list[ContextEntry] = Field(default_factory=list)
    #: Earlier positions, one short line per agent and round, for rounds no longer shown in full.
    summary: list[ContextEntry] = Field(default_factory=list)
    options: list[BallotOption] = Field(default_factory=list)
    voting_rule: VotingRule | None = None
    model: str | None = None
    timeout_s: float = 60.0


class TurnReply(BaseModel):
    session_id: str
    step: str
    agent: str
    phase: Phase
    discussion: DiscussionTurn | None = None
    proposal: Proposal | None = None
    #: The ballot in the voter's labels, e.g. {"ranking": ["B", "A"]}; the engine maps labels back.
    ballot: dict[str, Any] | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    raw_outputs: list[str] = Field(default_factory=list)
    #: Set when the agent could not produce valid output, even after its one repair attempt.
    error: str | None = None
    latency_ms: float = 0.0
