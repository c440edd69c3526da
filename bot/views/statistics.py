"""The statistics view behind the "Statistics" button: who spoke, how much, at what cost, how they voted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.views.agents import AgentRef, agent_ref
from bot.views.result import usage_line
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
    #: Mean turn latency, when the document carries `latency_ms` on its transcript entries.
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


def statistics_view(doc: Mapping[str, Any], personas: Mapping[str, Persona]) -> StatisticsView:
    """Per-agent participation, words, latency, usage and vote, in team order."""
    transcript = list(doc.get("transcript") or [])
    ballots = {b.get("voter"): b for b in doc.get("ballots") or []}
    tally: Mapping[str, Any] = doc.get("tally") or {}
    invalid = {i.get("voter"): str(i.get("reason", "invalid")) for i in tally.get("invalid") or []}
    by_agent: Mapping[str, Any] = (doc.get("usage") or {}).get("by_agent") or {}
    team = list(doc.get("team") or [])
    team += [a for a in dict.fromkeys(str(e.get("agent")) for e in transcript) if a not in team]

    agents = []
    for agent in team:
        entries = [e for e in transcript if e.get("agent") == agent]
        spoken = [e for e in entries if not e.get("fallback")]
        latencies = [float(e["latency_ms"]) for e in entries if e.get("latency_ms") is not None]
        usage = by_agent.get(agent)
        agents.append(
            AgentStats(
                agent=agent_ref(agent, personas),
                turns=len(entries),
                fallbacks=len(entries) - len(spoken),
                words=sum(word_count(str(e.get("content", ""))) for e in spoken),
                mean_latency_ms=round(sum(latencies) / len(latencies), 1) if latencies else None,
                usage=AgentUsage.model_validate(usage) if usage is not None else None,
                vote=vote_summary(ballots.get(agent), invalid.get(agent)),
            )
        )
    return StatisticsView(
        session_id=str(doc["session_id"]),
        agents=agents,
        total_turns=sum(a.turns for a in agents),
        total_words=sum(a.words for a in agents),
        usage_line=usage_line(doc),
    )


def word_count(text: str) -> int:
    return len(text.split())


def vote_summary(ballot: Mapping[str, Any] | None, invalid_reason: str | None = None) -> VoteSummary:
    """A ballot as one line of text; `invalid_reason` comes from the tally's `invalid` list."""
    if ballot is None:
        return VoteSummary(status="missing", text="did not vote")
    if ballot.get("abstain"):
        return VoteSummary(status="abstained", text="abstained")
    parts = []
    if "choice" in ballot:
        parts.append(f"chose {ballot['choice']}")
    if "ranking" in ballot:
        parts.append("ranked " + (" > ".join(map(str, ballot["ranking"])) or "nothing"))
    if "ratings" in ballot:
        ratings = ", ".join(f"{pid} {score}" for pid, score in sorted(ballot["ratings"].items()))
        parts.append(f"rated {ratings or 'nothing'}")
    if "approve" in ballot:
        parts.append("approved " + (", ".join(map(str, ballot["approve"])) or "none"))
    text = "; ".join(parts) or "empty ballot"
    if invalid_reason is not None:
        return VoteSummary(
            status="invalid", text=f"invalid ({invalid_reason}): {text}", reason=invalid_reason
        )
    return VoteSummary(status="voted", text=text)
