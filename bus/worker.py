"""Persona agents as bus workers: read turn requests from their mailboxes, answer them.

Each persona has a mailbox; workers serving the same persona share its consumer group, so each
request is handled by exactly one of them, and a request left by a worker that died is reclaimed by
another. A request is settled only after its reply is published.

Each persona is registered in the workspace's registry (capabilities `persona:<id>` and `deliberate`)
under this worker's name, heartbeated, and left when the worker stops; the worker also sweeps the
registry, so a worker that died is reported offline by the ones still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable

from bus.backend import Bus
from bus.delivery import DeliveryConfig
from bus.mailbox import Handler, Mailbox
from bus.message import AgentMessage
from bus.registry import AgentCard, Registry
from bus.tasks import stop_task
from engine.errors import BusUnavailable
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
        self._bus = bus
        self._personas = {p.id: p for p in personas}
        self._llm = llm
        self._name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self._concurrency = concurrency
        # A turn takes seconds: take no more requests than can start, so idle workers get the rest.
        config = config or DeliveryConfig(batch=concurrency)
        self._mailboxes = {
            agent: Mailbox(bus, workspace, agent, consumer=self._name, config=config)
            for agent in self._personas
        }
        self._loops: list[asyncio.Task[int]] = []
        self._registry = Registry(bus, workspace, offline_after_s=offline_after_s, instance=self._name)
        self._presence: asyncio.Task[None] | None = None

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
        return sum(box.stats.handled for box in self._mailboxes.values())

    async def start(self) -> None:
        for mailbox in self._mailboxes.values():
            await mailbox.register()  # before returning, so requests sent next find the agent
        for persona in self._personas.values():
            await self._registry.register(card_of(persona))
        self._presence = asyncio.create_task(self._keep_presence(), name=f"presence-{self._name}")
        self._loops = [
            asyncio.create_task(
                mailbox.serve(self._handler(agent), concurrency=self._concurrency), name=f"serve-{agent}"
            )
            for agent, mailbox in self._mailboxes.items()
        ]

    async def stop(self) -> None:
        if self._presence is not None:
            await stop_task(self._presence)
            self._presence = None
            # Leave first, so that senders learn at once when no other worker serves a persona.
            with contextlib.suppress(BusUnavailable):
                for agent in self._personas:
                    await self._registry.leave(agent)
        for mailbox in self._mailboxes.values():
            mailbox.stop()
        await asyncio.gather(*(stop_task(t) for t in self._loops), return_exceptions=True)
        self._loops = []

    async def _keep_presence(self) -> None:
        """Heartbeat the personas, and sweep the registry, until stopped."""
        while True:
            await asyncio.sleep(self._registry.heartbeat_s)
            try:
                await self._registry.heartbeat(*self._personas)
                await self._registry.sweep()
            except BusUnavailable as exc:
                log.warning("roundtable.heartbeat_failed worker=%s error=%s", self._name, exc)
            except Exception:  # a bug here must not stop the heartbeat for good
                log.exception("roundtable.presence_crashed worker=%s", self._name)

    async def __aenter__(self) -> PersonaWorker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def run_burst(self, *, idle_ms: int = 200) -> int:
        """Handle everything waiting, then return how many requests were handled (for tests)."""
        handled = 0
        for agent, mailbox in self._mailboxes.items():
            handled += await mailbox.serve(
                self._handler(agent), concurrency=self._concurrency, idle_stop_ms=idle_ms
            )
        return handled

    def _handler(self, agent: str) -> Handler:
        async def handle(message: AgentMessage) -> None:
            await self._answer(agent, message)

        return handle

    async def _answer(self, agent: str, message: AgentMessage) -> None:
        persona = self._personas[agent]
        reply_to = message.metadata.get("reply_to")
        status = "ok"
        try:
            request = TurnRequest.model_validate(message.content)
        except ValueError as exc:
            log.warning("roundtable.request_invalid agent=%s error=%s", agent, exc)
            return
        try:
            reply = await respond(persona, request, self._llm)
        except Exception as exc:  # an agent bug must answer as a failure, not vanish into a timeout
            log.exception("roundtable.turn_crashed agent=%s", agent)
            status = "failed"
            reply = TurnReply(
                session_id=request.session_id,
                step=request.step,
                agent=agent,
                phase=request.phase,
                error=f"{agent} crashed: {type(exc).__name__}: {exc}",
            )
        if not reply_to:
            return
        response = AgentMessage(
            from_agent=agent,
            to_agent=message.from_agent,
            message_type="response",
            content=reply.model_dump(mode="json"),
            correlation_id=message.message_id,
            workspace_id=message.workspace_id,
            metadata={"status": status},
        )
        # A failure to publish raises: the request is not settled, and is retried.
        await self._bus.publish(reply_to, response)


def card_of(persona: Persona) -> AgentCard:
    """A persona's registry card."""
    return AgentCard(
        agent=persona.id,
        name=persona.name,
        type="persona",
        capabilities=[f"persona:{persona.id}", "deliberate"],
        meta={"emoji": persona.emoji, "role": persona.role},
    )
