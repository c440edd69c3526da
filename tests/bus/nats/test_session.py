"""Whole deliberations over the NATS JetStream bus: the same runner, unchanged, on another backend."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot import Runtime, SessionRequest, SessionRunner, Settings
from engine.errors import BusUnavailable
from tests.fakes.fake_llm import FakeLLM
from tests.servers import NatsProcess


def settings(tmp_path: Path, fake_llm: FakeLLM, bus_url: str) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "bus_url": bus_url,
        "model": "openai/fake",
        "api_base": fake_llm.base_url,
        "api_key": "sk-fake",
        "workspace": f"nats-{uuid.uuid4().hex[:8]}",
        "turn_timeout_s": 20.0,
    }
    return Settings(**fields)


async def test_a_session_runs_unchanged_over_nats(tmp_path: Path, fake_llm: FakeLLM, nats_url: str) -> None:
    runtime = await Runtime.open(settings(tmp_path, fake_llm, nats_url))
    try:
        runner = SessionRunner(runtime)
        session_id, config = runner.prepare(
            SessionRequest(
                topic="Should we adopt a four-day week?", rounds=2, voting="condorcet", early_stop=False
            )
        )
        report = await runner.run(session_id, config)
        assert runtime.bus_description == f"nats jetstream at {nats_url}"
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.degraded == []
    assert report.rounds_run == 2
    assert len(report.transcript) == 10
    assert len(report.proposals) == 5
    assert report.winner is not None
    # 5 agents x (2 rounds + proposal + vote), each asked once: no turn was delivered twice.
    assert report.usage.llm_calls == 20 == fake_llm.request_count


async def test_the_bus_url_alias_chooses_nats(
    tmp_path: Path, fake_llm: FakeLLM, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUNDTABLE_BUS_URL", nats_url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    runtime = await Runtime.open(Settings(data_dir=tmp_path / "data"))
    try:
        await runtime.connect_bus()
        assert runtime.bus_description == f"nats jetstream at {nats_url}"
    finally:
        await runtime.close()


async def test_nats_going_away_is_a_clear_error_and_the_session_resumes(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """JetStream keeps its streams on disk: after a hard kill and a restart the session finishes."""
    server = NatsProcess(tmp_path / "nats").start()
    config_for = settings(tmp_path, fake_llm, server.url)
    fake_llm.set(latency_s=0.05)
    runtime = await Runtime.open(config_for)
    runner = SessionRunner(runtime)
    session_id, config = runner.prepare(
        SessionRequest(topic="Rent or buy?", rounds=3, early_stop=False, seed=1)
    )
    task = asyncio.create_task(runner.run(session_id, config))
    try:
        while fake_llm.request_count < 7:
            await asyncio.sleep(0.01)
        server.kill()
        with pytest.raises(BusUnavailable, match=f"`roundtable resume {session_id}` finishes the session"):
            await asyncio.wait_for(task, 30)
        await runtime.close()

        server.start()
        runtime = await Runtime.open(config_for)
        try:
            report = await SessionRunner(runtime).resume(session_id)
        finally:
            await runtime.close()
    finally:
        server.kill()
    assert report.status == "completed"
    assert report.rounds_run == 3
