"""Fixtures for the Discord adapter: the fake Discord, a guild in it, and settings for the real runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot import Settings
from tests.adapters.discord.harness import World, build_world, discord_endpoints
from tests.fakes.fake_discord import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake, discord_endpoints(fake):
        yield fake


@pytest.fixture
def world(fake_discord: FakeDiscord) -> World:
    return build_world(fake_discord)


@pytest.fixture
def chat_settings(settings_for: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings for fast chat sessions: one round, progress edits unthrottled, compact team."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "rounds": 1,
            "team": "compact",
            "progress_interval_s": 0,
            "turn_timeout_s": 10.0,
        }
        base.update(overrides)
        return settings_for(**base)

    return make
