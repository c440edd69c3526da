"""`roundtable discord`: open the runtime and the chat service, then run the bot until it is stopped."""

from __future__ import annotations

import logging

import discord
import discord.http

from adapters.discord.client import RoundTableClient
from bot import Runtime, Settings
from bot.chat import ChatService
from engine.errors import ConfigError

log = logging.getLogger("roundtable.discord")

NO_TOKEN = (
    "DISCORD_TOKEN is not set; create a bot at https://discord.com/developers/applications "
    "(Bot -> Reset Token), switch on its MESSAGE CONTENT INTENT, and export DISCORD_TOKEN=<token>"
)
BAD_TOKEN = (
    "Discord refused DISCORD_TOKEN; copy the bot's token again from "
    "https://discord.com/developers/applications (Bot -> Reset Token)"
)
NO_INTENT = (
    "Discord refused the MESSAGE CONTENT intent; enable it at https://discord.com/developers/applications "
    "-> your application -> Bot -> Privileged Gateway Intents -> MESSAGE CONTENT INTENT, then Save Changes"
)


def use_api_base(url: str) -> None:
    """Send discord.py's REST calls (interaction replies included) to `url`, e.g. `http://host:port/api/v10`."""
    discord.http.Route.BASE = url.rstrip("/")


async def run_discord(settings: Settings) -> None:
    """Run the Discord bot until the connection ends or the task is cancelled.

    Raises:
        ConfigError: the token is missing or refused, or the message content intent is not enabled.
    """
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        raise ConfigError(NO_TOKEN)
    if settings.discord_api_url:
        use_api_base(settings.discord_api_url)
    runtime = await Runtime.open(settings)
    try:
        await runtime.start_metrics()  # ROUNDTABLE_METRICS_PORT; before the agents' mailboxes exist
        service = await ChatService.open(runtime)
        try:
            client = RoundTableClient(service, gateway_from_api=bool(settings.discord_api_url))
            async with client:
                await client.start(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            raise ConfigError(BAD_TOKEN) from None
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(NO_INTENT) from None
        finally:
            await service.close()
    finally:
        await runtime.close()
