"""Analytics over completed sessions: how often each agent wins, and how each voting rule behaves.

Everything is derived from the stored results (the `ask --json` document of docs/cli.md), never kept
as counters, so it is always consistent with the sessions it summarizes. The aggregation is a pure
function over result dicts; the store only fetches the few fields it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class AgentStats(BaseModel):
    agent: str
    #: Completed sessions the agent took part in (it was on the team).
    sessions: int
    #: Sessions its proposal won.
    wins: int
    #: wins / sessions: normalised by participation, so an agent on few teams is not penalised.
    win_rate: float


class RuleStats(BaseModel):
    voting_rule: str
    sessions: int
    #: Means are over the sessions that report the value; None when none does.
    mean_consensus: float | None
    mean_rounds: float | None
    #: Share of sessions whose discussion stopped before the planned rounds.
    early_stop_rate: float | None
    mean_cost_usd: float | None
    mean_duration_s: float | None


class Analytics(BaseModel):
    #: Completed sessions counted.
    sessions: int
    #: Best win rate first.
    agents: list[AgentStats]
    #: Most used rule first.
    rules: list[RuleStats]


def _number(value: Any) -> float | None:
    # bool is an int in Python, but `true` is not a number of rounds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _get(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0

    def add(self, value: float | None) -> None:
        if value is not None:
            self.total += value
            self.count += 1

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class _Rule:
    sessions: int = 0
    consensus: _Mean = field(default_factory=_Mean)
    rounds: _Mean = field(default_factory=_Mean)
    stopped_early: _Mean = field(default_factory=_Mean)
    cost_usd: _Mean = field(default_factory=_Mean)
    duration_s: _Mean = field(default_factory=_Mean)


def compute_analytics(results: Iterable[Mapping[str, Any]]) -> Analytics:
    """Agent win rates and per-rule statistics over completed sessions' results.

    Tolerant of older or partial documents: a missing or mistyped field is left out of its mean rather
    than failing the whole report.
    """
    count = 0
    taken_part: dict[str, int] = {}
    wins: dict[str, int] = {}
    rules: dict[str, _Rule] = {}
    for result in results:
        count += 1
        team = _get(result, "team")
        members = {agent for agent in team if isinstance(agent, str)} if isinstance(team, list) else set()
        author = _get(result, "winner", "author")
        if isinstance(author, str):
            members.add(author)  # a winner took part, even if a partial document omits the team
            wins[author] = wins.get(author, 0) + 1
        for agent in members:
            taken_part[agent] = taken_part.get(agent, 0) + 1

        rule_name = _get(result, "voting_rule")
        rule = rules.setdefault(rule_name if isinstance(rule_name, str) else "unknown", _Rule())
        rule.sessions += 1
        rule.consensus.add(_number(_get(result, "tally", "consensus")))
        rule.rounds.add(_number(_get(result, "rounds_run")))
        stopped = _get(result, "stopped_early")
        rule.stopped_early.add(float(stopped) if isinstance(stopped, bool) else None)
        rule.cost_usd.add(_number(_get(result, "usage", "cost_usd")))
        rule.duration_s.add(_number(_get(result, "duration_s")))

    agents = [
        AgentStats(agent=agent, sessions=n, wins=wins.get(agent, 0), win_rate=wins.get(agent, 0) / n)
        for agent, n in taken_part.items()
    ]
    agents.sort(key=lambda s: (-s.win_rate, -s.wins, s.agent))
    rule_stats = [
        RuleStats(
            voting_rule=name,
            sessions=rule.sessions,
            mean_consensus=rule.consensus.value,
            mean_rounds=rule.rounds.value,
            early_stop_rate=rule.stopped_early.value,
            mean_cost_usd=rule.cost_usd.value,
            mean_duration_s=rule.duration_s.value,
        )
        for name, rule in rules.items()
    ]
    rule_stats.sort(key=lambda s: (-s.sessions, s.voting_rule))
    return Analytics(sessions=count, agents=agents, rules=rule_stats)
