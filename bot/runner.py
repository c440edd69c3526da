"""The session runner: wires engine, bus and storage for one deliberation, new or resumed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Sequence
from typing import Any

from bot.request import SessionRequest, build_config, new_session_id
from bot.runtime import Runtime
from bot.settings import Settings
from bus import Bus, BusAgentPort, DeliveryConfig, PersonaWorker, Registry
from engine.config import SessionConfig
from engine.deliberation import Deliberation
from engine.errors import AgentUnavailable, BadRequest, BusUnavailable, ConfigError, UnknownPersona
from engine.events import LateUsage
from engine.history import SessionLog
from engine.outcome import build_report, retally
from engine.ports import LLM
from engine.progress import ProgressSink
from engine.report import SessionReport
from engine.rules import VOTING_RULES
from engine.turns import TurnReply
from llms import LiteLLMModel, import_litellm
from personas import TEAMS, Persona

#: Turns a worker runs at once per persona (and takes at a time, so idle workers get the rest).
WORKER_CONCURRENCY = 8


class SessionRunner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._workers: list[PersonaWorker] = []

    def prepare(self, request: SessionRequest) -> tuple[str, SessionConfig]:
        """Validate a request and give it an id. Raises `BadRequest`."""
        config = build_config(request, self.runtime.settings, self.runtime.personas)
        return new_session_id(), config

    async def run(
        self,
        session_id: str,
        config: SessionConfig,
        *,
        progress: ProgressSink | None = None,
        metadata: dict[str, Any] | None = None,
        external: bool = False,
    ) -> SessionReport:
        """Run a session over the bus and return its report.

        Its agents run in this process, or with `external`, in `roundtable worker` processes (see
        `wait_for_agents`).
        """
        rt = self.runtime
        bus = await rt.connect_bus()
        store = rt.store

        async def on_late(reply: TurnReply) -> None:
            await store.append(session_id, LateUsage(step=reply.step, agent=reply.agent, reply=reply))

        async with contextlib.AsyncExitStack() as stack:
            if not external:
                personas = [rt.personas[agent] for agent in config.team]
                await stack.enter_async_context(self._worker(bus, personas, rt.llm()))
            port = await stack.enter_async_context(
                BusAgentPort(bus, session_id, workspace=rt.settings.workspace, on_late=on_late)
            )
            deliberation = Deliberation(
                session_id, config, agents=port, store=store, progress=progress, metadata=metadata
            )
            try:
                return await deliberation.run()
            except BusUnavailable as exc:
                raise BusUnavailable(
                    f"{exc}; completed turns are saved: `roundtable resume {session_id}` finishes the session"
                ) from exc

    async def wait_for_agents(self, team: Sequence[str]) -> None:
        """Wait up to `external_wait_s` for workers to serve every persona of the team.

        Raises:
            AgentUnavailable: some are still not served; the message names them and how to serve them.
            ConfigError: the bus is the in-memory one, which no other process can reach.
        """
        s = self.runtime.settings
        bus = await self.runtime.connect_bus()
        if bus.name == "memory":
            raise ConfigError(
                "external agents need a bus other processes can reach, and this one is the in-memory bus; "
                "set ROUNDTABLE_BUS_URL (redis:// or nats://) here and for the workers"
            )
        registry = Registry(bus, s.workspace, offline_after_s=s.offline_after_s)
        missing = await registry.wait_for(team, timeout_s=s.external_wait_s)
        if missing:
            names = ", ".join(missing)
            raise AgentUnavailable(
                f"no worker serves {names} in workspace '{s.workspace}' after {s.external_wait_s:g}s; "
                f"start one on the same bus ({self.runtime.bus_description}): "
                f"roundtable worker --agents {','.join(missing)}"
            )

    async def serve(self, spec: str) -> PersonaWorker:
        """Start a worker for a team or a list of persona ids, in this process, until it is cancelled."""
        rt = self.runtime
        ids = list(TEAMS.get(spec, [])) or [part.strip().lower() for part in spec.split(",") if part.strip()]
        for agent in ids:
            if agent not in rt.personas:
                raise UnknownPersona(
                    f"unknown persona '{agent}'; choose from {', '.join(sorted(rt.personas))}, "
                    f"or a team: {', '.join(TEAMS)}"
                )
        if not ids:
            raise BadRequest("name the personas to serve: --agents a,b or --team default|full|compact")
        personas = [rt.personas[agent] for agent in ids]
        llm = rt.llm()
        if isinstance(llm, LiteLLMModel):
            # Import LiteLLM (seconds of CPU) before registering, not during the first turn, where it
            # would slow this worker's heartbeats enough for another worker to take its turns over.
            await asyncio.to_thread(import_litellm)
        bus = await rt.connect_bus()
        worker = self._worker(bus, personas, llm, name=f"worker-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        await worker.start()
        self._workers.append(worker)
        return worker

    def _worker(
        self, bus: Bus, personas: list[Persona], llm: LLM, *, name: str | None = None
    ) -> PersonaWorker:
        s = self.runtime.settings
        return PersonaWorker(
            bus,
            personas,
            llm,
            workspace=s.workspace,
            name=name,
            concurrency=WORKER_CONCURRENCY,
            config=delivery_config(s),
            offline_after_s=s.offline_after_s,
        )

    async def close(self) -> None:
        for worker in self._workers:
            await worker.stop()
        self._workers.clear()

    async def resume(
        self, session_id: str, *, progress: ProgressSink | None = None, external: bool = False
    ) -> SessionReport:
        """Finish an interrupted session from its event log (with `external`, by worker processes)."""
        log = SessionLog(await self.runtime.store.load_events(session_id))
        if log.started is None:
            await self.runtime.store.get_session(session_id)  # raises SessionNotFound
            raise BadRequest(f"session '{session_id}' has no recorded start; it cannot be resumed")
        if log.completed is not None:
            return log.completed.result
        if external:
            await self.wait_for_agents(log.config.team)
        return await self.run(session_id, log.config, progress=progress, external=external)

    async def show(self, session_id: str) -> SessionReport:
        """A stored session's report: the final one once completed, else derived from its events so far."""
        record = await self.runtime.store.get_session(session_id)
        log = SessionLog(await self.runtime.store.load_events(session_id))
        if log.completed is not None:
            return log.completed.result
        return build_report(session_id, log, status=record.status)

    async def retally(self, session_id: str, rule: str) -> SessionReport:
        """The report with the stored ballots counted under `rule`. Raises `BadRequest`, `RuleMismatch`."""
        if rule not in VOTING_RULES:
            raise BadRequest(f"unknown voting rule '{rule}'; choose one of {', '.join(VOTING_RULES)}")
        record = await self.runtime.store.get_session(session_id)
        log = SessionLog(await self.runtime.store.load_events(session_id))
        if "votes" not in log.steps:
            raise BadRequest(
                f"session '{session_id}' has no completed vote to re-count (status {record.status})"
            )
        retally(log, rule)  # raises RuleMismatch before anything is built
        return build_report(session_id, log, status=record.status, rule=rule)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """How persona workers take turns off the bus: a few at a time, reclaimed after the idle timeout."""
    return DeliveryConfig(batch=WORKER_CONCURRENCY, idle_timeout_s=settings.bus_idle_timeout_s)
