"""The real bolt `AsyncApp` served over HTTP on loopback, and the means to talk to it as Slack would.

A `SlackBot` (made by the `start_bot` fixture in conftest.py) delivers signed events and button clicks
to the app, and waits for what the app sent to the fake Slack Web API.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot import Runtime, Settings
from bot.chat import ChatService
from tests.fakes.fake_slack import BOT_USER_ID, TEAM_ID, Call, FakeSlack, signed_headers

SECRET = "fake-signing-secret"
TOKEN = "xoxb-fake-token"

_ids = itertools.count(1)


@dataclass
class SlackBot:
    """One running app instance and the means to talk to it as Slack would."""

    app: AsyncApp
    service: ChatService
    runtime: Runtime
    fake: FakeSlack
    url: str
    http: aiohttp.ClientSession
    runner: web.AppRunner
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def deliver(self, body: bytes, content_type: str, **extra_headers: str) -> tuple[int, str]:
        headers = {**signed_headers(SECRET, body, content_type), **extra_headers}
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def event(self, event: dict[str, Any], **extra_headers: str) -> int:
        """Deliver an Events API callback carrying `event`."""
        envelope = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "api_app_id": "AROUNDTBL",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(_ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }
        self.sent.append(envelope)
        status, _ = await self.deliver(json.dumps(envelope).encode(), "application/json", **extra_headers)
        return status

    async def message(
        self, text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None
    ) -> str:
        """A person posts `text`; returns the message's ts."""
        ts = f"1600000000.{next(_ids):06d}"
        event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "team": TEAM_ID}
        if thread_ts:
            event["thread_ts"] = thread_ts
        assert await self.event(event) == 200
        return ts

    async def mention(self, text: str, *, channel: str = "C1", user: str = "U1") -> str:
        """A person posts `<@bot> text`: Slack sends both a message and an app_mention event."""
        ts = f"1600000000.{next(_ids):06d}"
        full = f"<@{BOT_USER_ID}> {text}"
        common = {"channel": channel, "user": user, "text": full, "ts": ts, "team": TEAM_ID}
        assert await self.event({"type": "message", **common}) == 200
        assert await self.event({"type": "app_mention", **common}) == 200
        return ts

    async def click(
        self,
        action_id: str,
        *,
        channel: str = "C1",
        user: str = "U1",
        ephemeral: bool = False,
        with_response_url: bool = True,
    ) -> tuple[int, str]:
        """Click the button `action_id`, as a block_actions interaction with a response_url."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "AROUNDTBL",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": "1700000000.000001",
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": f"{next(_ids)}.1.abc",
            "channel": {"id": channel, "name": "general"},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": action_id,
                    "text": {"type": "plain_text", "text": "button"},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if with_response_url:
            payload["response_url"] = self.fake.response_url(f"click{next(_ids)}")
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.deliver(body, "application/x-www-form-urlencoded")

    async def wait(self, predicate: Callable[[list[Call]], bool], limit_s: float = 30.0) -> list[Call]:
        """Until the fake has seen calls that satisfy `predicate` (TimeoutError after `limit_s`)."""
        return await asyncio.to_thread(self.fake.wait_for, predicate, limit_s)

    async def responses(self, count: int) -> list[Call]:
        """Until `count` posts have reached response_urls; returns them in order."""
        calls = await self.wait(lambda calls: sum(c.method == "response_url" for c in calls) >= count)
        return [c for c in calls if c.method == "response_url"]

    async def wait_result(self, channel: str = "C1", *, uploads: int = 1) -> list[Call]:
        """Until the session in `channel` has posted its result (and its chart, when it has one)."""

        def done(calls: list[Call]) -> bool:
            results = [c for c in calls if is_result(c) and c.args.get("channel") == channel]
            completed = [c for c in calls if c.method == "files.completeUploadExternal"]
            return bool(results) and len(completed) >= uploads

        return await self.wait(done)

    async def close(self) -> None:
        await self.service.close()
        await self.runner.cleanup()
        await self.runtime.close()
        await self.http.close()


def is_result(call: Call) -> bool:
    return call.method == "chat.postMessage" and call.text.startswith(
        ("RoundTable decision", "RoundTable reached no decision")
    )


StartBot = Callable[[Settings], Awaitable[SlackBot]]
