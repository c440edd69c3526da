"""The decision view: what a session concluded, built from its `ask --json` document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.views.agents import AgentRef, agent_ref
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


def build_result_view(doc: Mapping[str, Any], personas: Mapping[str, Persona]) -> ResultView:
    """The result view of a session document (the `ask --json` shape of contracts/cli.md)."""
    winner = doc.get("winner")
    tally: Mapping[str, Any] = doc.get("tally") or {}
    degraded = degraded_notice(doc, personas)
    consensus = tally.get("consensus")
    author = agent_ref(winner["author"], personas) if winner else None
    return ResultView(
        session_id=str(doc["session_id"]),
        status=str(doc.get("status", "completed")),
        topic=str(doc["topic"]),
        decided=winner is not None,
        no_decision_reason=None if winner else _no_decision_reason(degraded),
        winner_id=winner["id"] if winner else None,
        winner_title=winner["title"] if winner else None,
        author=author,
        description=winner.get("description") if winner else None,
        benefits=list(winner.get("benefits") or []) if winner else [],
        steps=list(winner.get("steps") or []) if winner else [],
        consensus_percent=round(float(consensus) * 100) if consensus is not None and winner else None,
        rounds_run=int(doc.get("rounds_run", 0)),
        rounds_planned=int(doc.get("rounds_planned", 0)),
        stopped_early=bool(doc.get("stopped_early")),
        stop_reason=doc.get("stop_reason"),
        voting_rule=str(doc.get("voting_rule", tally.get("rule", ""))),
        votes=vote_bars(doc, personas),
        degraded=degraded,
        usage_line=usage_line(doc),
        cost_usd=float((doc.get("usage") or {}).get("cost_usd", 0.0)),
        duration_s=float(doc.get("duration_s", 0.0)),
    )


def vote_bars(doc: Mapping[str, Any], personas: Mapping[str, Persona]) -> list[VoteBar]:
    """The vote distribution, in the tally's ranking order (proposal order when nothing was counted)."""
    tally: Mapping[str, Any] = doc.get("tally") or {}
    proposals = {p["id"]: p for p in doc.get("proposals") or []}
    scores: Mapping[str, float] = tally.get("scores") or {}
    order = list(tally.get("ranking") or []) or list(proposals)
    order += [pid for pid in proposals if pid not in order]
    # Copeland scores can be negative; a share is a part of the positive total.
    total = sum(max(0.0, float(v)) for v in scores.values())
    bars = []
    for pid in order:
        score = float(scores.get(pid, 0))
        proposal = proposals.get(pid, {})
        bars.append(
            VoteBar(
                id=pid,
                title=str(proposal.get("title", pid)),
                author=agent_ref(proposal["author"], personas) if proposal.get("author") else None,
                score=score,
                share=max(0.0, score) / total if total > 0 else 0.0,
                is_winner=pid == tally.get("winner"),
            )
        )
    return bars


def degraded_notice(doc: Mapping[str, Any], personas: Mapping[str, Persona]) -> DegradedNotice | None:
    """The degraded notice, or None when every step went as planned."""
    raw = doc.get("degraded") or []
    if not raw:
        return None
    entries = [
        DegradedEntry(
            agent=agent_ref(d["agent"], personas) if d.get("agent") else None,
            step=str(d.get("step", "?")),
            reason=str(d.get("reason") or "failed"),
        )
        for d in raw
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


def usage_line(doc: Mapping[str, Any]) -> str:
    """ "12 LLM calls · 3400+900 tokens · $0.0123 · 41.5s"."""
    usage: Mapping[str, Any] = doc.get("usage") or {}
    calls = int(usage.get("llm_calls", 0))
    tokens = f"{int(usage.get('prompt_tokens', 0))}+{int(usage.get('completion_tokens', 0))} tokens"
    cost = f"${float(usage.get('cost_usd', 0.0)):.4f}"
    duration = f"{float(doc.get('duration_s', 0.0)):.1f}s"
    return f"{calls} LLM call{'s' if calls != 1 else ''} · {tokens} · {cost} · {duration}"


def _no_decision_reason(notice: DegradedNotice | None) -> str:
    session_level = [e.reason for e in (notice.entries if notice else []) if e.agent is None]
    why = "; ".join(session_level) if session_level else "no valid ballot was cast"
    return f"No decision was reached: {why}."
