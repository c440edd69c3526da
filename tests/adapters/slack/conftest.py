"""Fixtures for the Slack adapter: the real bolt `AsyncApp` on loopback, against the fake Slack Web API.

`start_bot(settings)` builds the app with `adapters.slack.build_app`, serves `app.web_app()` with
aiohttp on a free port, and returns a `SlackBot` that delivers signed events and button clicks the way
Slack does. Underneath: a real redis-server, SQLite in tmp_path and LiteLLM to the fake LLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.slack import EVENTS_PATH, build_app
from bot import Runtime, Settings
from bot.chat import ChatService
from tests.adapters.slack.harness import SECRET, TOKEN, SlackBot, StartBot
from tests.fakes.fake_slack import FakeSlack, block_kit_violations


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """The fake Web API; after each test, every message the adapter sent must satisfy Block Kit's limits."""
    with FakeSlack() as fake:
        yield fake
        for call in fake.messages():
            assert block_kit_violations(call.args) == [], (call.method, call.args)


@pytest.fixture
def slack_settings(settings_for: Callable[..., Settings], fake_slack: FakeSlack) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "progress_interval_s": 0.0,
            "rounds": 1,
            "team": "compact",
            "slack_bot_token": TOKEN,
            "slack_signing_secret": SECRET,
            "slack_api_url": fake_slack.api_url,
        }
        base.update(overrides)
        return settings_for(**base)

    return make


@pytest.fixture
async def start_bot(fake_slack: FakeSlack) -> AsyncIterator[StartBot]:
    started: list[SlackBot] = []

    async def start(settings: Settings) -> SlackBot:
        runtime = await Runtime.open(settings)
        service = await ChatService.open(runtime)
        app = build_app(service, settings)
        runner = web.AppRunner(app.web_app(path=EVENTS_PATH))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        bot = SlackBot(
            app=app,
            service=service,
            runtime=runtime,
            fake=fake_slack,
            url=f"http://{host}:{port}{EVENTS_PATH}",
            http=aiohttp.ClientSession(),
            runner=runner,
        )
        started.append(bot)
        return bot

    yield start
    for bot in started:
        await bot.close()


@pytest.fixture
async def bot(start_bot: StartBot, slack_settings: Callable[..., Settings]) -> SlackBot:
    return await start_bot(slack_settings())
