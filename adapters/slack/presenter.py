"""One session's messages in one Slack channel: a status message that is edited, then the result."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage
from adapters.slack.errors import slack_errors
from adapters.slack.render import failure_message, progress_message, result_messages
from bot.chat import ChatOrigin, ChatResult
from bot.views import ProgressView

log = logging.getLogger("roundtable.slack")


class SlackPresenter:
    """The `SessionPresenter` of a session that came from Slack.

    Calls are serialized by a lock: Slack applies `chat.update`s in arrival order, so two edits in
    flight could leave an older view on screen, and the result must come after the last edit.
    """

    def __init__(self, client: AsyncWebClient, origin: ChatOrigin) -> None:
        self._client = client
        self._origin = origin
        self._lock = asyncio.Lock()
        self._status_ts: str | None = None

    @property
    def status_ts(self) -> str | None:
        """The `ts` of the status message, once posted."""
        return self._status_ts

    async def started(self, session_id: str, view: ProgressView) -> None:
        async with self._lock:
            self._status_ts = await self._post(progress_message(view))

    async def progress(self, view: ProgressView) -> None:
        async with self._lock:
            message = progress_message(view)
            if self._status_ts is None:  # the first post failed; try again rather than edit nothing
                self._status_ts = await self._post(message)
                return
            with slack_errors("chat.update"):
                await self._client.chat_update(
                    channel=self._origin.channel_id, ts=self._status_ts, **message.payload()
                )

    async def finished(self, result: ChatResult) -> None:
        async with self._lock:
            for message in result_messages(result.view):
                await self._post(message)
            if result.chart_png is not None:
                await self._upload_chart(result.session_id, result.chart_png, rule=result.view.voting_rule)

    async def _upload_chart(self, session_id: str, png: bytes, *, rule: str) -> None:
        """The vote chart, into the result's channel or thread (get an upload URL, upload, complete)."""
        with slack_errors("files.upload (v2)"):
            await self._client.files_upload_v2(
                channel=self._origin.channel_id,
                thread_ts=self._origin.thread_id,
                file=png,
                filename=f"roundtable-{session_id}-votes.png",
                title="Vote distribution",
                alt_txt=f"Vote distribution ({rule} voting)",
            )

    async def failed(self, message: str) -> None:
        async with self._lock:
            await self._post(failure_message(message))

    async def _post(self, message: SlackMessage) -> str:
        args: dict[str, Any] = {"channel": self._origin.channel_id, **message.payload()}
        if self._origin.thread_id:
            args["thread_ts"] = self._origin.thread_id
        with slack_errors("chat.postMessage"):
            response = await self._client.chat_postMessage(**args)
        return str(response["ts"])
