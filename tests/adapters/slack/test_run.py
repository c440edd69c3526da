"""`adapters.slack.run`: a missing token says where to get it; `run_slack` serves HTTP and resumes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from adapters.slack import EVENTS_PATH, build_app, run_slack
from bot import ConfigError, Runtime, Settings
from bot.chat import ChatService
from tests.adapters.slack.harness import SECRET, SlackBot, StartBot, is_result
from tests.fakes.fake_llm import FakeLLM
from tests.fakes.fake_slack import TEAM_ID, Call, FakeSlack, signed_headers
from tests.servers import free_port

T = TypeVar("T")


@pytest.mark.parametrize(
    ("overrides", "http", "where"),
    [
        ({"slack_bot_token": None}, True, "SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token"),
        ({"slack_signing_secret": None}, True, "→ Basic Information → App Credentials"),
        ({"slack_app_token": None}, False, "→ Basic Information → App-Level Tokens"),
        ({"slack_app_token": "  "}, False, "SLACK_APP_TOKEN is not set"),
    ],
)
async def test_a_missing_token_is_a_config_error_that_says_where_to_get_it(
    slack_settings: Callable[..., Settings], overrides: dict[str, Any], http: bool, where: str
) -> None:
    settings = slack_settings(**{"slack_app_token": "xapp-fake", **overrides})
    with pytest.raises(ConfigError) as caught:
        await run_slack(settings, http=http, port=free_port())
    line = str(caught.value)
    assert where in line
    assert "https://api.slack.com/apps" in line
    assert "\n" not in line


async def test_build_app_needs_the_bot_token_and_points_its_client_at_the_configured_api(
    slack_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    runtime = await Runtime.open(slack_settings())
    service = await ChatService.open(runtime)
    try:
        assert build_app(service, slack_settings()).client.base_url == fake_slack.api_url
        with pytest.raises(ConfigError, match="OAuth & Permissions"):
            build_app(service, slack_settings(slack_bot_token=None))
    finally:
        await service.close()
        await runtime.close()


async def test_run_slack_resumes_a_session_a_crash_left_running_and_posts_to_its_channel(
    start_bot: StartBot,
    slack_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    fake_slack: FakeSlack,
) -> None:
    first: SlackBot = await start_bot(slack_settings())
    fake_llm.set(stall=True)  # the session hangs in its first step...
    await first.message("!roundtable Tabs or spaces?", channel="CRESUME", thread_ts="1600000000.000777")
    while fake_llm.request_count == 0:  # ...after it was stored as running
        await asyncio.sleep(0.02)
    await first.close()  # the process dies
    fake_llm.set(stall=False)
    assert not any(is_result(c) for c in fake_slack.calls)

    metrics_port = free_port()
    settings = slack_settings(workspace=first.runtime.settings.workspace, metrics_port=metrics_port)
    port = free_port()
    server = asyncio.create_task(run_slack(settings, http=True, port=port, host="127.0.0.1"))
    try:
        calls = await _until(server, first.wait(lambda calls: any(is_result(c) for c in calls)))
        [result] = [c for c in calls if is_result(c)]
        assert (result.args["channel"], result.args["thread_ts"]) == ("CRESUME", "1600000000.000777")

        # The bot serves the bus metrics of its in-process agents.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r,
        ):
            page = await r.text()
        handled = [
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("roundtable_bus_messages_acknowledged_total{")
        ]
        assert sum(handled) > 0, page[:2000]

        # The same process answers Slack's HTTP requests at /slack/events.
        event = {"type": "message", "channel": "CHTTP", "user": "U1", "text": "!roundtable", "ts": "1.5"}
        body = json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event": event}).encode()
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}{EVENTS_PATH}"
            async with http.post(
                url, data=body, headers=signed_headers(SECRET, body, "application/json")
            ) as r:
                assert r.status == 200
        calls = await _until(
            server, first.wait(lambda calls: any(c.args.get("channel") == "CHTTP" for c in calls))
        )
        [usage] = [c for c in calls if c.args.get("channel") == "CHTTP"]
        assert usage.text.startswith("usage: !roundtable")
        assert usage.args["thread_ts"] == "1.5"
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def _until(server: asyncio.Task[None], waiting: Awaitable[T]) -> T:
    """What `waiting` returns, unless the server stops first (then its error is raised)."""
    waiter = asyncio.ensure_future(waiting)
    done, _ = await asyncio.wait({waiter, server}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        server.result()
        raise AssertionError("run_slack returned on its own")
    return waiter.result()


async def test_run_slack_in_socket_mode_takes_events_over_the_websocket_and_acks_them(
    slack_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    """A WebSocket endpoint speaking Slack's Socket Mode protocol: hello, envelopes, acks."""
    connected = asyncio.Event()
    acks: list[str] = []
    sockets: list[web.WebSocketResponse] = []

    async def link(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "AROUNDTBL"}}
        )
        connected.set()
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                acks.append(json.loads(frame.data)["envelope_id"])
        return ws

    ws_app = web.Application()
    ws_app.router.add_get("/link", link)
    runner = web.AppRunner(ws_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    fake_slack.socket_url = f"ws://{host}:{port}/link"

    settings = slack_settings(slack_app_token="xapp-fake", slack_signing_secret=None)
    server = asyncio.create_task(run_slack(settings, http=False, port=0))
    try:
        await _until(server, connected.wait())
        event = {
            "type": "message",
            "channel": "CSOCK",
            "user": "U1",
            "text": "!roundtable Tabs?",
            "ts": "1.7",
        }
        envelope = {
            "envelope_id": "env-1",
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": {"type": "event_callback", "team_id": TEAM_ID, "event_id": "EvSOCK", "event": event},
        }
        await sockets[0].send_json(envelope)
        calls = await _until(server, _wait_calls(fake_slack, lambda calls: any(is_result(c) for c in calls)))
        [result] = [c for c in calls if is_result(c)]
        assert result.args["channel"] == "CSOCK"
        assert acks[0] == "env-1"
        [opened] = fake_slack.calls_to("apps.connections.open")
        assert opened.headers["authorization"] == "Bearer xapp-fake"
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await runner.cleanup()


async def _wait_calls(
    fake: FakeSlack, predicate: Callable[[list[Call]], bool], limit_s: float = 30.0
) -> list[Call]:
    return await asyncio.to_thread(fake.wait_for, predicate, limit_s)
