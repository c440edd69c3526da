"""The Discord client: gateway events and interactions in, `ChatService` calls out.

    !roundtable <topic> [--rounds N] [--voting RULE] [--team TEAM]    a prefix command
    @RoundTable should we pick A or B?                                 a mention with a dilemma
    /roundtable topic:… rounds:… voting:… team:…                       the slash command

Message content intent
----------------------
The prefix command and trigger channels read what people write, which Discord only sends to bots
that have the privileged **Message Content** intent. To turn it on: open
https://discord.com/developers/applications, choose the application, open **Bot**, and under
**Privileged Gateway Intents** switch on **MESSAGE CONTENT INTENT**, then **Save Changes**. Without
it Discord refuses the connection (close code 4014), and `roundtable discord` says so. Bots in 100 or
more servers must apply for the intent during verification. Mentions, direct messages and
`/roundtable` do not need it.

Invite the bot with the scopes `bot` and `applications.commands`, and the permissions View Channels,
Send Messages, Send Messages in Threads, Create Public Threads, Embed Links, Attach Files and Read
Message History.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from typing import Any

import discord
import yarl
from discord import app_commands

from adapters.discord import limits
from adapters.discord.buttons import SessionButton, button_view
from adapters.discord.presenter import DiscordPresenter
from adapters.discord.render import (
    PAGE_CHARS,
    MessageSpec,
    page_message,
    reply_chunks,
    statistics_messages,
)
from bot import SessionReport
from bot.chat import ButtonRef, ChatOrigin, ChatService, Replied, SessionPresenter, Started, user_message
from bot.request import SessionRequest
from engine.config import MAX_ROUNDS, MAX_TOPIC_CHARS
from engine.rules import VOTING_RULES
from personas import TEAMS

log = logging.getLogger("roundtable.discord")

EPHEMERAL_FLAG = 1 << 6


def intents() -> discord.Intents:
    """Guilds and messages, plus the privileged message content (see the module docstring)."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    return wanted


def strip_mentions(text: str, user_id: int) -> str:
    """The message without mentions of the bot (`<@id>` and the older `<@!id>`)."""
    return re.sub(rf"<@!?{user_id}>", " ", text).strip()


def role_keys(author: discord.abc.User | discord.Member) -> tuple[str, ...]:
    """A member's role ids and names, which the admin-role setting may name either way."""
    roles = getattr(author, "roles", None) or []
    return tuple(str(role.id) for role in roles) + tuple(role.name for role in roles)


def thread_id_of(channel: Any) -> str | None:
    return str(channel.id) if isinstance(channel, discord.Thread) else None


class RoundTableClient(discord.Client):
    """A discord.py client that turns messages, slash commands and button clicks into chat-service calls.

    Args:
        service: the opened chat service; the caller owns it and closes it after the client.
        gateway_from_api: ask the REST API (`GET /gateway/bot`) for the gateway address instead of
            using Discord's; for a Discord fake or proxy set with `discord_api_url`.
        options: passed to `discord.Client` (e.g. `guild_ready_timeout`).
    """

    def __init__(self, service: ChatService, *, gateway_from_api: bool = False, **options: Any) -> None:
        options.setdefault("intents", intents())
        super().__init__(**options)
        self.service = service
        self.settings = service.settings
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(_slash_command())
        self._gateway_from_api = gateway_from_api
        #: Running sessions started by this client, by id (finished ones are removed).
        self.sessions: dict[str, asyncio.Task[SessionReport | None]] = {}
        self._presenters: weakref.WeakSet[DiscordPresenter] = weakref.WeakSet()

    async def setup_hook(self) -> None:
        """Register the buttons and the slash command, then resume sessions a restart interrupted."""
        if self._gateway_from_api:
            _, url, _ = await self.http.get_bot_gateway()
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        self.add_dynamic_items(SessionButton)
        await self.tree.sync()
        for started in await self.service.resume_interrupted("discord", self.presenter_for):
            self._track(started)
            log.info("roundtable.discord_resumed session=%s", started.session_id)

    async def close(self) -> None:
        """Stop the typing indicators of sessions still running, then disconnect.

        The sessions themselves belong to the chat service, which stops them after the client; they
        stay `running` in storage and resume at the next start.
        """
        for presenter in list(self._presenters):
            await presenter.close()
        await super().close()

    # -- presenters ----------------------------------------------------------------------------

    def presenter(
        self,
        channel: Any,
        *,
        guild_id: int | None,
        reply_to: int | None,
        topic: str,
    ) -> DiscordPresenter:
        """The presenter for a request made in `channel`; a thread per session when configured."""
        in_thread = isinstance(channel, discord.Thread)
        open_thread = self.settings.discord_thread and guild_id is not None and not in_thread
        thread_name = limits.fit_heading(topic or "RoundTable", limits.THREAD_NAME)
        presenter = DiscordPresenter(
            self,
            channel.id,
            guild_id=guild_id,
            reply_to=reply_to,
            thread_name=thread_name if open_thread else None,
        )
        self._presenters.add(presenter)
        return presenter

    async def presenter_for(self, origin: ChatOrigin, session_id: str) -> SessionPresenter | None:
        """A presenter for a resumed session, in the channel (or thread) it came from.

        A session that opened a thread from its triggering message posts there again: Discord gives
        such a thread the id of the message it was started from.
        """
        guild_id = int(origin.guild_id) if origin.guild_id else None
        target = origin.thread_id
        if target is None and self.settings.discord_thread and origin.message_id and guild_id:
            target = origin.message_id
        presenter = DiscordPresenter(
            self,
            int(origin.channel_id),
            guild_id=guild_id,
            target_id=int(target) if target else None,
            reply_to=int(origin.message_id) if origin.message_id and target is None else None,
        )
        self._presenters.add(presenter)
        return presenter

    def _track(self, started: Started) -> None:
        self.sessions[started.session_id] = started.task
        started.task.add_done_callback(lambda _: self.sessions.pop(started.session_id, None))

    # -- messages ------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """Commands, mentions and trigger-channel dilemmas; everything else is ignored by the service."""
        if message.author.bot or self.user is None:
            return
        mentioned = any(user.id == self.user.id for user in message.mentions)
        text = strip_mentions(message.content, self.user.id)
        guild_id = message.guild.id if message.guild else None
        origin = ChatOrigin(
            platform="discord",
            channel_id=str(message.channel.id),
            user_id=str(message.author.id),
            roles=role_keys(message.author),
            thread_id=thread_id_of(message.channel),
            message_id=str(message.id),
            guild_id=str(guild_id) if guild_id else None,
        )
        presenter = self.presenter(message.channel, guild_id=guild_id, reply_to=message.id, topic=text)
        try:
            outcome = await self.service.handle(text, origin, presenter, mentioned=mentioned)
        except Exception as exc:
            log.warning("roundtable.discord_message_failed message=%s", message.id, exc_info=True)
            outcome = Replied(user_message(exc))
        if isinstance(outcome, Replied):
            await self._reply(message, outcome.text)
        elif isinstance(outcome, Started):
            self._track(outcome)
        self.dispatch("roundtable_outcome", outcome)

    async def _reply(self, message: discord.Message, text: str) -> None:
        try:
            for chunk in reply_chunks(text):
                await message.reply(chunk, mention_author=False)
        except discord.HTTPException:
            log.warning("roundtable.discord_reply_failed message=%s", message.id, exc_info=True)

    # -- the slash command ---------------------------------------------------------------------

    async def run_slash(self, interaction: discord.Interaction[Any], request: SessionRequest) -> None:
        """Acknowledge at once (Discord waits 3 s), admit the request, then say how it went, privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel = interaction.channel
        guild_id = interaction.guild_id
        origin = ChatOrigin(
            platform="discord",
            channel_id=str(interaction.channel_id),
            user_id=str(interaction.user.id),
            roles=role_keys(interaction.user),
            thread_id=thread_id_of(channel),
            guild_id=str(guild_id) if guild_id else None,
        )
        presenter = self.presenter(
            channel or self.get_partial_messageable(interaction.channel_id or 0),
            guild_id=guild_id,
            reply_to=None,
            topic=request.topic,
        )
        try:
            outcome = await self.service.start(request, origin, presenter)
        except Exception as exc:
            log.warning("roundtable.discord_slash_failed", exc_info=True)
            outcome = Replied(user_message(exc))
        if isinstance(outcome, Started):
            self._track(outcome)
            text = f"Started RoundTable session `{outcome.session_id}`; follow it in this channel."
        else:
            text = outcome.text
        try:
            for chunk in reply_chunks(text):
                await interaction.followup.send(chunk, ephemeral=True)
        except discord.HTTPException:
            log.warning("roundtable.discord_followup_failed", exc_info=True)
        self.dispatch("roundtable_outcome", outcome)

    # -- buttons ---------------------------------------------------------------------------------

    async def answer_button(self, interaction: discord.Interaction[Any], ref: ButtonRef) -> None:
        """Show a page of the discussion, the proposals or the statistics, to the clicker only.

        A click on the result message opens a private (ephemeral) message; a page button on that
        private message turns its page in place.
        """
        message = interaction.message
        in_place = message is not None and message.flags.ephemeral
        if in_place:
            await interaction.response.defer()
        else:
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            spec = await self._button_page(ref)
        except Exception as exc:
            log.warning("roundtable.discord_button_failed id=%s", ref, exc_info=True)
            spec = MessageSpec(content=reply_chunks(f"⚠️ {user_message(exc)}")[0])
        embeds = [discord.Embed.from_dict(e) for e in spec.embeds]
        view = button_view(spec.buttons)
        try:
            if in_place:
                await interaction.edit_original_response(content=spec.content, embeds=embeds, view=view)
            else:
                await interaction.followup.send(
                    content=spec.content or discord.utils.MISSING, embeds=embeds, view=view, ephemeral=True
                )
        except discord.HTTPException:
            log.warning("roundtable.discord_button_reply_failed id=%s", ref, exc_info=True)
        self.dispatch("roundtable_button", ref)

    async def _button_page(self, ref: ButtonRef) -> MessageSpec:
        if ref.action == "stats":
            pages = statistics_messages(await self.service.statistics(ref.session_id))
            return pages[min(ref.page, len(pages) - 1)]
        found = await self.service.pages(ref.session_id, ref.action, page_chars=PAGE_CHARS)
        page = found[min(ref.page, len(found) - 1)]
        return page_message(page, action=ref.action, session_id=ref.session_id)


def _slash_command() -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="roundtable", description="A team of AI personas debates a question and votes")
    @app_commands.describe(
        topic="the question or dilemma to deliberate",
        rounds=f"discussion rounds, 1-{MAX_ROUNDS}",
        voting="how the proposals are voted on",
        team="which personas take part",
    )
    @app_commands.choices(
        voting=[app_commands.Choice(name=rule, value=rule) for rule in VOTING_RULES],
        team=[app_commands.Choice(name=team, value=team) for team in TEAMS],
    )
    async def roundtable(
        interaction: discord.Interaction[Any],
        topic: app_commands.Range[str, 1, MAX_TOPIC_CHARS],
        rounds: app_commands.Range[int, 1, MAX_ROUNDS] | None = None,
        voting: str | None = None,
        team: str | None = None,
    ) -> None:
        client = interaction.client
        if isinstance(client, RoundTableClient):
            request = SessionRequest(topic=topic, rounds=rounds, voting=voting, team=team)
            await client.run_slash(interaction, request)

    return roundtable
