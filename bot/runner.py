"""The session runner: wires engine, bus and storage for one deliberation, new or resumed."""

from __future__ import annotations

from typing import Any

from bot.request import SessionRequest, build_config, new_session_id
from bot.runtime import Runtime
from bus.agent_port import BusAgentPort
from bus.worker import PersonaWorker
from engine.deliberation import Deliberation
from engine.errors import BadRequest, BusUnavailable, UnknownPersona
from engine.events import LateUsage
from engine.log import SessionLog
from engine.progress import ProgressSink
from engine.report import build_report, retally
from engine.rules import VOTING_RULES
from engine.turns import TurnReply
from personas import TEAMS


class SessionRunner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._workers: list[PersonaWorker] = []

    def prepare(self, request: SessionRequest) -> tuple[str, Any]:
        """Validate a request and give it an id. Raises `BadRequest`."""
        config = build_config(request, self.runtime.settings, self.runtime.personas)
        return new_session_id(), config

    async def run(
        self,
        session_id: str,
        config: Any,
        *,
        progress: ProgressSink | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a session with in-process agents over the bus, and return its document."""
        rt = self.runtime
        bus = await rt.connect_bus()
        personas = [rt.personas[agent] for agent in config.team]
        llm = rt.llm()
        store = rt.store

        async def on_late(reply: TurnReply) -> None:
            await store.append(session_id, LateUsage(step=reply.step, agent=reply.agent, reply=reply))

        async with (
            PersonaWorker(bus, personas, llm, workspace=rt.settings.workspace),
            BusAgentPort(bus, session_id, workspace=rt.settings.workspace, on_late=on_late) as port,
        ):
            deliberation = Deliberation(
                session_id, config, agents=port, store=store, progress=progress, metadata=metadata
            )
            try:
                return await deliberation.run()
            except BusUnavailable as exc:
                raise BusUnavailable(
                    f"{exc}; completed turns are saved: `roundtable resume {session_id}` finishes the session"
                ) from exc

    async def serve(self, spec: str) -> list[str]:
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
        bus = await rt.connect_bus()
        worker = PersonaWorker(bus, personas, rt.llm(), workspace=rt.settings.workspace)
        await worker.start()
        self._workers.append(worker)
        return worker.agents

    async def close(self) -> None:
        for worker in self._workers:
            await worker.stop()
        self._workers.clear()

    async def resume(self, session_id: str, *, progress: ProgressSink | None = None) -> dict[str, Any]:
        """Finish an interrupted session from its event log."""
        log = SessionLog(await self.runtime.store.load_events(session_id))
        if log.started is None:
            await self.runtime.store.get_session(session_id)  # raises SessionNotFound
            raise BadRequest(f"session '{session_id}' has no recorded start; it cannot be resumed")
        if log.completed is not None:
            return log.completed.result
        return await self.run(session_id, log.config, progress=progress)

    async def show(self, session_id: str) -> dict[str, Any]:
        record = await self.runtime.store.get_session(session_id)
        log = SessionLog(await self.runtime.store.load_events(session_id))
        if log.completed is not None:
            return log.completed.result
        return build_report(session_id, log, status=record.status)

    async def retally(self, session_id: str, rule: str) -> dict[str, Any]:
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
