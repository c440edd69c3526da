"""Agent ports for tests: scripted replies, or the real persona turn run in this process."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from engine.errors import AgentUnavailable
from engine.ports import LLM
from engine.respond import respond
from engine.rules import VotingRule
from engine.turns import DiscussionTurn, Proposal, TurnReply, TurnRequest, Usage
from personas import Persona


class Stall:
    """A script value: the agent never answers; the engine's turn timeout ends the wait."""

    def __repr__(self) -> str:
        return "STALL"


STALL = Stall()


class Malformed(BaseModel):
    """A script value: a reply with no valid payload for its phase.

    With `error` it is what an agent sends when its output stayed invalid after its one repair (see
    `engine.respond`); without, a reply that carries nothing at all, as a broken external agent might.
    """

    model_config = ConfigDict(frozen=True)

    error: str | None = None
    raw: str = ""


#: What a script gives for one turn. A `DiscussionTurn`, a `Proposal` or a ballot dict (in the voter's
#: labels) becomes the reply's payload, whatever the phase; a `TurnReply` is returned as it is; an
#: exception is raised (`AgentUnavailable` for a failed agent, `BusUnavailable` for a lost transport).
Scripted = DiscussionTurn | Proposal | dict[str, Any] | TurnReply | Malformed | Stall | BaseException
#: A table keyed by (agent, step), or a function of the request; a missing key or None is `default`.
Script = (
    Mapping[tuple[str, str], Scripted] | Callable[[TurnRequest], Scripted | Awaitable[Scripted | None] | None]
)
UsageFor = Usage | Callable[[TurnRequest], Usage]


class ScriptedAgents:
    """An `AgentPort` whose replies are scripted per (agent, step).

    Args:
        script: a table `{(agent, step): value}` or a function `request -> value` (sync or async).
        default: the value for turns the script leaves out; by default a valid turn for the phase
            (`default_turn`), so a test scripts only what it is about.
        usage: what each reply reports having spent, or a function of the request.
        model: the model name replies report.

    Every request is kept in `asked`, in the order the engine asked.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        default: Callable[[TurnRequest], Scripted] | None = None,
        usage: UsageFor | None = None,
        model: str = "scripted",
    ) -> None:
        self._script: Script = script if script is not None else {}
        self._default = default or default_turn
        self._usage: UsageFor = (
            usage if usage is not None else Usage(llm_calls=1, prompt_tokens=80, completion_tokens=40)
        )
        self._model = model
        self.asked: list[TurnRequest] = []

    def asked_for(self, step: str) -> list[str]:
        """The agents asked for a turn in `step`, in the order they were asked."""
        return [r.agent for r in self.asked if r.step == step]

    async def ask(self, request: TurnRequest) -> TurnReply:
        self.asked.append(request)
        value = await self._value(request)
        if isinstance(value, BaseException):
            raise value
        if isinstance(value, Stall):
            await asyncio.Event().wait()  # cancelled by the engine's timeout
        if isinstance(value, TurnReply):
            return value
        usage = self._usage(request) if callable(self._usage) else self._usage
        reply = TurnReply(
            session_id=request.session_id,
            step=request.step,
            agent=request.agent,
            phase=request.phase,
            usage=usage,
            model=self._model,
        )
        if isinstance(value, Malformed):
            reply.error = value.error
            reply.raw_outputs = [value.raw] if value.raw else []
        elif isinstance(value, DiscussionTurn):
            reply.discussion = value
        elif isinstance(value, Proposal):
            reply.proposal = value
        elif isinstance(value, dict):
            reply.ballot = value
        return reply

    async def _value(self, request: TurnRequest) -> Scripted:
        value: Scripted | None
        if callable(self._script):
            found = self._script(request)
            value = await found if inspect.isawaitable(found) else found
        else:
            value = self._script.get((request.agent, request.step))
        return self._default(request) if value is None else value


def default_turn(request: TurnRequest) -> DiscussionTurn | Proposal | dict[str, Any]:
    """A valid turn for the request's phase.

    Positions change from round to round and nobody is ready, so the discussion runs its planned
    rounds unless a test scripts otherwise. A ballot prefers the first option the voter sees.
    """
    agent = request.agent
    if request.phase == "discussion":
        return DiscussionTurn(
            message=f"{agent} speaks in round {request.round}.",
            position=f"{agent} position {request.round}",
            ready=False,
        )
    if request.phase == "proposal":
        return Proposal(
            title=f"{agent} plan",
            description=f"What {agent} proposes on: {request.topic}",
            benefits=[f"{agent} benefit"],
            steps=[f"{agent} step"],
        )
    return valid_ballot(request.voting_rule or "majority", [o.label for o in request.options])


def valid_ballot(rule: VotingRule, labels: list[str]) -> dict[str, Any]:
    """A ballot valid under `rule` that prefers the labels in the order given."""
    if not labels:
        raise ValueError("a ballot needs at least one option")
    if rule in ("majority", "unanimity"):
        return {"choice": labels[0]}
    if rule == "rated":
        return {"ratings": {label: max(1, 5 - i) for i, label in enumerate(labels)}}
    if rule == "approval":
        return {"approve": labels[:1]}
    return {"ranking": list(labels)}


class InProcessAgents:
    """An `AgentPort` that takes each turn with the real `engine.respond`, in this process.

    This is what a bus worker does, minus the bus: prompt, call the `LLM`, validate, repair once.
    Pair it with `llms.FunctionLLM` to script the model instead of the agent.

    Raises `AgentUnavailable` for an agent it does not serve, as a bus with no worker for it would.
    """

    def __init__(self, personas: Mapping[str, Persona] | Iterable[Persona], llm: LLM) -> None:
        items = personas.values() if isinstance(personas, Mapping) else personas
        self._personas = {p.id: p for p in items}
        self._llm = llm
        self.asked: list[TurnRequest] = []

    async def ask(self, request: TurnRequest) -> TurnReply:
        self.asked.append(request)
        persona = self._personas.get(request.agent)
        if persona is None:
            served = ", ".join(sorted(self._personas)) or "none"
            raise AgentUnavailable(f"no agent '{request.agent}' here; serving {served}")
        return await respond(persona, request, self._llm)
