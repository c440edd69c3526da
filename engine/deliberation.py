"""The deliberation: discussion rounds, proposals, votes, as a resumable state machine.

Every completed turn is appended to the event log before the engine moves on, and every step is
skipped when the log already has it, so a session resumed after a crash continues where it stopped
and never asks for (or pays for) a completed turn again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.ballots import complete_ballot
from engine.budget import budget_state
from engine.config import SessionConfig
from engine.context import build_context
from engine.early_stop import decide
from engine.errors import AgentUnavailable
from engine.events import SessionCompleted, SessionStarted, StepCompleted, TurnCompleted, TurnsAsked
from engine.history import SessionLog, ballot_options, map_ballot, round_step
from engine.outcome import build_report
from engine.ports import AgentPort, SessionStore
from engine.progress import Progress, ProgressSink
from engine.report import SessionReport
from engine.turns import Phase, TurnReply, TurnRequest

log = logging.getLogger("roundtable.engine")

#: The worker's own model timeout is a little shorter than the turn's, so it can still reply.
_WORKER_MARGIN_S = 0.5
_STEP_NAMES: dict[Phase, str] = {"discussion": "the discussion", "proposal": "proposals", "vote": "votes"}


class Deliberation:
    """Runs (or resumes) one session to completion."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        *,
        agents: AgentPort,
        store: SessionStore,
        progress: ProgressSink | None = None,
        metadata: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` gives monotonic seconds for the session deadline; tests pass a `ManualClock`."""
        self.session_id = session_id
        self.config = config
        self._agents = agents
        self._store = store
        self._progress = progress
        self._metadata = metadata or {}
        self._clock = clock
        self._started = clock()
        self._deadline = self._started + config.limits.session_deadline_s
        self._log = SessionLog([])

    async def run(self) -> SessionReport:
        """Run every step not yet in the log, and return the session's report."""
        self._started = self._clock()
        self._log = SessionLog(await self._store.load_events(self.session_id))
        if self._log.started is None:
            await self._record(
                SessionStarted(config=self.config.model_dump(mode="json"), metadata=self._metadata)
            )
        else:
            self.config = self._log.config  # a resume runs with the configuration it started with
        self._deadline = self._started + self.config.limits.session_deadline_s
        if self._log.completed is not None:
            return self._log.completed.result
        self._emit("session_started", detail=self.config.topic)

        await self._discuss()
        await self._propose()
        await self._vote()

        report = build_report(self.session_id, self._log, status="completed")
        await self._record(SessionCompleted(result=report))
        self._emit("session_completed", detail=_winner_line(report))
        return report

    # -- the phases -------------------------------------------------------------------------

    async def _discuss(self) -> None:
        if "discussion" in self._log.steps:
            return
        cfg = self.config
        limits = cfg.limits
        last_round = cfg.rounds
        reason = f"completed all {cfg.rounds} planned rounds"
        stopped = False
        announced = ""
        for r in range(1, cfg.rounds + 1):
            step = round_step(r)
            done = self._log.steps.get(step)
            if done is None:
                if r > 1 and self._elapsed() >= limits.step_end_s("discussion"):
                    reason, stopped = f"time: {self._elapsed():.0f}s of the session deadline used", True
                    break
                context, summary = build_context(
                    self._log.discussion(),
                    before_round=r,
                    context_chars=limits.context_chars,
                    message_chars=limits.message_chars,
                )
                requests = [
                    self._request(
                        agent,
                        step,
                        "discussion",
                        round=r,
                        final_round=r >= last_round,
                        context=context,
                        summary=summary,
                    )
                    for agent in cfg.team
                ]
                await self._run_turns(step, "discussion", requests, round_no=r)
                done = await self._close_round(r, last_round)
            if done.last_round_announced:
                last_round = min(last_round, r + 1)
                announced = done.reason or "budget: last round announced"
            if done.stop:
                reason, stopped = done.reason or "stopped", r < cfg.rounds
                break
            if r >= last_round:
                if last_round < cfg.rounds:
                    reason, stopped = announced, True
                break
        await self._record(StepCompleted(step="discussion", stop=stopped, reason=reason))
        self._emit("step_completed", step="discussion", phase="discussion", detail=reason)

    async def _close_round(self, r: int, last_round: int) -> StepCompleted:
        """Decide, after round r, whether to stop, and record it."""
        cfg = self.config
        state, share = budget_state(self._log.usage()[0], cfg.limits)
        stop, reason, announce = False, None, False
        if state == "exhausted":
            stop, reason = True, f"budget exhausted: {share:.0%} spent"
        elif cfg.early_stop and r < cfg.rounds:
            decision = decide(r, self._log.discussion(), team_size=len(cfg.team))
            stop, reason = decision.stop, decision.reason
        if not stop and state == "warn" and r + 1 < last_round:
            announce, reason = True, f"budget: {share:.0%} spent, round {r + 1} announced as the last"
        if not stop and self._elapsed() >= cfg.limits.session_deadline_s:
            stop, reason = True, "time: the session deadline passed"
        step = StepCompleted(step=round_step(r), stop=stop, reason=reason, last_round_announced=announce)
        await self._record(step)
        self._emit("step_completed", step=step.step, phase="discussion", round=r, detail=reason)
        return step

    async def _propose(self) -> None:
        if "proposals" in self._log.steps:
            return
        context, summary = build_context(
            self._log.discussion(),
            before_round=len(self._log.discussion()) + 1,
            context_chars=self.config.limits.context_chars,
            message_chars=self.config.limits.message_chars,
        )
        requests = [
            self._request(agent, "proposals", "proposal", context=context, summary=summary)
            for agent in self.config.team
        ]
        await self._run_turns("proposals", "proposal", requests)
        await self._record(StepCompleted(step="proposals"))
        self._emit(
            "step_completed",
            step="proposals",
            phase="proposal",
            detail=f"{len(self._log.proposals())} proposals",
        )

    async def _vote(self) -> None:
        if "votes" in self._log.steps:
            return
        proposals = self._log.proposals()
        if proposals:
            cfg = self.config
            requests, label_maps = [], {}
            for agent in cfg.team:
                options, labels = ballot_options(agent, proposals, seed=cfg.seed, recusal=cfg.recusal)
                label_maps[agent] = labels
                if options:
                    requests.append(self._request(agent, "votes", "vote", options=options))
                elif self._log.turn("votes", agent) is None:
                    # Nothing to vote on but one's own proposal: a deliberate abstention, no model call.
                    reply = TurnReply(session_id=self.session_id, step="votes", agent=agent, phase="vote")
                    await self._record(
                        TurnCompleted(step="votes", agent=agent, reply=reply, ballot={"abstain": True})
                    )
            await self._run_turns("votes", "vote", requests, label_maps=label_maps)
        await self._record(StepCompleted(step="votes"))
        self._emit("step_completed", step="votes", phase="vote")

    # -- turns ----------------------------------------------------------------------------------

    def _request(self, agent: str, step: str, phase: Phase, **fields: Any) -> TurnRequest:
        cfg = self.config
        return TurnRequest(
            session_id=self.session_id,
            step=step,
            agent=agent,
            phase=phase,
            topic=cfg.topic,
            rounds_planned=cfg.rounds,
            voting_rule=cfg.voting_rule,
            model=cfg.agent_models.get(agent) or cfg.model,
            timeout_s=max(1.0, cfg.limits.turn_timeout_s - _WORKER_MARGIN_S),
            **fields,
        )

    async def _run_turns(
        self,
        step: str,
        phase: Phase,
        requests: Sequence[TurnRequest],
        *,
        round_no: int | None = None,
        label_maps: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Ask every agent that has no turn for this step yet, all at once."""
        todo = [r for r in requests if self._log.turn(step, r.agent) is None]
        pending = {r.agent for r in todo}
        if todo:
            attempt = 1 + sum(1 for asked in self._log.asked if asked.step == step)
            await self._record(
                TurnsAsked(step=step, phase=phase, agents=[r.agent for r in todo], attempt=attempt)
            )
        self._emit("step_started", step=step, phase=phase, round=round_no, pending=sorted(pending))

        async def one(request: TurnRequest) -> None:
            event = await self._ask(request, (label_maps or {}).get(request.agent))
            await self._record(event)
            pending.discard(request.agent)
            gist = event.reason if event.fallback else _gist(event.reply)
            self._emit(
                "turn_completed",
                step=step,
                phase=phase,
                round=round_no,
                agent=request.agent,
                fallback=event.fallback,
                pending=sorted(pending),
                detail=gist,
            )

        tasks = [asyncio.create_task(one(r)) for r in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _ask(self, request: TurnRequest, labels: dict[str, str] | None) -> TurnCompleted:
        """One turn, or its fallback. Transport failures (`BusUnavailable`) propagate.

        A turn gets no more time than its step's end (`Limits.step_end_s`), so a stalling discussion
        cannot eat the reserve that proposals and votes need.
        """
        limits = self.config.limits
        now = self._clock()
        step_end = self._started + limits.step_end_s(request.phase)
        timeout = min(limits.turn_timeout_s, step_end - now)
        base = {"step": request.step, "agent": request.agent}
        empty = TurnReply(
            session_id=self.session_id, step=request.step, agent=request.agent, phase=request.phase
        )
        try:
            if timeout <= 0:
                raise TimeoutError
            reply = await asyncio.wait_for(self._agents.ask(request), timeout)
        except TimeoutError:
            if timeout > 0:
                reason = f"timeout after {timeout:.0f}s"
            elif now >= self._deadline:
                reason = "session deadline passed"
            else:
                reason = f"the time for {_STEP_NAMES[request.phase]} passed"
            empty.error = reason
            return TurnCompleted(
                **base,
                reply=empty,
                fallback=True,
                reason=reason,
                ballot={} if labels is not None else None,
                unanswered=timeout > 0,  # a request went out and nothing came back
            )
        except AgentUnavailable as exc:
            empty.error = str(exc)
            return TurnCompleted(
                **base, reply=empty, fallback=True, reason=str(exc), ballot={} if labels is not None else None
            )
        ballot = complete_ballot(map_ballot(reply.ballot, labels)) if labels is not None else None
        problem = reply.error or _missing_payload(reply, request.phase)
        if problem:
            return TurnCompleted(**base, reply=reply, fallback=True, reason=problem, ballot=ballot)
        return TurnCompleted(**base, reply=reply, ballot=ballot)

    # -- plumbing -----------------------------------------------------------------------------

    async def _record(self, event: Any) -> None:
        await self._store.append(self.session_id, event)
        self._log.add(event)

    def _elapsed(self) -> float:
        return self._clock() - self._started

    def _emit(self, kind: Any, **fields: Any) -> None:
        if self._progress is None:
            return
        try:
            self._progress(
                Progress(kind=kind, session_id=self.session_id, elapsed_s=round(self._elapsed(), 2), **fields)
            )
        except Exception:  # a broken display must never break a session
            log.exception("roundtable.progress_failed")


def _missing_payload(reply: TurnReply, phase: Phase) -> str | None:
    """Why a reply without an error still cannot count: it carries nothing for the phase asked.

    Agents from outside can join the bus, so a well-formed reply is not proof of a well-behaved agent.
    """
    payload = {"discussion": reply.discussion, "proposal": reply.proposal, "vote": reply.ballot}[phase]
    if payload is not None:
        return None
    wanted = {"discussion": "discussion turn", "proposal": "proposal", "vote": "ballot"}[phase]
    return f"invalid reply: no {wanted} in it"


def _gist(reply: TurnReply) -> str:
    if reply.discussion is not None:
        return reply.discussion.position or reply.discussion.message[:120]
    if reply.proposal is not None:
        return reply.proposal.title
    return "voted"


def _winner_line(report: SessionReport) -> str:
    winner = report.winner
    return f"{winner.title} ({winner.author})" if winner else "no winner"
