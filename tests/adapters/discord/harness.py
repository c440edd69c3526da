"""Runs the real RoundTable Discord client against the fake Discord, with the real runtime behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord
import discord.http
from discord.gateway import DiscordWebSocket

from adapters.discord import RoundTableClient, use_api_base
from bot import Runtime, SessionReport, Settings
from bot.chat import ChatService, Outcome, Started
from tests.fakes.fake_discord import FakeDiscord, Recorded, limit_problems

ROUTE_SEND = "POST /channels/{channel_id}/messages"
ROUTE_EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
ROUTE_TYPING = "POST /channels/{channel_id}/typing"
ROUTE_CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"
ROUTE_FOLLOWUP = "POST /webhooks/{application_id}/{token}"
ROUTE_EDIT_ORIGINAL = "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
ROUTE_THREAD_FROM_MESSAGE = "POST /channels/{channel_id}/messages/{message_id}/threads"


@dataclass
class World:
    """A guild with two channels, three users (one with an admin role) and the bot."""

    fake: FakeDiscord
    guild: dict[str, Any]
    channel: dict[str, Any]
    other_channel: dict[str, Any]
    alice: dict[str, Any]
    bob: dict[str, Any]
    carol: dict[str, Any]
    admin_role: dict[str, Any]

    @property
    def bot(self) -> dict[str, Any]:
        return self.fake.bot


def build_world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Round Guild", channels=("general", "random"))
    general, random = guild["channels"]
    admin = fake.add_role(guild["id"], "RoundTable Admin")
    alice, bob, carol = fake.add_user("Alice"), fake.add_user("Bob"), fake.add_user("Carol")
    fake.add_member(guild["id"], alice)
    fake.add_member(guild["id"], bob)
    fake.add_member(guild["id"], carol, roles=(admin["id"],))
    return World(fake, guild, general, random, alice, bob, carol, admin)


@contextlib.asynccontextmanager
async def discord_endpoints(fake: FakeDiscord) -> AsyncIterator[None]:
    """Point discord.py at the fake for the duration, then restore Discord's addresses."""
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    use_api_base(fake.base_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = base
        DiscordWebSocket.DEFAULT_GATEWAY = gateway


@dataclass
class Bot:
    client: RoundTableClient
    service: ChatService
    runtime: Runtime

    async def outcome_of(self, event: Any) -> Outcome:
        """Run `event` (a coroutine that makes the fake send something) and wait for the bot's answer."""
        waiter = asyncio.ensure_future(self.client.wait_for("roundtable_outcome", timeout=20))
        await asyncio.sleep(0)  # let wait_for register before the event can arrive
        await event
        outcome: Outcome = await waiter
        return outcome

    async def finished(self, outcome: Outcome) -> SessionReport:
        """The report of a started session, once its result is posted."""
        assert isinstance(outcome, Started), outcome
        report = await asyncio.wait_for(outcome.task, timeout=30)
        assert report is not None
        return report


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, fake: FakeDiscord) -> AsyncIterator[Bot]:
    """A runtime, a chat service and a connected client; all closed on exit, as at a shut-down."""
    runtime = await Runtime.open(settings)
    service = await ChatService.open(runtime)
    client = RoundTableClient(service, gateway_from_api=True, guild_ready_timeout=0.05)
    runner = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(_ready(client, runner), timeout=20)
        yield Bot(client, service, runtime)
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, timeout=10)
        await service.close()
        await runtime.close()


async def _ready(client: discord.Client, runner: asyncio.Task[None]) -> None:
    ready = asyncio.ensure_future(client.wait_until_ready())
    done, _ = await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        ready.cancel()
        runner.result()  # raises what stopped the client
        raise AssertionError("the client stopped before it was ready")


def assert_within_limits(fake: FakeDiscord) -> int:
    """Every message payload the bot sent is one Discord accepts; returns how many were checked."""
    checked = 0
    for record in fake.sent_messages():
        problems = limit_problems(record.message_payload, files=[f.filename for f in record.files])
        assert not problems, (record.route, problems)
        assert record.status < 400, (record.route, record.status, record.response)
        checked += 1
    return checked


def embeds_text(payload: dict[str, Any]) -> str:
    """All the text of a payload's embeds, in reading order."""
    parts: list[str] = []
    for embed in payload.get("embeds") or []:
        parts.append(embed.get("title") or "")
        parts.append(embed.get("description") or "")
        for field in embed.get("fields") or []:
            parts.append(field["name"])
            parts.append(field["value"])
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(parts)


def in_channel(record: Recorded, channel_id: str) -> bool:
    return record.params.get("channel_id") == channel_id
