"""The session document (shared/contracts/cli.md), derived from the event log alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.errors import RuleMismatch
from engine.history import SessionLog
from engine.rules import BALLOT_FIELD, VotingRule
from engine.voting import TallyInput, TallyResult, ballot_fits, tally


def tally_input(log: SessionLog, rule: VotingRule | None = None) -> TallyInput | None:
    """The stored ballots as a tally document, or None when there is nothing to count."""
    cfg = log.config
    proposals = log.proposals()
    if not proposals:
        return None
    ballots = []
    for agent in cfg.team:
        turn = log.turn("votes", agent)
        if turn is not None:
            ballots.append({"voter": agent, **(turn.ballot or {})})
    return TallyInput(
        rule=rule or cfg.voting_rule,
        candidates=[p.id for p in proposals],
        authors={p.id: p.author for p in proposals},
        recusal=cfg.recusal,
        seed=cfg.seed,
        ballots=ballots,
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
    status: str,
    now: datetime | None = None,
    rule: VotingRule | None = None,
) -> dict[str, Any]:
    """The `ask --json` document for a session, from its events."""
    cfg = log.config
    proposals = log.proposals()
    doc = tally_input(log, rule)
    result = tally(doc) if doc is not None and doc.ballots else None
    winner = None
    if result is not None and result.winner is not None:
        winner = next(p for p in proposals if p.id == result.winner).model_dump()

    discussion_step = log.steps.get("discussion")
    rounds = log.discussion()
    total, by_agent, by_phase = log.usage()
    degraded: list[dict[str, str | None]] = [
        {"agent": t.agent, "step": t.step, "reason": t.reason or "failed"}
        for t in log.turns.values()
        if t.fallback
    ]
    if log.steps.get("proposals") is not None and not proposals:
        degraded.append({"agent": None, "step": "proposals", "reason": "no agent produced a valid proposal"})
    elif result is not None and result.winner is None:
        degraded.append({"agent": None, "step": "votes", "reason": "no valid ballot was cast"})
    if log.failed is not None:
        degraded.append({"agent": None, "step": "session", "reason": log.failed.reason})

    transcript = [
        {
            "round": r,
            "agent": agent,
            "content": turn.message if turn is not None else _fallback_text(log, r, agent),
            "fallback": turn is None,
        }
        for r, turns in sorted(rounds.items())
        for agent, turn in turns.items()
    ]
    ballots = [
        {"voter": agent, **(t.ballot or {})}
        for agent in cfg.team
        if (t := log.turn("votes", agent)) is not None
    ]
    started_at = log.started.at if log.started else datetime.now(UTC)
    end = log.completed.at if log.completed else (now or datetime.now(UTC))
    return {
        "session_id": session_id,
        "status": status,
        "topic": cfg.topic,
        "voting_rule": rule or cfg.voting_rule,
        "team": cfg.team,
        "rounds_planned": cfg.rounds,
        "rounds_run": len(rounds),
        "stopped_early": bool(discussion_step and discussion_step.stop),
        "stop_reason": discussion_step.reason if discussion_step else None,
        "winner": winner,
        "tally": result.model_dump(mode="json") if result is not None else None,
        "proposals": [p.model_dump() for p in proposals],
        "ballots": ballots,
        "transcript": transcript,
        "degraded": degraded,
        "usage": {
            **total.model_dump(),
            "cost_usd": round(total.cost_usd, 6),
            "by_agent": {k: v.model_dump() for k, v in by_agent.items()},
            "by_phase": {k: v.model_dump() for k, v in by_phase.items()},
        },
        "duration_s": round(max(0.0, (end - started_at).total_seconds()), 3),
        "seed": cfg.seed,
        "model": cfg.model,
    }


def _fallback_text(log: SessionLog, round_no: int, agent: str) -> str:
    turn = log.turn(f"round-{round_no}", agent)
    reason = turn.reason if turn is not None and turn.reason else "failed"
    return f"({agent} did not respond: {reason})"
