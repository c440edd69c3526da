"""Whole deliberations through the real stack: engine, Redis bus, SQLite, LiteLLM to the fake LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot import BadRequest, Runtime, SessionRequest, SessionRunner, Settings
from engine.errors import BusUnavailable, RuleMismatch
from engine.report import Ballot, SessionReport
from engine.voting import InvalidBallot, TallyInput, TallyResult, tally
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import agent_of, discussion, is_repair, schema_of
from tests.servers import RedisProcess

CONTRACT_KEYS = {
    "session_id",
    "status",
    "topic",
    "voting_rule",
    "team",
    "rounds_planned",
    "rounds_run",
    "stopped_early",
    "stop_reason",
    "winner",
    "tally",
    "proposals",
    "ballots",
    "transcript",
    "degraded",
    "usage",
    "duration_s",
}


def recount(report: SessionReport, ballots: list[Ballot]) -> TallyResult:
    """The session's proposals counted again, independently, over the given ballots."""
    return tally(
        TallyInput(
            rule=report.voting_rule,
            candidates=[p.id for p in report.proposals],
            authors={p.id: p.author for p in report.proposals},
            recusal=True,
            seed=report.seed,
            ballots=[b.model_dump(mode="json") for b in ballots],
        )
    )


async def run(runner: SessionRunner, **fields: Any) -> SessionReport:
    fields.setdefault("topic", "Should a small team adopt a four-day work week?")
    fields.setdefault("seed", 7)
    session_id, config = runner.prepare(SessionRequest(**fields))
    return await runner.run(session_id, config)


async def test_a_session_completes_with_the_contract_document(
    runner: SessionRunner, fake_llm: FakeLLM
) -> None:
    report = await run(runner, rounds=2, voting="rated", early_stop=False)
    assert report.model_dump().keys() >= CONTRACT_KEYS
    assert report.status == "completed"
    assert report.team == ["analyst", "creative", "skeptic", "pragmatist", "ethicist"]
    assert report.rounds_run == 2 and not report.stopped_early
    assert len(report.transcript) == 10
    assert len(report.proposals) == 5
    assert report.winner is not None and report.winner.id == report.tally.winner
    assert report.degraded == []
    # 5 agents x (2 rounds + proposal + vote), no repairs needed: the fake always answers the schema.
    assert report.usage.llm_calls == 20 == fake_llm.request_count
    assert report.usage.prompt_tokens > 0
    assert set(report.usage.by_phase) == {"discussion", "proposal", "vote"}
    assert sum(u.llm_calls for u in report.usage.by_agent.values()) == 20


async def test_a_session_runs_unchanged_over_the_in_memory_bus(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    runtime = await Runtime.open(settings_for(bus_url="memory://"))
    try:
        report = await run(SessionRunner(runtime), rounds=2, voting="condorcet", early_stop=False)
        assert runtime.bus_description == "in-memory bus (chosen)"
    finally:
        await runtime.close()
    assert report.status == "completed" and report.degraded == []
    assert report.usage.llm_calls == 20 == fake_llm.request_count


async def test_the_live_tally_equals_a_recount_of_the_stored_ballots(runner: SessionRunner) -> None:
    report = await run(runner, rounds=1, voting="ranked")
    assert recount(report, report.ballots) == report.tally


async def test_nobody_votes_for_their_own_proposal(runner: SessionRunner) -> None:
    report = await run(runner, rounds=1, voting="approval")
    authors = {p.id: p.author for p in report.proposals}
    for ballot in report.ballots:
        assert all(authors[pid] != ballot.voter for pid in ballot.approve or [])


async def test_early_stop_when_a_quorum_is_ready(runner: SessionRunner, fake_llm: FakeLLM) -> None:
    def ready(body: dict[str, Any]) -> str | None:
        if schema_of(body) == "discussion_turn":
            return discussion("I have heard enough.", f"{agent_of(body)} favours a pilot", True)
        return None

    fake_llm.set(responder=ready)
    report = await run(runner, rounds=4)
    assert report.rounds_run == 1
    assert report.stopped_early is True
    assert report.stop_reason == "quorum ready: 5 of 5 agents were ready to propose"


async def test_no_early_stop_runs_every_round(runner: SessionRunner, fake_llm: FakeLLM) -> None:
    fake_llm.set(
        responder=lambda b: discussion("ok", "same", True) if schema_of(b) == "discussion_turn" else None
    )
    report = await run(runner, rounds=3, early_stop=False)
    assert report.rounds_run == 3 and not report.stopped_early


async def test_disagreeing_words_do_not_stop_the_discussion(runner: SessionRunner, fake_llm: FakeLLM) -> None:
    def disagree(body: dict[str, Any]) -> str | None:
        if schema_of(body) == "discussion_turn":
            n = sum(1 for m in body["messages"] if "round" in m["content"].lower())
            return discussion(
                "I don't agree. We agree on nothing.", f"{agent_of(body)} view {n} {id(body)}", False
            )
        return None

    fake_llm.set(responder=disagree)
    report = await run(runner, rounds=3)
    assert report.rounds_run == 3


async def test_malformed_output_is_repaired_once(runner: SessionRunner, fake_llm: FakeLLM) -> None:
    def skeptic_garbles_first(body: dict[str, Any]) -> str | None:
        if agent_of(body) == "skeptic" and not is_repair(body):
            return "Sure! Here is what I think, no JSON today."
        return None

    fake_llm.set(responder=skeptic_garbles_first)
    report = await run(runner, rounds=1, early_stop=False)
    assert report.degraded == []
    assert report.usage.by_agent["skeptic"].llm_calls == 6  # 3 turns, each repaired once
    assert report.usage.llm_calls == fake_llm.request_count == 18


async def test_output_still_invalid_after_repair_becomes_a_marked_fallback(
    runner: SessionRunner, fake_llm: FakeLLM
) -> None:
    fake_llm.set(responder=lambda b: "not json at all" if agent_of(b) == "skeptic" else None)
    report = await run(runner, rounds=1, voting="majority")
    steps = {(d.agent, d.step) for d in report.degraded}
    assert {("skeptic", "round-1"), ("skeptic", "proposals"), ("skeptic", "votes")} <= steps
    assert [t.fallback for t in report.transcript if t.agent == "skeptic"] == [True]
    assert all(p.author != "skeptic" for p in report.proposals)
    assert InvalidBallot(voter="skeptic", reason="missing field 'choice'") in report.tally.invalid
    assert report.winner is not None


async def test_a_ballot_naming_unknown_proposals_is_an_abstention_never_a_vote(
    runner: SessionRunner, fake_llm: FakeLLM
) -> None:
    fake_llm.set(
        responder=lambda b: (
            json.dumps({"ranking": ["Z", "Y"], "reason": "x"})
            if agent_of(b) == "analyst" and schema_of(b) == "ballot"
            else None
        )
    )
    report = await run(runner, rounds=1, voting="ranked")
    invalid = {i.voter: i.reason for i in report.tally.invalid}
    assert invalid["analyst"] == "unknown candidate 'Z'"
    assert report.tally.valid_ballots == 4
    without = recount(report, [b for b in report.ballots if b.voter != "analyst"])
    assert without.scores == report.tally.scores


async def test_a_stalled_llm_times_out_into_a_degraded_completed_session(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake_llm.set(stall=True)
    runtime = await Runtime.open(settings_for(turn_timeout_s=1.0))
    try:
        report = await run(SessionRunner(runtime), rounds=1, voting="rated")
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.winner is None
    assert all(d.reason.startswith("timeout") for d in report.degraded if d.agent)
    assert any(d.step == "proposals" and d.agent is None for d in report.degraded)


async def test_a_failing_provider_degrades_but_completes(runner: SessionRunner, fake_llm: FakeLLM) -> None:
    fake_llm.set(error_rate=0.5, seed=3)
    report = await run(runner, rounds=2, voting="approval")
    assert report.status == "completed"
    assert report.degraded, "half the calls failed, so some turns must be marked"
    assert all("model error" in d.reason for d in report.degraded if d.agent)


async def test_the_budget_announces_the_last_round(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    runtime = await Runtime.open(settings_for(budget_tokens=4000))
    try:
        report = await run(SessionRunner(runtime), rounds=5, early_stop=False)
    finally:
        await runtime.close()
    assert report.rounds_run < 5
    assert report.stopped_early
    assert report.stop_reason.startswith("budget")


async def test_the_session_deadline_ends_the_discussion(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake_llm.set(latency_s=0.4)
    runtime = await Runtime.open(settings_for(session_deadline_s=2.0))
    try:
        report = await run(SessionRunner(runtime), rounds=5, early_stop=False)
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.rounds_run < 5
    assert report.stop_reason.startswith("time")


async def test_a_resumed_session_never_asks_for_a_completed_turn_again(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """Cancel mid-session (as a crash would), then resume: only the missing turns are requested."""
    settings = settings_for()
    runtime = await Runtime.open(settings)
    runner = SessionRunner(runtime)
    session_id, config = runner.prepare(
        SessionRequest(topic="Buy or build?", rounds=3, early_stop=False, seed=1)
    )
    fake_llm.set(latency_s=0.05)
    task = asyncio.create_task(runner.run(session_id, config))
    while fake_llm.request_count < 12:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await runtime.close()
    before = [e for e in await _events(settings, session_id) if e.kind == "turn_completed"]
    asked_before = fake_llm.request_count

    runtime = await Runtime.open(settings)
    try:
        report = await SessionRunner(runtime).resume(session_id)
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.rounds_run == 3
    resumed_calls = fake_llm.request_count - asked_before
    assert resumed_calls == 25 - len(before)  # 5 agents x (3 rounds + proposal + vote), minus what was done
    after = {(e.step, e.agent): e for e in await _events(settings, session_id) if e.kind == "turn_completed"}
    for event in before:
        assert after[(event.step, event.agent)].reply == event.reply


async def test_redis_going_away_is_a_clear_error_and_the_session_resumes(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM, tmp_path: Any
) -> None:
    redis = RedisProcess(tmp_path / "redis-own").start()
    settings = settings_for(bus_url=redis.url)
    fake_llm.set(latency_s=0.05)
    runtime = await Runtime.open(settings)
    runner = SessionRunner(runtime)
    session_id, config = runner.prepare(
        SessionRequest(topic="Rent or buy?", rounds=3, early_stop=False, seed=1)
    )
    task = asyncio.create_task(runner.run(session_id, config))
    while fake_llm.request_count < 7:
        await asyncio.sleep(0.01)
    redis.stop()
    with pytest.raises(BusUnavailable, match=f"`roundtable resume {session_id}` finishes the session"):
        await asyncio.wait_for(task, 30)
    await runtime.close()
    record = await _record(settings, session_id)
    assert record.status == "running"

    redis.start()
    runtime = await Runtime.open(settings)
    try:
        report = await SessionRunner(runtime).resume(session_id)
    finally:
        await runtime.close()
        redis.stop()
    assert report.status == "completed" and report.rounds_run == 3


async def test_retally_counts_stored_ballots_under_another_rule(runner: SessionRunner) -> None:
    report = await run(runner, rounds=1, voting="ranked")
    again = await runner.retally(report.session_id, "condorcet")
    assert again.voting_rule == "condorcet"
    assert again.tally.rule == "condorcet"
    assert again.ballots == report.ballots
    with pytest.raises(RuleMismatch, match="carry 'ranking'; rule 'rated' needs 'ratings'"):
        await runner.retally(report.session_id, "rated")
    with pytest.raises(BadRequest, match="unknown voting rule 'rnaked'"):
        await runner.retally(report.session_id, "rnaked")


async def test_stats_normalise_win_rates_by_participation(runner: SessionRunner) -> None:
    await run(runner, rounds=1, voting="rated", team="compact")
    await run(runner, rounds=1, voting="majority")
    analytics = await runner.runtime.store.stats()
    by_agent = {a.agent: a for a in analytics.agents}
    assert by_agent["analyst"].sessions == 2 and by_agent["skeptic"].sessions == 1
    assert sum(a.wins for a in analytics.agents) == 2
    assert {r.voting_rule for r in analytics.rules} == {"rated", "majority"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"topic": "   "}, "the topic is empty"),
        ({"topic": "x" * 10_000}, "the topic is 10000 characters; the limit is 4000"),
        ({"voting": "rnaked"}, "unknown voting rule 'rnaked'; choose one of majority, rated, ranked"),
        ({"rounds": 9}, "--rounds 9 is out of range; choose 1-5"),
        ({"team": "analyst,skeptik"}, "unknown persona 'skeptik'"),
    ],
)
async def test_bad_requests_are_refused_with_the_choices(
    runner: SessionRunner, fields: dict[str, Any], message: str
) -> None:
    fields.setdefault("topic", "fine topic")
    with pytest.raises(BadRequest, match=message.replace("?", r"\?")):
        runner.prepare(SessionRequest(**fields))


async def _events(settings: Settings, session_id: str) -> list[Any]:
    runtime = await Runtime.open(settings)
    try:
        return await runtime.store.load_events(session_id)
    finally:
        await runtime.close()


async def _record(settings: Settings, session_id: str) -> Any:
    runtime = await Runtime.open(settings)
    try:
        return await runtime.store.get_session(session_id)
    finally:
        await runtime.close()
