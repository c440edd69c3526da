"""One session's messages in one Discord channel: a status message kept up to date, then the result.

The service already throttles progress to one call per interval; this presenter also makes sure two
edits of the status message never overlap (a newer view waiting for the lock replaces an older one,
so the message only ever moves forward), and shows "RoundTable is typing…" while agents think.
Discord's 429 answers are retried by discord.py itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import discord

from adapters.discord import limits
from adapters.discord.buttons import button_view
from adapters.discord.render import (
    CHART_FILENAME,
    MessageSpec,
    failure_message,
    progress_embed,
    result_messages,
)
from bot.chat import ChatResult
from bot.views import ProgressView
from engine.errors import ConfigError

log = logging.getLogger("roundtable.discord")

PERMISSIONS = "View Channel, Send Messages, Send Messages in Threads, Embed Links and Attach Files"


@contextlib.contextmanager
def refusals_as_config_errors() -> Iterator[None]:
    """A 403 from Discord is a missing permission, which only the server's admins can fix: say which."""
    try:
        yield
    except discord.Forbidden as exc:
        reason = exc.text or "Forbidden"
        raise ConfigError(f"Discord refused to post here ({reason}); give the bot {PERMISSIONS}") from exc


class DiscordPresenter:
    """Implements `bot.chat.SessionPresenter` for a channel (or a thread in it).

    Args:
        client: the connected client; channels are reached by id, so nothing needs to be cached.
        channel_id: the channel the request came from.
        guild_id: its guild, None in a direct message.
        target_id: where to post, when not the channel itself (a thread).
        reply_to: the message that asked, which the status message and the result reply to.
        thread_name: open a thread for the session with this name (None: post in the channel).
    """

    def __init__(
        self,
        client: discord.Client,
        channel_id: int,
        *,
        guild_id: int | None = None,
        target_id: int | None = None,
        reply_to: int | None = None,
        thread_name: str | None = None,
    ) -> None:
        self._channel = client.get_partial_messageable(channel_id, guild_id=guild_id)
        self._target: discord.abc.Messageable = (
            client.get_partial_messageable(target_id, guild_id=guild_id) if target_id else self._channel
        )
        self._reply_to = reply_to
        self._thread_name = thread_name if guild_id is not None else None
        self._session_id: str | None = None
        self._status: discord.Message | None = None
        self._latest: ProgressView | None = None
        self._edit_lock = asyncio.Lock()
        self._typing: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str | None:
        return self._session_id

    # -- SessionPresenter --------------------------------------------------------------------

    async def started(self, session_id: str, view: ProgressView) -> None:
        self._session_id = session_id
        if self._thread_name is not None and self._reply_to is not None:
            await self._open_thread(self._channel.get_partial_message(self._reply_to))
        self._status = await self._send(embeds=[progress_embed(view)], reply=self._target is self._channel)
        if self._thread_name is not None and self._target is self._channel:
            await self._open_thread(self._status)
        self._show_typing(view)

    async def progress(self, view: ProgressView) -> None:
        """Edit the status message; edits are serialized and a waiting one takes the newest view."""
        self._latest = view
        self._show_typing(view)
        async with self._edit_lock:
            latest, self._latest = self._latest, None
            if latest is None or self._status is None:
                return  # an edit that waited before this one already showed the newest view
            self._status = await self._status.edit(embed=discord.Embed.from_dict(progress_embed(latest)))

    async def finished(self, result: ChatResult) -> None:
        self._stop_typing()
        chart = result.chart_png
        for spec in result_messages(result.view, chart=chart is not None):
            await self._post(spec, chart=chart)

    async def failed(self, message: str) -> None:
        self._stop_typing()
        await self._post(failure_message(message, self._session_id))

    # -- sending -----------------------------------------------------------------------------

    async def _post(self, spec: MessageSpec, *, chart: bytes | None = None) -> discord.Message:
        files = [discord.File(io.BytesIO(chart), filename=CHART_FILENAME)] if spec.chart and chart else []
        return await self._send(
            content=spec.content,
            embeds=spec.embeds,
            view=button_view(spec.buttons) if spec.buttons else None,
            files=files,
            reply=self._target is self._channel,
        )

    async def _send(
        self,
        *,
        content: str | None = None,
        embeds: list[dict[str, Any]] | None = None,
        view: discord.ui.View | None = None,
        files: list[discord.File] | None = None,
        reply: bool = False,
    ) -> discord.Message:
        """Send to the target; a thread that is gone (deleted, never made) falls back to the channel."""
        kwargs: dict[str, Any] = {"embeds": [discord.Embed.from_dict(e) for e in embeds or []]}
        if content:
            kwargs["content"] = content
        if view is not None:
            kwargs["view"] = view
        if files:
            kwargs["files"] = files
        if reply and self._reply_to is not None:
            kwargs["reference"] = self._channel.get_partial_message(self._reply_to).to_reference(
                fail_if_not_exists=False
            )
            kwargs["mention_author"] = False
        with refusals_as_config_errors():
            try:
                return await self._target.send(**kwargs)
            except discord.NotFound:
                if self._target is self._channel:
                    raise
                log.warning("roundtable.discord_thread_missing session=%s", self._session_id)
                self._target = self._channel
                for file in files or []:
                    file.reset()
                return await self._channel.send(**kwargs)

    async def _open_thread(self, message: discord.PartialMessage | discord.Message) -> None:
        """Post the session in a thread of its own; without the permission, stay in the channel."""
        name = limits.fit_heading(self._thread_name or "RoundTable", limits.THREAD_NAME)
        try:
            self._target = await message.create_thread(name=name)
        except (discord.HTTPException, ValueError):
            log.warning("roundtable.discord_thread_failed session=%s", self._session_id, exc_info=True)

    # -- typing ------------------------------------------------------------------------------

    def _show_typing(self, view: ProgressView) -> None:
        thinking = not view.finished and any(agent.status == "typing" for agent in view.agents)
        if thinking and self._typing is None:
            self._typing = asyncio.create_task(self._type(), name=f"roundtable-typing-{self._session_id}")
        elif not thinking:
            self._stop_typing()

    async def _type(self) -> None:
        try:
            async with self._target.typing():
                await asyncio.Event().wait()  # until `_stop_typing` cancels it
        except (discord.HTTPException, aiohttp.ClientError, OSError):
            # The indicator is a courtesy; losing it must not disturb the session.
            log.warning("roundtable.discord_typing_failed session=%s", self._session_id, exc_info=True)

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def close(self) -> None:
        """Stop the typing indicator; the client calls it at shut-down, when sessions are cut short."""
        task, self._typing = self._typing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
