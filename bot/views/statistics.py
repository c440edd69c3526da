"""The statistics view behind the "Statistics" button: who spoke, how much, at what cost, how they voted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.views.agents import AgentRef, agent_ref
from bot.views.result import usage_line
from engine.report import Ballot, SessionReport, TranscriptEntry
from engine.turns import Usage
from personas import Persona

VoteStatus = Literal["voted", "abstained", "invalid", "missing"]


class AgentUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class VoteSummary(BaseModel):
    """How one agent voted, as text with proposal ids ("ranked P2 > P1 > P3")."""

    model_config = ConfigDict(frozen=True)

    status: VoteStatus
    text: str
    #: Why the ballot was invalid, from the tally.
    reason: str | None = None


class AgentStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent: AgentRef
    #: Discussion turns in the transcript, fallbacks included.
    turns: int
    fallbacks: int
    #: Words the agent actually said; fallback stand-ins are not counted.
    words: int
    #: Mean turn latency, when the report carries `latency_ms` on its transcript entries.
    mean_latency_ms: float | None
    usage: AgentUsage | None
    vote: VoteSummary


class StatisticsView(BaseModel):
    model_config = ConfigDict(frozen=True)

    session_id: str
    agents: list[AgentStats]
    total_turns: int
    total_words: int
    usage_line: str


def statistics_view(report: SessionReport, personas: Mapping[str, Persona]) -> StatisticsView:
    """Per-agent participation, words, latency, usage and vote, in team order."""
    transcript = report.transcript
    ballots = {b.voter: b for b in report.ballots}
    invalid = {i.voter: i.reason for i in report.tally.invalid} if report.tally is not None else {}
    team = list(report.team)
    team += [a for a in dict.fromkeys(e.agent for e in transcript) if a not in team]
    agents = [
        _agent_stats(
            agent,
            [e for e in transcript if e.agent == agent],
            personas,
            usage=report.usage.by_agent.get(agent),
            vote=vote_summary(ballots.get(agent), invalid.get(agent)),
        )
        for agent in team
    ]
    return StatisticsView(
        session_id=report.session_id,
        agents=agents,
        total_turns=sum(a.turns for a in agents),
        total_words=sum(a.words for a in agents),
        usage_line=usage_line(report),
    )


def _agent_stats(
    agent: str,
    entries: list[TranscriptEntry],
    personas: Mapping[str, Persona],
    *,
    usage: Usage | None,
    vote: VoteSummary,
) -> AgentStats:
    """One agent's line, from its transcript entries: fallback stand-ins count as turns, not as words."""
    spoken = [e for e in entries if not e.fallback]
    latencies = [e.latency_ms for e in entries if e.latency_ms is not None]
    return AgentStats(
        agent=agent_ref(agent, personas),
        turns=len(entries),
        fallbacks=len(entries) - len(spoken),
        words=sum(word_count(e.content) for e in spoken),
        mean_latency_ms=round(sum(latencies) / len(latencies), 1) if latencies else None,
        usage=AgentUsage.model_validate(usage.model_dump()) if usage is not None else None,
        vote=vote,
    )


def word_count(text: str) -> int:
    return len(text.split())


def vote_summary(ballot: Ballot | None, invalid_reason: str | None = None) -> VoteSummary:
    """A ballot as one line of text; `invalid_reason` comes from the tally's `invalid` list."""
    if ballot is None:
        return VoteSummary(status="missing", text="did not vote")
    if ballot.abstain:
        return VoteSummary(status="abstained", text="abstained")
    text = "; ".join(_ballot_parts(ballot)) or "empty ballot"
    if invalid_reason is not None:
        return VoteSummary(
            status="invalid", text=f"invalid ({invalid_reason}): {text}", reason=invalid_reason
        )
    return VoteSummary(status="voted", text=text)


def _ballot_parts(ballot: Ballot) -> list[str]:
    """What the ballot says, field by field; a malformed value is shown as it was cast."""
    given = ballot.model_fields_set
    parts = []
    if "choice" in given:
        parts.append(f"chose {ballot.choice}")
    if ballot.ranking is not None:
        parts.append("ranked " + (" > ".join(map(str, ballot.ranking)) or "nothing"))
    if ballot.ratings is not None:
        ratings = ", ".join(f"{pid} {score}" for pid, score in sorted(ballot.ratings.items(), key=_first))
        parts.append(f"rated {ratings or 'nothing'}")
    if ballot.approve is not None:
        parts.append("approved " + (", ".join(map(str, ballot.approve)) or "none"))
    return parts


def _first(item: tuple[str, object]) -> str:
    return item[0]
