"""Whole deliberations through the real stack: engine, Redis bus, SQLite, LiteLLM to the fake LLM.

The engine's own behaviour (early stop, repair and fallback, budget, deadline, resume at each step,
recusal, ties) is tested at its ports in tests/engine/test_deliberation.py. Here: a happy path, a
degraded one, resumes, and what only the whole runtime does (bus choice, retally, stats, bad requests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot import BadRequest, Runtime, SessionRequest, SessionRunner, Settings
from engine.errors import BusUnavailable
from engine.report import SessionReport
from llms import import_litellm
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import CONTRACT_KEYS
from tests.servers import RedisProcess


async def run(runner: SessionRunner, **fields: Any) -> SessionReport:
    fields.setdefault("topic", "Should a small team adopt a four-day work week?")
    fields.setdefault("seed", 7)
    session_id, config = runner.prepare(SessionRequest(**fields))
    return await runner.run(session_id, config)


async def test_a_session_completes_with_the_contract_document(
    runner: SessionRunner, fake_llm: FakeLLM
) -> None:
    report = await run(runner, rounds=2, voting="rated", early_stop=False)
    assert report.model_dump().keys() >= set(CONTRACT_KEYS)
    assert report.status == "completed"
    assert report.team == ["analyst", "creative", "skeptic", "pragmatist", "ethicist"]
    assert report.rounds_run == 2
    assert not report.stopped_early
    assert len(report.transcript) == 10
    assert len(report.proposals) == 5
    assert report.winner is not None
    assert report.tally is not None
    assert report.winner.id == report.tally.winner
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
    assert report.status == "completed"
    assert report.degraded == []
    assert report.usage.llm_calls == 20 == fake_llm.request_count


async def test_a_flaky_provider_is_retried_and_every_request_is_counted(
    runner: SessionRunner, fake_llm: FakeLLM
) -> None:
    """Half the calls fail with a 500: they are tried again within the turn's timeout."""
    fake_llm.set(error_rate=0.5, seed=3)
    report = await run(runner, rounds=2, voting="approval")
    assert report.status == "completed"
    assert report.usage.llm_retries > 0
    assert report.usage.llm_calls == fake_llm.request_count
    assert report.usage.llm_calls_failed >= report.usage.llm_retries


async def test_a_failing_provider_degrades_but_completes(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """Every call fails with a 500, retried until the turn's timeout: the session still completes."""
    await asyncio.to_thread(import_litellm)  # so that the turns' time goes to the requests, not the import
    fake_llm.set(error_rate=1.0)
    runtime = await Runtime.open(settings_for(turn_timeout_s=2.0))
    try:
        report = await run(SessionRunner(runtime), rounds=1, team="compact")
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.degraded, "every call failed, so every turn must be marked"
    assert all("model error" in d.reason and "HTTP 500" in d.reason for d in report.degraded if d.agent)


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
    assert report.status == "completed"
    assert report.rounds_run == 3


async def test_retally_counts_stored_ballots_under_another_rule(runner: SessionRunner) -> None:
    report = await run(runner, rounds=1, voting="ranked")
    again = await runner.retally(report.session_id, "condorcet")
    assert again.voting_rule == "condorcet"
    assert again.tally is not None
    assert again.tally.rule == "condorcet"
    assert again.ballots == report.ballots
    # A ballot carries the voter's whole preference, so the rated and approval families count it too.
    assert report.tally is not None
    for rule in ("rated", "approval", "majority"):
        other = await runner.retally(report.session_id, rule)
        assert other.tally is not None
        assert other.tally.valid_ballots == report.tally.valid_ballots
    with pytest.raises(BadRequest, match="unknown voting rule 'rnaked'"):
        await runner.retally(report.session_id, "rnaked")


async def test_stats_normalise_win_rates_by_participation(runner: SessionRunner) -> None:
    await run(runner, rounds=1, voting="rated", team="compact")
    await run(runner, rounds=1, voting="majority")
    analytics = await runner.runtime.store.stats()
    by_agent = {a.agent: a for a in analytics.agents}
    assert by_agent["analyst"].sessions == 2
    assert by_agent["skeptic"].sessions == 1
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


async def test_requests_to_a_stalled_provider_are_all_counted_and_marked_failed(
    settings_for: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """The provider accepts every request and never answers: each request sent is still a call."""
    await asyncio.to_thread(import_litellm)  # so that the turns' time goes to the requests, not the import
    fake_llm.set(stall=True)
    runtime = await Runtime.open(settings_for(turn_timeout_s=3.0))
    try:
        report = await run(SessionRunner(runtime), rounds=1, team="compact")
    finally:
        await runtime.close()
        fake_llm.set(stall=False)
    # Every request the provider saw is counted; a turn the engine gave up on before its worker sent
    # anything (a loaded machine) counts one call too, so the count may exceed the provider's.
    assert 0 < fake_llm.request_count <= report.usage.llm_calls
    assert report.usage.llm_calls_failed == report.usage.llm_calls
    assert sum(u.llm_calls_failed for u in report.usage.by_phase.values()) == report.usage.llm_calls
