"""Fixtures shared by the whole suite: the fake LLM, and a real runtime's settings for the bot and the
chat adapters (SQLite in tmp, a private redis-server, LiteLLM to the fake LLM)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.servers import RedisProcess

if TYPE_CHECKING:
    from bot import Settings


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started fake OpenAI-compatible server; point LiteLLM at `fake_llm.base_url` with `openai/fake`."""
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server for the whole test session, shared by every runtime `settings_for` makes."""
    proc = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture
def settings_for(tmp_path: Path, fake_llm: FakeLLM, redis_proc: RedisProcess) -> Callable[..., Settings]:
    """Makes settings for a real runtime; each call gets a workspace of its own, keywords override."""
    # Imported here, not at the top, so that tests of the pure packages do not load the whole stack.
    from bot import Settings

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
