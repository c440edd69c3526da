"""The Slack app's composition: tokens from settings, a bolt `AsyncApp`, Socket Mode or HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.listeners import register
from adapters.slack.presenter import SlackPresenter
from bot import ConfigError, Runtime, Settings
from bot.chat import ChatOrigin, ChatService, SessionPresenter, Started

log = logging.getLogger("roundtable.slack")

#: Where Slack's Web API lives unless `ROUNDTABLE_SLACK_API_URL` says otherwise.
SLACK_API_URL: Final = "https://slack.com/api/"
#: The path of events and interactions in HTTP mode (the Request URL to give Slack).
EVENTS_PATH: Final = "/slack/events"

BOT_TOKEN_HELP: Final = (
    "SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…) from "
    "https://api.slack.com/apps → your app → OAuth & Permissions"
)
SIGNING_SECRET_HELP: Final = (
    "SLACK_SIGNING_SECRET is not set; copy the Signing Secret from "
    "https://api.slack.com/apps → your app → Basic Information → App Credentials"
)
APP_TOKEN_HELP: Final = (
    "SLACK_APP_TOKEN is not set (Socket Mode); create an app-level token (xapp-…) with the "
    "connections:write scope at https://api.slack.com/apps → your app → Basic Information → "
    "App-Level Tokens, or run with --http"
)


def build_app(service: ChatService, settings: Settings) -> AsyncApp:
    """A bolt app wired to `service`, its Web API client pointed at `settings.slack_api_url`.

    Raises:
        ConfigError: `SLACK_BOT_TOKEN` is not set.
    """
    token = _secret(settings.slack_bot_token, BOT_TOKEN_HELP)
    # A client built here, not `token=`: bolt would otherwise make one for Slack's real host.
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url or SLACK_API_URL)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = AsyncApp(
        name="roundtable",
        client=client,
        signing_secret=secret,
        logger=logging.getLogger("roundtable.slack.bolt"),
    )
    register(app, service)
    return app


async def resume_sessions(service: ChatService, client: AsyncWebClient) -> list[Started]:
    """Resume the Slack sessions a previous run left unfinished; each posts to its own channel."""

    async def presenter_for(origin: ChatOrigin, session_id: str) -> SessionPresenter | None:
        log.info("roundtable.slack_resuming session=%s channel=%s", session_id, origin.channel_id)
        return SlackPresenter(client, origin)

    return await service.resume_interrupted("slack", presenter_for)


async def run_slack(settings: Settings, *, http: bool, port: int, host: str = "0.0.0.0") -> None:
    """Serve the Slack app until cancelled: Socket Mode, or HTTP at `EVENTS_PATH` with `http=True`.

    Raises:
        ConfigError: a token the chosen mode needs is not set (checked before anything starts).
    """
    _secret(settings.slack_bot_token, BOT_TOKEN_HELP)
    if http:
        _secret(settings.slack_signing_secret, SIGNING_SECRET_HELP)
        app_token = None
    else:
        app_token = _secret(settings.slack_app_token, APP_TOKEN_HELP)

    runtime = await Runtime.open(settings)
    service: ChatService | None = None
    runner: web.AppRunner | None = None
    socket: AsyncSocketModeHandler | None = None
    try:
        await runtime.start_metrics()  # ROUNDTABLE_METRICS_PORT; before the agents' mailboxes exist
        service = await ChatService.open(runtime)
        app = build_app(service, settings)
        if app_token is None:
            runner = web.AppRunner(app.web_app(path=EVENTS_PATH, port=port))
            await runner.setup()
            await web.TCPSite(runner, host=host, port=port).start()
            log.info("roundtable.slack_listening url=http://%s:%s%s", host, port, EVENTS_PATH)
        else:
            socket = AsyncSocketModeHandler(app, app_token)
            # bolt's socket-mode handler is not annotated, hence the ignores.
            await socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("roundtable.slack_connected mode=socket")
        await resume_sessions(service, app.client)
        await asyncio.Event().wait()
    finally:
        if socket is not None:
            await socket.close_async()  # type: ignore[no-untyped-call]
        if runner is not None:
            await runner.cleanup()
        if service is not None:
            await service.close()
        await runtime.close()


def _secret(value: SecretStr | None, help_line: str) -> str:
    secret = value.get_secret_value().strip() if value is not None else ""
    if not secret:
        raise ConfigError(help_line)
    return secret
