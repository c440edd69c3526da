"""The Discord adapter: translates gateway events and interactions into `bot.chat` calls, and view-models
into embeds and buttons. No decision is taken here.

    run_discord(settings)                  `roundtable discord`: runtime, chat service, client
    RoundTableClient(service)              `!roundtable`, mentions, `/roundtable`, persistent buttons
    DiscordPresenter                       one session's status message, typing and result
    render.*                               pure: view-model -> embed dicts and button specs, within limits

See `adapters.discord.client` for enabling the message content intent.
"""

from adapters.discord.buttons import SessionButton, button_view
from adapters.discord.client import RoundTableClient, intents, strip_mentions
from adapters.discord.presenter import DiscordPresenter
from adapters.discord.render import (
    ButtonSpec,
    MessageSpec,
    pack_embeds,
    page_message,
    progress_embed,
    result_messages,
    statistics_messages,
)
from adapters.discord.run import run_discord, use_api_base

__all__ = [
    "ButtonSpec",
    "DiscordPresenter",
    "MessageSpec",
    "RoundTableClient",
    "SessionButton",
    "button_view",
    "intents",
    "pack_embeds",
    "page_message",
    "progress_embed",
    "result_messages",
    "run_discord",
    "statistics_messages",
    "strip_mentions",
    "use_api_base",
]
