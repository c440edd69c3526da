"""Bolt listeners: Slack events and button clicks become `ChatService` calls; answers become messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage, unescape
from adapters.slack.errors import SlackError, slack_errors
from adapters.slack.presenter import SlackPresenter
from adapters.slack.render import PAGE_CHARS, notice_message, page_message, statistics_pages
from bot.chat import (
    BUTTON_PATTERN,
    ButtonRef,
    ChatOrigin,
    ChatService,
    Replied,
    parse_button_id,
    user_message,
)

log = logging.getLogger("roundtable.slack")

#: Message subtypes that are people writing; edits, joins and bot posts are not.
_USER_SUBTYPES = frozenset({None, "thread_broadcast"})


def register(app: AsyncApp, service: ChatService) -> None:
    """Attach RoundTable's listeners to `app`; presenters post with `app.client`."""
    client = app.client

    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        if _is_retry(request):
            return
        text = strip_mention(str(event.get("text") or ""), context.bot_user_id)
        await _handle(service, client, unescape(text), event, body, mentioned=True)

    @app.event("message")
    async def on_message(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        if _is_retry(request) or not is_user_message(event, context.bot_user_id):
            return
        await _handle(service, client, unescape(str(event.get("text") or "")), event, body, mentioned=False)

    @app.action(re.compile(f"^{BUTTON_PATTERN}$"))
    async def on_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()  # within Slack's 3 seconds; the content follows through the response_url
        ref = parse_button_id(str(action.get("action_id") or ""))
        if ref is None:
            return
        try:
            message = await button_message(service, ref)
        except Exception as exc:
            log.warning("roundtable.slack_button_failed action=%s", ref.action, exc_info=True)
            message = notice_message(user_message(exc))
        await _show_ephemeral(client, respond, body, message)


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The message without the bot's mention (`<@U123>` or `<@U123|name>`)."""
    if not bot_user_id:
        return text.strip()
    return re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text).strip()


def is_user_message(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """A message a person wrote, that does not mention the bot (`app_mention` handles those)."""
    if event.get("subtype") not in _USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
        return False
    return not (bot_user_id and f"<@{bot_user_id}" in str(event.get("text") or ""))


async def button_message(service: ChatService, ref: ButtonRef) -> SlackMessage:
    """The page a button asks for; a page past the end shows the last one."""
    if ref.action == "stats":
        pages = statistics_pages(await service.statistics(ref.session_id))
        return pages[min(ref.page, len(pages) - 1)]
    found = await service.pages(ref.session_id, ref.action, page_chars=PAGE_CHARS)
    page = found[min(ref.page, len(found) - 1)]
    return page_message(page, ref.action, ref.session_id)


def _origin(event: Mapping[str, Any], body: Mapping[str, Any]) -> ChatOrigin:
    return ChatOrigin(
        platform="slack",
        channel_id=str(event["channel"]),
        user_id=str(event["user"]),
        thread_id=event.get("thread_ts"),
        message_id=event.get("ts"),
        guild_id=body.get("team_id") or event.get("team"),
    )


async def _handle(
    service: ChatService,
    client: AsyncWebClient,
    text: str,
    event: Mapping[str, Any],
    body: Mapping[str, Any],
    *,
    mentioned: bool,
) -> None:
    if not event.get("channel") or not event.get("user"):
        return
    origin = _origin(event, body)
    try:
        outcome = await service.handle(text, origin, SlackPresenter(client, origin), mentioned=mentioned)
    except Exception as exc:
        log.warning("roundtable.slack_message_failed channel=%s", origin.channel_id, exc_info=True)
        outcome = Replied(user_message(exc))
    if isinstance(outcome, Replied):
        await _reply(client, origin, outcome.text)


async def _reply(client: AsyncWebClient, origin: ChatOrigin, text: str) -> None:
    """Answer in the thread of the message that asked, so a usage line does not clutter the channel."""
    thread = origin.thread_id or origin.message_id
    try:
        await client.chat_postMessage(
            channel=origin.channel_id, thread_ts=thread, **notice_message(text).payload()
        )
    except Exception:
        log.warning("roundtable.slack_reply_failed channel=%s", origin.channel_id, exc_info=True)


async def _show_ephemeral(
    client: AsyncWebClient, respond: AsyncRespond, body: Mapping[str, Any], message: SlackMessage
) -> None:
    """Show `message` to the clicking user only: through the response_url, else chat.postEphemeral.

    A click on a page's Previous/Next replaces that ephemeral page; a click on the result message
    opens a new one.
    """
    container: Mapping[str, Any] = body.get("container") or {}
    replace = bool(container.get("is_ephemeral"))
    if body.get("response_url"):
        try:
            with slack_errors("response_url"):
                sent = await respond(
                    text=message.text,
                    blocks=message.blocks,
                    response_type="ephemeral",
                    replace_original=replace,
                )
            if sent.status_code == 200:
                return
            log.warning("roundtable.slack_respond_failed status=%s body=%s", sent.status_code, sent.body)
        except SlackError:
            log.warning("roundtable.slack_respond_failed", exc_info=True)
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    user = (body.get("user") or {}).get("id")
    if not channel or not user:
        return
    try:
        with slack_errors("chat.postEphemeral"):
            await client.chat_postEphemeral(channel=channel, user=user, **message.payload())
    except SlackError:
        log.warning("roundtable.slack_ephemeral_failed channel=%s", channel, exc_info=True)


def _is_retry(request: AsyncBoltRequest) -> bool:
    """Slack resends an event it thinks was missed; the first delivery already started the session.

    HTTP requests carry `X-Slack-Retry-Num: 1..`; Socket Mode envelopes carry `retry_attempt`, which
    bolt mirrors into the same header, as `0` on a first delivery.
    """
    values = request.headers.get("x-slack-retry-num") or []
    first = values[0] if values else "0"
    return first.isdigit() and int(first) > 0
