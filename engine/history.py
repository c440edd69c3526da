"""A read model over a session's event log: what has been done, derived, never stored twice."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from engine.config import SessionConfig
from engine.events import (
    LateUsage,
    SessionCompleted,
    SessionEvent,
    SessionFailed,
    SessionStarted,
    StepCompleted,
    TurnCompleted,
    TurnsAsked,
)
from engine.report import ProposalRecord
from engine.turns import BallotOption, DiscussionTurn, Phase, Usage

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def round_step(round_no: int) -> str:
    return f"round-{round_no}"


class SessionLog:
    """Everything the events say, indexed for the engine and the report."""

    def __init__(self, events: Iterable[SessionEvent]) -> None:
        self.events: list[SessionEvent] = []
        self.started: SessionStarted | None = None
        self.completed: SessionCompleted | None = None
        self.failed: SessionFailed | None = None
        self.turns: dict[tuple[str, str], TurnCompleted] = {}
        self.steps: dict[str, StepCompleted] = {}
        self.late: list[LateUsage] = []
        self.asked: list[TurnsAsked] = []
        for event in events:
            self.add(event)

    def add(self, event: SessionEvent) -> None:
        if isinstance(event, SessionStarted):
            self.started = event
        elif isinstance(event, TurnCompleted):
            self.turns[(event.step, event.agent)] = event
        elif isinstance(event, StepCompleted):
            self.steps[event.step] = event
        elif isinstance(event, LateUsage):
            self.late.append(event)
        elif isinstance(event, TurnsAsked):
            self.asked.append(event)
        elif isinstance(event, SessionCompleted):
            self.completed = event
        elif isinstance(event, SessionFailed):
            self.failed = event
        self.events.append(event)

    @property
    def config(self) -> SessionConfig:
        if self.started is None:
            raise ValueError("the log has no session_started event")
        return SessionConfig.model_validate(self.started.config)

    def turn(self, step: str, agent: str) -> TurnCompleted | None:
        return self.turns.get((step, agent))

    def discussion(self) -> dict[int, dict[str, DiscussionTurn | None]]:
        """Each round's turns, agent -> turn (None for a fallback), in team order."""
        team = self.config.team
        rounds: dict[int, dict[str, DiscussionTurn | None]] = {}
        for r in range(1, self.config.rounds + 1):
            step = round_step(r)
            if not any((step, agent) in self.turns for agent in team):
                continue
            rounds[r] = {
                agent: (t.reply.discussion if not t.fallback else None)
                for agent in team
                if (t := self.turns.get((step, agent))) is not None
            }
        return rounds

    def proposals(self) -> list[ProposalRecord]:
        """Valid proposals, numbered P1.. in team order (stable across resumes)."""
        records: list[ProposalRecord] = []
        for agent in self.config.team:
            t = self.turns.get(("proposals", agent))
            if t is None or t.fallback or t.reply.proposal is None:
                continue
            p = t.reply.proposal
            records.append(
                ProposalRecord(
                    id=f"P{len(records) + 1}",
                    author=agent,
                    title=p.title,
                    description=p.description,
                    benefits=p.benefits,
                    steps=p.steps,
                )
            )
        return records

    def usage(self) -> tuple[Usage, dict[str, Usage], dict[str, Usage]]:
        """Total usage, by agent and by phase: every reply's, late ones included, and unanswered turns.

        A late reply came after its turn had timed out, so its calls count as failed. A turn sent and
        never answered counts one failed call.
        """
        total = Usage()
        by_agent: dict[str, Usage] = {}
        by_phase: dict[str, Usage] = {}
        spent: list[tuple[str, str, Usage]] = [
            (t.agent, t.reply.phase, t.reply.usage) for t in self.turns.values()
        ]
        for late in self.late:
            usage = late.reply.usage
            spent.append(
                (late.agent, late.reply.phase, usage.model_copy(update={"llm_calls_failed": usage.llm_calls}))
            )
        spent += [
            (agent, phase, Usage(llm_calls=1, llm_calls_failed=1)) for agent, phase in self._unanswered()
        ]
        for agent, phase, usage in spent:
            total = total + usage
            by_agent[agent] = by_agent.get(agent, Usage()) + usage
            by_phase[phase] = by_phase.get(phase, Usage()) + usage
        return total, by_agent, by_phase

    def _unanswered(self) -> list[tuple[str, Phase]]:
        """(agent, phase) for each turn sent whose reply never came back, not even late."""
        sent: Counter[tuple[str, str]] = Counter()
        phases: dict[str, Phase] = {}
        for asked in self.asked:
            phases[asked.step] = asked.phase
            sent.update((asked.step, agent) for agent in asked.agents)
        settled = Counter((late.step, late.agent) for late in self.late)
        settled.update(key for key, turn in self.turns.items() if not turn.unanswered)
        return [
            (agent, phases[step])
            for (step, agent), n in sent.items()
            for _ in range(max(0, n - settled[(step, agent)]))
        ]


def ballot_options(
    voter: str, proposals: list[ProposalRecord], *, seed: int, recusal: bool
) -> tuple[list[BallotOption], dict[str, str]]:
    """The proposals one voter sees: anonymous labels, shuffled per voter, own proposal left out.

    Returns the options and the label -> proposal id map. The shuffle is seeded by (seed, voter), so a
    resumed session shows each voter the same ballot.
    """
    shown = [p for p in proposals if not (recusal and p.author == voter)]
    random.Random(f"{seed}:{voter}").shuffle(shown)
    options, labels = [], {}
    for label, p in zip(LABELS, shown, strict=False):
        options.append(
            BallotOption(
                label=label, title=p.title, description=p.description, benefits=p.benefits, steps=p.steps
            )
        )
        labels[label] = p.id
    return options, labels


def map_ballot(ballot: dict[str, Any] | None, labels: dict[str, str]) -> dict[str, Any]:
    """A ballot in labels, rewritten in proposal ids; unknown labels stay as they are, to be rejected."""
    if not ballot:
        return {}

    def one(label: Any) -> Any:
        return labels.get(label, label) if isinstance(label, str) else label

    out: dict[str, Any] = {}
    for key, value in ballot.items():
        if key == "choice":
            out[key] = one(value)
        elif key in ("ranking", "approve") and isinstance(value, list):
            out[key] = [one(v) for v in value]
        elif key == "ratings" and isinstance(value, dict):
            out[key] = {one(k): v for k, v in value.items()}
    return out
