"""Persona agents as bus workers: read turn requests, answer them, acknowledge.

Workers of the same persona share one consumer group on the persona's stream, so each request is
handled by exactly one of them. A request is acknowledged only after its reply is published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

from bus.agent_port import agent_stream, stop_task
from bus.backend import Bus, Delivery
from bus.message import AgentMessage
from engine.errors import BusUnavailable
from engine.ports import LLM
from engine.respond import respond
from engine.turns import TurnReply, TurnRequest
from personas import Persona

log = logging.getLogger("roundtable.worker")

WORKER_GROUP = "agents"


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
    ) -> None:
        self._bus = bus
        self._personas = {p.id: p for p in personas}
        self._llm = llm
        self._workspace = workspace
        self._name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self.handled = 0

    @property
    def agents(self) -> list[str]:
        return list(self._personas)

    async def start(self) -> None:
        for agent in self._personas:
            await self._bus.ensure_group(agent_stream(self._workspace, agent), WORKER_GROUP)
        self._loops = [
            asyncio.create_task(self._serve(agent), name=f"serve-{agent}") for agent in self._personas
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(stop_task(t) for t in self._loops), *self._tasks, return_exceptions=True)
        self._loops, self._tasks = [], set()

    async def __aenter__(self) -> PersonaWorker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def run_burst(self, *, idle_ms: int = 200) -> int:
        """Handle everything waiting, then return how many requests were handled (for tests)."""
        for agent in self._personas:
            await self._bus.ensure_group(agent_stream(self._workspace, agent), WORKER_GROUP)
        before = self.handled
        while True:
            got = 0
            for agent in self._personas:
                stream = agent_stream(self._workspace, agent)
                deliveries = await self._bus.consume(
                    stream, WORKER_GROUP, self._name, count=20, block_ms=idle_ms
                )
                got += len(deliveries)
                await asyncio.gather(*(self._handle(stream, agent, d) for d in deliveries))
            if not got:
                return self.handled - before

    async def _serve(self, agent: str) -> None:
        stream = agent_stream(self._workspace, agent)
        backoff = 0.2
        while not self._stopping:
            try:
                deliveries = await self._bus.consume(
                    stream, WORKER_GROUP, self._name, count=10, block_ms=1000
                )
                backoff = 0.2
            except BusUnavailable as exc:
                log.warning(
                    "roundtable.worker_bus_down agent=%s error=%s retry_in=%.1fs", agent, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:  # a bug must not silently stop a persona from being served
                log.exception("roundtable.worker_loop_failed agent=%s", agent)
                await asyncio.sleep(backoff)
                continue
            for delivery in deliveries:
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(stream, agent, delivery, release=True))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _handle(self, stream: str, agent: str, delivery: Delivery, *, release: bool = False) -> None:
        try:
            message = delivery.message
            if message is None:
                log.warning("roundtable.request_malformed stream=%s error=%s", stream, delivery.error)
            elif message.is_expired():
                log.info("roundtable.request_expired agent=%s id=%s", agent, message.message_id)
            else:
                await self._answer(agent, message)
            await self._bus.ack(stream, WORKER_GROUP, [delivery.entry_id])
            self.handled += 1
        except BusUnavailable as exc:
            # Not acknowledged: the request stays pending and is delivered again.
            log.warning("roundtable.worker_reply_failed agent=%s error=%s", agent, exc)
        finally:
            if release:
                self._slots.release()

    async def _answer(self, agent: str, message: AgentMessage) -> None:
        persona = self._personas[agent]
        reply_to = message.metadata.get("reply_to")
        status = "ok"
        try:
            request = TurnRequest.model_validate(message.content)
            reply = await respond(persona, request, self._llm)
        except ValueError as exc:
            log.warning("roundtable.request_invalid agent=%s error=%s", agent, exc)
            return
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
        await self._bus.publish(reply_to, response)
