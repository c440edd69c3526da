"""A real runtime for session tests: SQLite in tmp, a private redis-server, LiteLLM to the fake LLM."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import Runtime, SessionRunner, Settings
from tests.fakes.fake_llm import FakeLLM
from tests.servers import RedisProcess


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


def agent_of(body: dict[str, Any]) -> str:
    """Which persona a request to the fake LLM comes from (its system prompt says who it is)."""
    system = body["messages"][0]["content"]
    match = re.search(r"You are (\w+)", system)
    return match.group(1).lower() if match else "?"


def schema_of(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    return str((fmt.get("json_schema") or {}).get("name", ""))


def is_repair(body: dict[str, Any]) -> bool:
    return len(body["messages"]) > 2


def discussion(message: str, position: str, ready: bool) -> str:
    return json.dumps({"message": message, "position": position, "ready": ready})


@pytest.fixture
def settings_for(tmp_path: Path, fake_llm: FakeLLM, redis_proc: RedisProcess) -> Callable[..., Settings]:
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "bus_url": redis_proc.url,
            "model": "openai/fake",
            "api_base": fake_llm.base_url,
            "api_key": "sk-fake",
            "workspace": f"t{next(counter)}-{tmp_path.name[-12:]}",
            "turn_timeout_s": 20.0,
        }
        base.update(overrides)
        return Settings(**base)

    return make


@pytest.fixture
async def runner(settings_for: Callable[..., Settings]) -> AsyncIterator[SessionRunner]:
    runtime = await Runtime.open(settings_for())
    try:
        yield SessionRunner(runtime)
    finally:
        await runtime.close()
