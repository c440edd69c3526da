"""Persona agents as bus workers: read turn requests from their inboxes, answer them.

Each persona is a `ContainerAgent` (bus/agents/sdk.py), the same SDK any other agent uses: it is registered
in the workspace's registry (capabilities `persona:<id>` and `deliberate`) under this worker's name,
heartbeated, and left when the worker stops; every agent also sweeps the registry now and then, so a
worker that died is reported offline by the ones still running.

Workers serving the same persona share its consumer group, so each request is handled by exactly one
of them, and a request left by a worker that died is reclaimed by another. A request is settled only
after its reply is published on the request's reply stream (`metadata.reply_to`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

from bus.agents.registry import AgentCard
from bus.agents.sdk import ContainerAgent, Reply
from bus.backend import Bus
from bus.delivery import DeliveryConfig
from bus.message import AgentMessage
from engine.ports import LLM
from engine.respond import respond
from engine.turns import TurnReply, TurnRequest
from personas import Persona

log = logging.getLogger("roundtable.worker")


class PersonaWorker:
    """Serves a set of personas on the bus until stopped (or, in burst mode, until idle)."""

    def __init__(
        self,
        bus: Bus,
        personas: Iterable[Persona],
        llm: LLM,
        *,
        workspace: str = "default",
        concurrency: int = 8,
        name: str | None = None,
        config: DeliveryConfig | None = None,
        offline_after_s: float = 15.0,
    ) -> None:
        self._personas = {p.id: p for p in personas}
        self._llm = llm
        self._name = name or f"worker-{uuid.uuid4().hex[:8]}"
        # A turn takes seconds: take no more requests than can start, so idle workers get the rest.
        config = config or DeliveryConfig(batch=concurrency)
        self._agents = {
            persona.id: self._agent_for(
                persona,
                bus,
                workspace=workspace,
                concurrency=concurrency,
                config=config,
                offline_after_s=offline_after_s,
            )
            for persona in self._personas.values()
        }

    def _agent_for(
        self,
        persona: Persona,
        bus: Bus,
        *,
        workspace: str,
        concurrency: int,
        config: DeliveryConfig,
        offline_after_s: float,
    ) -> ContainerAgent:
        card = card_of(persona)
        agent = ContainerAgent(
            bus,
            persona.id,
            workspace=workspace,
            name=card.name,
            agent_type=card.type,
            capabilities=card.capabilities,
            meta=card.meta,
            consumer=self._name,
            concurrency=concurrency,
            config=config,
            offline_after_s=offline_after_s,
        )

        @agent.on_message(message_type="request")
        async def take_turn(message: AgentMessage) -> Reply:
            return await self._answer(persona, message)

        return agent

    @property
    def name(self) -> str:
        """This worker's consumer name in its personas' groups, and its instance name in the registry."""
        return self._name

    @property
    def agents(self) -> list[str]:
        return list(self._personas)

    @property
    def handled(self) -> int:
        """Requests answered (or settled as invalid) since this worker was made."""
        return sum(agent.stats.handled for agent in self._agents.values())

    async def start(self) -> None:
        # Each agent is registered before this returns, so requests sent next find it.
        for agent in self._agents.values():
            await agent.start()

    async def stop(self) -> None:
        """Stop serving; each persona leaves the workspace unless another worker still serves it."""
        await asyncio.gather(*(agent.stop(leave=True) for agent in self._agents.values()))

    async def __aenter__(self) -> PersonaWorker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def run_burst(self, *, idle_ms: int = 200) -> int:
        """Handle everything waiting, then return how many requests were handled (for tests)."""
        handled = 0
        for agent in self._agents.values():
            handled += await agent.run_burst(idle_ms=idle_ms)
        return handled

    async def _answer(self, persona: Persona, message: AgentMessage) -> Reply:
        agent = persona.id
        try:
            request = TurnRequest.model_validate(message.content)
        except ValueError as exc:
            log.warning("roundtable.request_invalid agent=%s error=%s", agent, exc)
            return Reply({"error": f"not a turn request: {exc}"}, status="failed")
        try:
            reply = await respond(persona, request, self._llm)
        except Exception as exc:  # an agent bug must answer as a failure, not vanish into a timeout
            log.exception("roundtable.turn_crashed agent=%s", agent)
            failed = TurnReply(
                session_id=request.session_id,
                step=request.step,
                agent=agent,
                phase=request.phase,
                error=f"{agent} crashed: {type(exc).__name__}: {exc}",
            )
            return Reply(failed.model_dump(mode="json"), status="failed")
        # The SDK publishes it on the request's reply stream; a failure to publish raises there, so the
        # request is not settled, and is retried.
        return Reply(reply.model_dump(mode="json"))


def card_of(persona: Persona) -> AgentCard:
    """A persona's registry card."""
    return AgentCard(
        agent=persona.id,
        name=persona.name,
        type="persona",
        capabilities=[f"persona:{persona.id}", "deliberate"],
        meta={"emoji": persona.emoji, "role": persona.role},
    )
