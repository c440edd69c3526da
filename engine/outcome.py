"""What a session came to, derived from its event log alone: the `SessionReport`, and recounts.

Every part of the report has its own small function over the `SessionLog`; `build_report` only puts
them together in the contract's order. Agents and phases are listed in team and phase order, never in
the order turns happened to complete, so the same log always gives the same document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from engine.errors import RuleMismatch
from engine.history import SessionLog, round_step
from engine.report import (
    Ballot,
    Degradation,
    ProposalRecord,
    SessionReport,
    SessionStatus,
    SessionUsage,
    TranscriptEntry,
)
from engine.rules import BALLOT_FIELD, VotingRule
from engine.turns import Phase
from engine.voting import TallyInput, TallyResult, ballot_fits, tally

__all__ = ["build_report", "retally", "tally_input"]

#: The total cost is reported to the micro-dollar; per agent and phase it is left as summed.
_COST_DIGITS = 6
_DURATION_DIGITS = 3


def tally_input(log: SessionLog, rule: VotingRule | None = None) -> TallyInput | None:
    """The stored ballots as a tally document, or None when there is nothing to count."""
    cfg = log.config
    proposals = log.proposals()
    if not proposals:
        return None
    return TallyInput(
        rule=rule or cfg.voting_rule,
        candidates=[p.id for p in proposals],
        authors={p.id: p.author for p in proposals},
        recusal=cfg.recusal,
        seed=cfg.seed,
        ballots=_raw_ballots(log),
    )


def retally(log: SessionLog, rule: VotingRule) -> TallyResult | None:
    """The stored ballots counted under another rule. Raises `RuleMismatch` when they do not fit it."""
    doc = tally_input(log, rule)
    if doc is None:
        return None
    cast = [b for b in doc.ballots if not b.get("abstain") and len(b) > 1]
    if cast and not all(ballot_fits(rule, b) for b in cast):
        stored = log.config.voting_rule
        fitting = sorted(r for r, f in BALLOT_FIELD.items() if f == BALLOT_FIELD[stored])
        raise RuleMismatch(
            f"the ballots of this session were cast under '{stored}' and carry "
            f"'{BALLOT_FIELD[stored]}'; rule '{rule}' needs '{BALLOT_FIELD[rule]}'. "
            f"They can be re-counted under: {', '.join(fitting)}"
        )
    return tally(doc)


def build_report(
    session_id: str,
    log: SessionLog,
    *,
    status: SessionStatus,
    now: datetime | None = None,
    rule: VotingRule | None = None,
) -> SessionReport:
    """The session's report, from its events; `rule` counts the ballots under another rule."""
    cfg = log.config
    proposals = log.proposals()
    result = _count_votes(log, rule)
    stopped_early, stop_reason = _discussion_end(log)
    return SessionReport(
        session_id=session_id,
        status=status,
        topic=cfg.topic,
        voting_rule=rule or cfg.voting_rule,
        team=cfg.team,
        rounds_planned=cfg.rounds,
        rounds_run=len(log.discussion()),
        stopped_early=stopped_early,
        stop_reason=stop_reason,
        winner=_winner(proposals, result),
        tally=result,
        proposals=proposals,
        ballots=[Ballot.model_validate(b) for b in _raw_ballots(log)],
        transcript=_transcript(log),
        degraded=_degradations(log, proposals, result),
        usage=_usage(log),
        duration_s=_duration_s(log, now),
        seed=cfg.seed,
        model=cfg.model,
    )


def _count_votes(log: SessionLog, rule: VotingRule | None = None) -> TallyResult | None:
    """The tally, or None when there were no proposals or no ballot at all."""
    doc = tally_input(log, rule)
    return tally(doc) if doc is not None and doc.ballots else None


def _discussion_end(log: SessionLog) -> tuple[bool, str | None]:
    """Whether the discussion stopped before its planned rounds, and why it ended."""
    step = log.steps.get("discussion")
    if step is None:
        return False, None
    return step.stop, step.reason


def _winner(proposals: list[ProposalRecord], result: TallyResult | None) -> ProposalRecord | None:
    if result is None or result.winner is None:
        return None
    return next(p for p in proposals if p.id == result.winner)


def _transcript(log: SessionLog) -> list[TranscriptEntry]:
    """Every discussion turn, round by round in team order; a fallback says why the agent was silent."""
    return [
        TranscriptEntry(
            round=r,
            agent=agent,
            content=turn.message if turn is not None else _fallback_text(log, r, agent),
            fallback=turn is None,
        )
        for r, turns in sorted(log.discussion().items())
        for agent, turn in turns.items()
    ]


def _degradations(
    log: SessionLog, proposals: list[ProposalRecord], result: TallyResult | None
) -> list[Degradation]:
    """Turns that fell back, step by step in team order, then what the session itself lacked."""
    cfg = log.config
    steps = [round_step(r) for r in range(1, cfg.rounds + 1)] + ["proposals", "votes"]
    entries = [
        Degradation(agent=agent, step=step, reason=turn.reason or "failed")
        for step in steps
        for agent in cfg.team
        if (turn := log.turn(step, agent)) is not None and turn.fallback
    ]
    if log.steps.get("proposals") is not None and not proposals:
        entries.append(Degradation(agent=None, step="proposals", reason="no agent produced a valid proposal"))
    elif result is not None and result.winner is None:
        entries.append(Degradation(agent=None, step="votes", reason="no valid ballot was cast"))
    if log.failed is not None:
        entries.append(Degradation(agent=None, step="session", reason=log.failed.reason))
    return entries


def _usage(log: SessionLog) -> SessionUsage:
    """Total usage (late replies included), by agent in team order and by phase in phase order."""
    total, by_agent, by_phase = log.usage()
    team = log.config.team
    agents = [*team, *(a for a in by_agent if a not in team)]  # off-team agents (none in practice) last
    phases: tuple[Phase, ...] = get_args(Phase)
    return SessionUsage(
        llm_calls=total.llm_calls,
        prompt_tokens=total.prompt_tokens,
        completion_tokens=total.completion_tokens,
        cost_usd=round(total.cost_usd, _COST_DIGITS),
        llm_calls_failed=total.llm_calls_failed,
        llm_retries=total.llm_retries,
        by_agent={a: by_agent[a] for a in agents if a in by_agent},
        by_phase={phase: by_phase[phase] for phase in phases if phase in by_phase},
    )


def _duration_s(log: SessionLog, now: datetime | None = None) -> float:
    """From the session's start to its completion, or to `now` for a session not yet completed."""
    started_at = log.started.at if log.started else datetime.now(UTC)
    end = log.completed.at if log.completed else (now or datetime.now(UTC))
    return round(max(0.0, (end - started_at).total_seconds()), _DURATION_DIGITS)


def _raw_ballots(log: SessionLog) -> list[dict[str, Any]]:
    """Each vote turn's ballot, with its voter, in team order: what the tally counts, as cast."""
    return [
        {"voter": agent, **(turn.ballot or {})}
        for agent in log.config.team
        if (turn := log.turn("votes", agent)) is not None
    ]


def _fallback_text(log: SessionLog, round_no: int, agent: str) -> str:
    turn = log.turn(round_step(round_no), agent)
    reason = turn.reason if turn is not None and turn.reason else "failed"
    return f"({agent} did not respond: {reason})"
