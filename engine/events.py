"""The session event log: everything a session did, append-only.

Results, transcripts and analytics are derived from these events, and a crashed session resumes from
them. Each event has a key (kind, step, agent); the store keeps one event per key and session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from engine.report import SessionReport
from engine.turns import Phase, TurnReply


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    at: datetime = Field(default_factory=_now)

    @property
    def key(self) -> tuple[str, str, str]:
        kind: str = getattr(self, "kind")  # noqa: B009 - every subclass defines it as a Literal
        return (kind, getattr(self, "step", ""), getattr(self, "agent", ""))


class SessionStarted(_Event):
    """The session's configuration, frozen: a resume runs with exactly this."""

    kind: Literal["session_started"] = "session_started"
    config: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)


class TurnCompleted(_Event):
    """One agent's turn for one step, or the fallback that stood in for it."""

    kind: Literal["turn_completed"] = "turn_completed"
    step: str
    agent: str
    reply: TurnReply
    fallback: bool = False
    reason: str | None = None
    #: For votes: the ballot in proposal ids (labels mapped back), exactly as it is counted.
    ballot: dict[str, Any] | None = None
    #: The engine stopped waiting for a request it had sent (the turn timed out): its model call
    #: counts as failed unless a late reply brings its usage.
    unanswered: bool = False


class TurnsAsked(_Event):
    """The turns of one step, recorded just before they are sent to their agents.

    A turn that never comes back (it timed out and no late reply came, or it was in flight when the
    process died) still cost a model request, and the usage counts one failed call for it. A resume
    sends the step's missing turns again, under the next `attempt`, which keeps each send its own key.
    """

    kind: Literal["turns_asked"] = "turns_asked"
    step: str
    phase: Phase
    agents: list[str]
    attempt: int = 1

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.step, f"attempt-{self.attempt}")


class StepCompleted(_Event):
    """A step is done; for discussion rounds it records the early-stop decision."""

    kind: Literal["step_completed"] = "step_completed"
    step: str
    stop: bool = False
    reason: str | None = None
    last_round_announced: bool = False


class LateUsage(_Event):
    """Usage reported by a turn that arrived after the engine had given up on it."""

    kind: Literal["late_usage"] = "late_usage"
    step: str
    agent: str
    reply: TurnReply


class SessionCompleted(_Event):
    """The session's report, final: `show` and `resume` read it back rather than derive it again."""

    kind: Literal["session_completed"] = "session_completed"
    result: SessionReport


class SessionFailed(_Event):
    kind: Literal["session_failed"] = "session_failed"
    reason: str


SessionEvent = Annotated[
    SessionStarted
    | TurnsAsked
    | TurnCompleted
    | StepCompleted
    | LateUsage
    | SessionCompleted
    | SessionFailed,
    Field(discriminator="kind"),
]
