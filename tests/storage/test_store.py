"""SqlStore: the append-only event log and the session rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.errors import BadRequest, SessionNotFound
from engine.events import (
    LateUsage,
    SessionCompleted,
    SessionEvent,
    SessionFailed,
    SessionStarted,
    StepCompleted,
    TurnCompleted,
)
from engine.ports import SessionStore
from engine.report import SessionReport
from engine.turns import DiscussionTurn, Proposal, TurnReply, Usage
from storage import SqlStore

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def started(*, at: datetime = T0, topic: str = "Which database?", rule: str = "ranked") -> SessionStarted:
    config = {"topic": topic, "rounds": 2, "voting_rule": rule, "team": ["analyst", "skeptic"], "seed": 7}
    return SessionStarted(at=at, config=config, metadata={"platform": "slack", "channel": "C042"})


def reply(step: str, agent: str, message: str = "hello") -> TurnReply:
    return TurnReply(
        session_id="s1",
        step=step,
        agent=agent,
        phase="discussion",
        discussion=DiscussionTurn(message=message, position="sqlite", ready=True),
        usage=Usage(llm_calls=1, prompt_tokens=10, completion_tokens=5, cost_usd=0.001),
    )


def turn(step: str, agent: str, message: str = "hello", *, fallback: bool = False) -> TurnCompleted:
    return TurnCompleted(step=step, agent=agent, reply=reply(step, agent, message), fallback=fallback)


PROPOSALS = [
    {
        "id": "P1",
        "author": "analyst",
        "title": "SQLite",
        "description": "one file",
        "benefits": [],
        "steps": [],
    },
    {
        "id": "P2",
        "author": "skeptic",
        "title": "PostgreSQL",
        "description": "a server",
        "benefits": [],
        "steps": [],
    },
]


def tally(**fields: Any) -> dict[str, Any]:
    """A tally in the contract's shape; the stats read only its consensus."""
    return {
        "rule": "ranked",
        "winner": "P1",
        "scores": {"P1": 1, "P2": 0},
        "ranking": ["P1", "P2"],
        "tied": [],
        "tiebreak": None,
        "valid_ballots": 2,
        "abstentions": 0,
        "invalid": [],
        "consensus": 0.5,
        "score_share": 1.0,
        "absolute_majority": None,
        "unanimity_reached": None,
        "fallback": None,
        "condorcet_winner": None,
        **fields,
    }


def usage(**fields: Any) -> dict[str, Any]:
    totals = {"llm_calls": 6, "prompt_tokens": 60, "completion_tokens": 30, "cost_usd": 0.01}
    return {**totals, "by_agent": {}, "by_phase": {}, **fields}


def result(**fields: Any) -> SessionReport:
    document: dict[str, Any] = {
        "session_id": "s1",
        "status": "completed",
        "topic": "Which database?",
        "voting_rule": "ranked",
        "team": ["analyst", "skeptic"],
        "rounds_planned": 2,
        "rounds_run": 2,
        "stopped_early": False,
        "stop_reason": None,
        "winner": PROPOSALS[0],
        "tally": tally(),
        "proposals": PROPOSALS,
        "ballots": [{"voter": "analyst", "ranking": ["P2"]}, {"voter": "skeptic", "ranking": ["P1", "P2"]}],
        "transcript": [],
        "degraded": [],
        "usage": usage(),
        "duration_s": 4.0,
        "seed": 7,
        "model": None,
    }
    document.update(fields)
    return SessionReport.model_validate(document)


def every_kind() -> list[SessionEvent]:
    proposal_reply = TurnReply(
        session_id="s1",
        step="proposals",
        agent="analyst",
        phase="proposal",
        proposal=Proposal(title="SQLite", description="one file", benefits=["simple"], steps=["do it"]),
    )
    vote_reply = TurnReply(
        session_id="s1", step="votes", agent="skeptic", phase="vote", ballot={"ranking": ["A", "B"]}
    )
    return [
        started(),
        turn("round-1", "analyst"),
        TurnCompleted(
            step="round-1",
            agent="skeptic",
            reply=reply("round-1", "skeptic"),
            fallback=True,
            reason="timeout",
        ),
        StepCompleted(step="round-1", stop=True, reason="consensus", last_round_announced=True),
        TurnCompleted(step="proposals", agent="analyst", reply=proposal_reply),
        TurnCompleted(step="votes", agent="skeptic", reply=vote_reply, ballot={"ranking": ["P1", "P2"]}),
        LateUsage(step="round-1", agent="skeptic", reply=reply("round-1", "skeptic", "late")),
        SessionCompleted(result=result()),
    ]


async def test_implements_the_session_store_port(store: SqlStore) -> None:
    assert isinstance(store, SessionStore)


async def test_every_event_kind_round_trips_in_append_order(store: SqlStore) -> None:
    events = every_kind()
    for event in events:
        assert await store.append("s1", event) is True
    assert await store.load_events("s1") == events


async def test_appending_a_stored_key_returns_false_and_keeps_the_first(store: SqlStore) -> None:
    await store.append("s1", started())
    assert await store.append("s1", turn("round-1", "analyst", "first")) is True
    assert await store.append("s1", turn("round-1", "analyst", "second", fallback=True)) is False
    assert await store.append("s1", started(topic="another")) is False

    events = await store.load_events("s1")
    assert len(events) == 2
    assert isinstance(events[1], TurnCompleted)
    assert events[1].reply.discussion is not None
    assert events[1].reply.discussion.message == "first"
    assert (await store.get_session("s1")).topic == "Which database?"


async def test_the_key_includes_kind_step_and_agent(store: SqlStore) -> None:
    """Same step, another agent; same agent, another step or kind: all distinct events."""
    await store.append("s1", started())
    appended = [
        await store.append("s1", turn("round-1", "analyst")),
        await store.append("s1", turn("round-1", "skeptic")),
        await store.append("s1", turn("round-2", "analyst")),
        await store.append(
            "s1", LateUsage(step="round-1", agent="analyst", reply=reply("round-1", "analyst"))
        ),
        await store.append("s1", StepCompleted(step="round-1")),
    ]
    assert appended == [True] * 5
    assert len(await store.load_events("s1")) == 6


async def test_the_same_key_in_another_session_is_another_event(store: SqlStore) -> None:
    for session_id in ("s1", "s2"):
        assert await store.append(session_id, started()) is True
        assert await store.append(session_id, turn("round-1", "analyst")) is True
    assert len(await store.load_events("s2")) == 2


async def test_concurrent_appends_to_one_session_are_all_kept_in_one_order(store: SqlStore) -> None:
    await store.append("s1", started())
    turns = [turn("round-1", f"agent-{n}") for n in range(8)]
    assert await asyncio.gather(*(store.append("s1", event) for event in turns)) == [True] * 8
    first = await store.load_events("s1")
    assert {event.key for event in first[1:]} == {event.key for event in turns}
    assert await store.load_events("s1") == first  # the order is fixed once written


async def test_session_started_creates_the_running_session(store: SqlStore) -> None:
    await store.append("s1", started())
    record = await store.get_session("s1")
    assert record.id == "s1"
    assert record.status == "running"
    assert record.topic == "Which database?"
    assert record.voting_rule == "ranked"
    assert record.team == ["analyst", "skeptic"]
    assert record.config["seed"] == 7
    assert record.metadata == {"platform": "slack", "channel": "C042"}
    assert record.result is None
    assert record.created_at == T0
    assert record.completed_at is None


async def test_a_config_without_a_rule_gets_the_default_rule(store: SqlStore) -> None:
    await store.append("s1", SessionStarted(config={"topic": "t", "team": ["analyst"]}))
    assert (await store.get_session("s1")).voting_rule == "rated"


async def test_session_completed_stores_the_result(store: SqlStore) -> None:
    await store.append("s1", started())
    done = SessionCompleted(at=T0 + timedelta(seconds=5), result=result(duration_s=5.0))
    await store.append("s1", done)
    record = await store.get_session("s1")
    assert record.status == "completed"
    assert record.result == result(duration_s=5.0)
    assert record.completed_at == T0 + timedelta(seconds=5)


async def test_session_failed_marks_the_session_failed(store: SqlStore) -> None:
    await store.append("s1", started())
    await store.append("s1", SessionFailed(reason="bus unavailable"))
    record = await store.get_session("s1")
    assert record.status == "failed"
    assert record.result is None
    assert record.completed_at is not None


async def test_an_event_before_session_started_is_refused(store: SqlStore) -> None:
    with pytest.raises(SessionNotFound, match="'ghost'"):
        await store.append("ghost", turn("round-1", "analyst"))
    assert await store.load_events("ghost") == []


async def test_get_session_of_an_unknown_id_raises_session_not_found(store: SqlStore) -> None:
    with pytest.raises(SessionNotFound, match=r"no session 'abc'; `roundtable sessions` lists them"):
        await store.get_session("abc")


async def test_list_sessions_is_newest_first_and_filters_by_status(store: SqlStore) -> None:
    for n, session_id in enumerate(["old", "mid", "new"]):
        await store.append(session_id, started(at=T0 + timedelta(minutes=n)))
    await store.append("mid", SessionCompleted(result=result()))

    assert [r.id for r in await store.list_sessions()] == ["new", "mid", "old"]
    assert [r.id for r in await store.list_sessions(limit=2)] == ["new", "mid"]
    assert [r.id for r in await store.list_sessions(status="running")] == ["new", "old"]
    assert [r.id for r in await store.list_sessions(status="completed")] == ["mid"]
    assert await store.list_sessions(status="failed") == []


async def test_list_sessions_rejects_an_unknown_status(store: SqlStore) -> None:
    with pytest.raises(BadRequest, match="'done'; choose one of running, completed, failed"):
        await store.list_sessions(status="done")


async def test_running_sessions_are_the_unfinished_ones_oldest_first(store: SqlStore) -> None:
    for n, session_id in enumerate(["a", "b", "c", "d"]):
        await store.append(session_id, started(at=T0 + timedelta(minutes=n)))
    await store.append("b", SessionCompleted(result=result()))
    await store.append("c", SessionFailed(reason="crash"))
    assert [r.id for r in await store.running_sessions()] == ["a", "d"]


async def test_set_status_closes_and_reopens_a_session(store: SqlStore) -> None:
    await store.append("s1", started())
    await store.set_status("s1", "failed")
    failed = await store.get_session("s1")
    assert (failed.status, failed.completed_at is not None) == ("failed", True)

    await store.set_status("s1", "running")
    running = await store.get_session("s1")
    assert (running.status, running.completed_at) == ("running", None)
    assert running.updated_at >= failed.updated_at


async def test_set_status_checks_the_status_and_the_session(store: SqlStore) -> None:
    await store.append("s1", started())
    with pytest.raises(BadRequest, match="'paused'"):
        await store.set_status("s1", "paused")
    with pytest.raises(SessionNotFound, match="'nope'"):
        await store.set_status("nope", "failed")


async def test_events_survive_closing_and_reopening_the_store(store_url: str) -> None:
    async with await SqlStore.open(store_url) as first:
        await first.append("s1", started())
        await first.append("s1", turn("round-1", "analyst"))
    async with await SqlStore.open(store_url) as second:
        assert [event.kind for event in await second.load_events("s1")] == [
            "session_started",
            "turn_completed",
        ]
        assert (await second.get_session("s1")).status == "running"


async def test_stats_are_computed_from_completed_sessions_only(store: SqlStore) -> None:
    """Also pins the JSON projection the store runs in SQL, on both dialects."""
    documents = {
        "s1": result(),
        "s2": result(
            winner=PROPOSALS[1],
            tally=tally(winner="P2", consensus=1.0),
            rounds_run=1,
            stopped_early=True,
            usage=usage(cost_usd=0.03),
            duration_s=2.0,
        ),
        "s3": result(
            voting_rule="approval",
            team=["analyst", "creative"],
            winner=None,
            tally=tally(rule="approval", winner=None, consensus=0.0),
        ),
    }
    for n, (session_id, document) in enumerate(documents.items()):
        await store.append(session_id, started(at=T0 + timedelta(minutes=n)))
        await store.append(session_id, SessionCompleted(result=document))
    await store.append("running", started())

    stats = await store.stats()
    assert stats.sessions == 3
    by_agent = {a.agent: (a.sessions, a.wins, a.win_rate) for a in stats.agents}
    assert by_agent == {"analyst": (3, 1, 1 / 3), "skeptic": (2, 1, 0.5), "creative": (1, 0, 0.0)}
    ranked, approval = stats.rules
    assert (ranked.voting_rule, ranked.sessions) == ("ranked", 2)
    assert ranked.mean_consensus == pytest.approx(0.75)
    assert ranked.mean_rounds == pytest.approx(1.5)
    assert ranked.early_stop_rate == pytest.approx(0.5)
    assert ranked.mean_cost_usd == pytest.approx(0.02)
    assert ranked.mean_duration_s == pytest.approx(3.0)
    assert (approval.voting_rule, approval.sessions, approval.mean_consensus) == ("approval", 1, 0.0)


async def test_stats_of_an_empty_store_are_empty(store: SqlStore) -> None:
    stats = await store.stats()
    assert (stats.sessions, stats.agents, stats.rules) == (0, [], [])
