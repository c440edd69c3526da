"""The decision view: what a session concluded, built from its report."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from bot.views.agents import AgentRef, agent_ref
from engine.report import SessionReport
from engine.voting import TallyResult
from personas import Persona


class VoteBar(BaseModel):
    """One proposal's line in the vote distribution."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    author: AgentRef | None
    score: float
    #: The proposal's part of all positive scores, 0..1; bars are drawn from it.
    share: float
    is_winner: bool


class DegradedEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: None when the problem is the session's, not one agent's.
    agent: AgentRef | None
    step: str
    reason: str

    @property
    def text(self) -> str:
        who = self.agent.label if self.agent is not None else "session"
        return f"{who} at {self.step}: {self.reason}"


class DegradedNotice(BaseModel):
    """Why a result deserves less trust: turns that fell back, steps that produced nothing."""

    model_config = ConfigDict(frozen=True)

    summary: str
    entries: list[DegradedEntry]


class ResultView(BaseModel):
    """Everything a result message shows; `decided` is False when there is no winner."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    status: str
    topic: str
    decided: bool
    #: Why there is no decision, when `decided` is False.
    no_decision_reason: str | None
    winner_id: str | None
    winner_title: str | None
    author: AgentRef | None
    description: str | None
    benefits: list[str]
    steps: list[str]
    consensus_percent: int | None
    rounds_run: int
    rounds_planned: int
    stopped_early: bool
    stop_reason: str | None
    voting_rule: str
    votes: list[VoteBar]
    degraded: DegradedNotice | None
    usage_line: str
    cost_usd: float
    duration_s: float

    @property
    def rounds_text(self) -> str:
        """ "2/3 rounds (everyone was ready)"."""
        text = f"{self.rounds_run}/{self.rounds_planned} rounds"
        return f"{text} ({self.stop_reason})" if self.stop_reason else text


def build_result_view(report: SessionReport, personas: Mapping[str, Persona]) -> ResultView:
    """The result view of a session's report."""
    winner = report.winner
    degraded = degraded_notice(report, personas)
    return ResultView(
        session_id=report.session_id,
        status=report.status,
        topic=report.topic,
        decided=winner is not None,
        no_decision_reason=None if winner else _no_decision_reason(degraded),
        winner_id=winner.id if winner else None,
        winner_title=winner.title if winner else None,
        author=agent_ref(winner.author, personas) if winner else None,
        description=winner.description if winner else None,
        benefits=list(winner.benefits) if winner else [],
        steps=list(winner.steps) if winner else [],
        consensus_percent=consensus_percent(report.tally) if winner else None,
        rounds_run=report.rounds_run,
        rounds_planned=report.rounds_planned,
        stopped_early=report.stopped_early,
        stop_reason=report.stop_reason,
        voting_rule=report.voting_rule,
        votes=vote_bars(report, personas),
        degraded=degraded,
        usage_line=usage_line(report),
        cost_usd=report.usage.cost_usd,
        duration_s=report.duration_s,
    )


def consensus_percent(tally: TallyResult | None) -> int | None:
    """The tally's exact consensus as a whole percentage, the one place it is rounded."""
    return round(tally.consensus * 100) if tally is not None else None


def vote_bars(report: SessionReport, personas: Mapping[str, Persona]) -> list[VoteBar]:
    """The vote distribution, in the tally's ranking order (proposal order when nothing was counted)."""
    tally = report.tally
    proposals = {p.id: p for p in report.proposals}
    scores = tally.scores if tally is not None else {}
    order = list(tally.ranking) if tally is not None and tally.ranking else list(proposals)
    order += [pid for pid in proposals if pid not in order]
    # Copeland scores can be negative; a share is a part of the positive total.
    total = sum(max(0.0, float(v)) for v in scores.values())
    bars = []
    for pid in order:
        score = float(scores.get(pid, 0))
        proposal = proposals.get(pid)
        bars.append(
            VoteBar(
                id=pid,
                title=proposal.title if proposal is not None else pid,
                author=agent_ref(proposal.author, personas) if proposal and proposal.author else None,
                score=score,
                share=max(0.0, score) / total if total > 0 else 0.0,
                is_winner=tally is not None and pid == tally.winner,
            )
        )
    return bars


def degraded_notice(report: SessionReport, personas: Mapping[str, Persona]) -> DegradedNotice | None:
    """The degraded notice, or None when every step went as planned."""
    if not report.degraded:
        return None
    entries = [
        DegradedEntry(
            agent=agent_ref(d.agent, personas) if d.agent else None,
            step=d.step,
            reason=d.reason or "failed",
        )
        for d in report.degraded
    ]
    failed_turns = sum(1 for e in entries if e.agent is not None)
    parts = []
    if failed_turns:
        parts.append(f"{failed_turns} agent turn{'s' if failed_turns != 1 else ''} failed and fell back")
    session_issues = len(entries) - failed_turns
    if session_issues:
        parts.append(f"{session_issues} step{'s' if session_issues != 1 else ''} did not complete normally")
    summary = f"This session is degraded: {' and '.join(parts)}; treat the result with care."
    return DegradedNotice(summary=summary, entries=entries)


def usage_line(report: SessionReport) -> str:
    """ "12 LLM calls · 3400+900 tokens · $0.0123 · 41.5s"."""
    usage = report.usage
    calls = usage.llm_calls
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens"
    cost = f"${usage.cost_usd:.4f}"
    duration = f"{report.duration_s:.1f}s"
    return f"{calls} LLM call{'s' if calls != 1 else ''} · {tokens} · {cost} · {duration}"


def _no_decision_reason(notice: DegradedNotice | None) -> str:
    session_level = [e.reason for e in (notice.entries if notice else []) if e.agent is None]
    why = "; ".join(session_level) if session_level else "no valid ballot was cast"
    return f"No decision was reached: {why}."
