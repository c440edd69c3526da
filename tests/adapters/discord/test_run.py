"""`run_discord`: the configuration errors it names, and a whole run against the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from adapters.discord import run_discord
from adapters.discord.run import BAD_TOKEN, NO_INTENT
from bot import Settings
from engine.errors import ConfigError
from tests.adapters.discord.harness import ROUTE_SEND, World
from tests.fakes.fake_discord import MESSAGE_CONTENT_INTENT


async def test_a_missing_token_says_where_to_create_a_bot(chat_settings: Callable[..., Settings]) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^DISCORD_TOKEN is not set; create a bot at https://discord.com/developers/applications",
    ):
        await run_discord(chat_settings(discord_token=None))


async def test_a_refused_token_is_a_config_error(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    settings = chat_settings(discord_token="not-the-token", discord_api_url=world.fake.base_url)
    with pytest.raises(ConfigError) as caught:
        await asyncio.wait_for(run_discord(settings), timeout=20)
    assert str(caught.value) == BAD_TOKEN


async def test_a_refused_message_content_intent_says_how_to_enable_it(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    world.fake.message_content = False
    settings = chat_settings(discord_token=world.fake.token, discord_api_url=world.fake.base_url)
    with pytest.raises(ConfigError) as caught:
        await asyncio.wait_for(run_discord(settings), timeout=20)
    assert str(caught.value) == NO_INTENT


async def test_run_discord_connects_through_the_configured_api_and_answers(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    """`discord_api_url` moves REST and, through `GET /gateway/bot`, the gateway; the bot then serves."""
    fake = world.fake
    settings = chat_settings(discord_token=fake.token, discord_api_url=fake.base_url)
    task = asyncio.create_task(run_discord(settings))
    try:
        identify = await fake.wait_identified()
        assert identify["intents"] & MESSAGE_CONTENT_INTENT
        assert [c["name"] for c in fake.commands] == ["roundtable"]
        await fake.send_message(world.channel["id"], world.alice, "!roundtable --rounds 9 Tea?")
        reply = await fake.wait_for(lambda r: r.route == ROUTE_SEND)
        assert reply.body["content"] == "--rounds 9 is out of range; choose 1-5"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
