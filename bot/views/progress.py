"""The live view of a running session, folded from the engine's `Progress` events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.views.agents import AgentRef, agent_ref
from engine.progress import Progress
from engine.turns import Phase
from personas import Persona

AgentStatus = Literal["waiting", "typing", "spoken", "failed"]

#: What each status reads as on every platform.
STATUS_TEXT: dict[AgentStatus, str] = {
    "waiting": "waiting",
    "typing": "typing…",
    "spoken": "spoken",
    "failed": "failed",
}

#: How many step notes (stop reasons, proposal counts) a view keeps; older ones scroll away.
MAX_NOTES = 5


class AgentProgress(BaseModel):
    """One agent's state in the current step."""

    model_config = ConfigDict(frozen=True)

    agent: AgentRef
    status: AgentStatus
    #: The gist of what the agent said, or why its turn failed.
    detail: str | None = None

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[self.status]


class ProgressView(BaseModel):
    """What a live message shows while a session runs."""

    model_config = ConfigDict(frozen=True)

    session_id: str | None
    #: "Starting", "Discussion round 2 of 3", "Proposals", "Voting" or "Finished".
    title: str
    phase: Phase | None
    step: str | None
    round: int | None
    rounds_planned: int
    agents: list[AgentProgress]
    #: One line per completed step that had something to say, newest last.
    notes: list[str]
    elapsed_s: float
    finished: bool
    #: The session's closing line (the winner), once finished.
    summary: str | None = None


class ProgressTracker:
    """Folds `Progress` events into the latest `ProgressView`.

    The engine sends deltas (a step started, a turn completed); a live message needs the whole
    picture each time it is edited, so the tracker keeps it. It holds no clock: elapsed time comes
    from the events, which keeps the view a pure function of what happened.
    """

    def __init__(self, team: Sequence[str], personas: Mapping[str, Persona], *, rounds_planned: int) -> None:
        self._team = list(team)
        self._refs = {agent: agent_ref(agent, personas) for agent in self._team}
        self._personas = personas
        self._rounds_planned = rounds_planned
        self._status: dict[str, AgentProgress] = {
            agent: AgentProgress(agent=ref, status="waiting") for agent, ref in self._refs.items()
        }
        self._session_id: str | None = None
        self._title = "Starting"
        self._phase: Phase | None = None
        self._step: str | None = None
        self._round: int | None = None
        self._notes: list[str] = []
        self._elapsed = 0.0
        self._finished = False
        self._summary: str | None = None

    @property
    def view(self) -> ProgressView:
        """The view as of the last event."""
        return ProgressView(
            session_id=self._session_id,
            title=self._title,
            phase=self._phase,
            step=self._step,
            round=self._round,
            rounds_planned=self._rounds_planned,
            agents=[self._status[agent] for agent in self._team],
            notes=self._notes[-MAX_NOTES:],
            elapsed_s=self._elapsed,
            finished=self._finished,
            summary=self._summary,
        )

    def update(self, event: Progress) -> ProgressView:
        """Apply one event and return the new view."""
        self._session_id = event.session_id
        self._elapsed = max(self._elapsed, event.elapsed_s)
        if event.kind == "step_started":
            self._start_step(event)
        elif event.kind == "turn_completed" and event.agent is not None:
            self._set(event.agent, "failed" if event.fallback else "spoken", event.detail)
        elif event.kind == "step_completed":
            if event.detail:
                self._notes.append(
                    f"{step_title(event.step, event.round, self._rounds_planned)}: {event.detail}"
                )
        elif event.kind == "session_completed":
            self._finished = True
            self._title = "Finished"
            self._summary = event.detail
        return self.view

    def _start_step(self, event: Progress) -> None:
        self._step, self._phase, self._round = event.step, event.phase, event.round
        self._title = step_title(event.step, event.round, self._rounds_planned)
        pending = set(event.pending)
        for agent in self._team:
            # An agent left out of `pending` already has its turn for this step (a resumed session).
            self._set(agent, "typing" if agent in pending else "spoken", None)
        for agent in sorted(pending - set(self._team)):
            self._team.append(agent)
            self._refs[agent] = agent_ref(agent, self._personas)
            self._set(agent, "typing", None)

    def _set(self, agent: str, status: AgentStatus, detail: str | None) -> None:
        if agent not in self._refs:
            self._team.append(agent)
            self._refs[agent] = agent_ref(agent, self._personas)
        self._status[agent] = AgentProgress(agent=self._refs[agent], status=status, detail=detail)


def step_title(step: str | None, round_no: int | None, rounds_planned: int) -> str:
    """A step's human title: "Discussion round 2 of 3", "Proposals", "Voting"."""
    if step is not None and step.startswith("round-"):
        number = round_no if round_no is not None else step.removeprefix("round-")
        return f"Discussion round {number} of {rounds_planned}"
    titles = {"discussion": "Discussion", "proposals": "Proposals", "votes": "Voting"}
    if step is None:
        return "Starting"
    return titles.get(step, step.capitalize())
