"""A session's configuration, validated at the boundary."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from engine.rules import VotingRule
from engine.turns import Phase

MAX_ROUNDS = 5
MAX_TOPIC_CHARS = 4000


class Limits(BaseModel):
    """Time and money a session may spend."""

    turn_timeout_s: float = Field(default=60.0, gt=0)
    session_deadline_s: float = Field(default=300.0, gt=0)
    #: The discussion's share of the deadline: no round starts, and no discussion turn runs, past it.
    #: The rest is the reserve for proposals and votes, which split it in halves: proposal turns end
    #: by the middle of it, and the votes keep the last half however long the earlier steps stalled.
    discussion_share: float = Field(default=0.6, gt=0, le=1)
    budget_tokens: int | None = Field(default=200_000, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    #: At this share of the budget, the next round is announced as the last.
    budget_warn_ratio: float = Field(default=0.8, gt=0, le=1)
    #: Characters of earlier discussion shown to an agent; keeps input tokens per turn bounded.
    context_chars: int = Field(default=3000, ge=200)
    #: Characters of one message kept in the context.
    message_chars: int = Field(default=600, ge=50)

    def step_end_s(self, phase: Phase) -> float:
        """Seconds from the session's start by which a turn of `phase` must end."""
        reserve = 1.0 - self.discussion_share
        share = {"discussion": self.discussion_share, "proposal": 1.0 - reserve / 2, "vote": 1.0}[phase]
        return share * self.session_deadline_s


class SessionConfig(BaseModel):
    topic: str
    rounds: int = Field(default=3, ge=1, le=MAX_ROUNDS)
    voting_rule: VotingRule = "rated"
    team: list[str] = Field(min_length=1)
    early_stop: bool = True
    seed: int = 0
    recusal: bool = True
    model: str | None = None
    #: Per-persona model overrides, persona id -> LiteLLM model string.
    agent_models: dict[str, str] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the topic is empty; say what the team should deliberate")
        if len(value) > MAX_TOPIC_CHARS:
            raise ValueError(f"the topic is {len(value)} characters; the limit is {MAX_TOPIC_CHARS}")
        return value

    @field_validator("team")
    @classmethod
    def _team(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"the team names a persona twice: {', '.join(value)}")
        return value
