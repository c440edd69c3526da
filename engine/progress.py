"""Progress events the engine emits while a session runs, for live displays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from engine.turns import Phase

ProgressKind = Literal[
    "session_started", "step_started", "turn_completed", "step_completed", "session_completed"
]


class Progress(BaseModel):
    kind: ProgressKind
    session_id: str
    step: str | None = None
    phase: Phase | None = None
    round: int | None = None
    agent: str | None = None
    fallback: bool = False
    #: Agents still thinking in the current step.
    pending: list[str] = Field(default_factory=list)
    #: A one-line human description: the turn's gist, the stop reason...
    detail: str | None = None
    elapsed_s: float = 0.0


ProgressSink = Callable[[Progress], None]
