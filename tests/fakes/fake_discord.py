"""A fake Discord: the REST API and the gateway websocket, on a loopback port, speaking the real protocol.

discord.py runs unpatched against it: `Route.BASE` points at `base_url`, `GET /gateway/bot` hands out
the fake's websocket, and the gateway says HELLO, answers heartbeats, and sends READY and GUILD_CREATE
after IDENTIFY, as Discord does. Tests then push gateway events (`send_message`, `slash`, `click`)
and read what the bot sent from `requests`, every REST call recorded with its JSON body and files.

Like Discord, the fake refuses what Discord would refuse: a message past the embed, content or
component limits gets `400 Invalid Form Body` (code 50035), and a wrong token gets `401`. Limits
checked (https://discord.com/developers/docs/resources/message#embed-object-embed-limits):

    content 2000 · 10 embeds · title 256 · description 4096 · 25 fields · field name 256, value 1024
    (both non-empty) · footer 2048 · author 256 · 6000 characters over all embeds of a message
    5 action rows · 5 buttons a row · custom_id 100 and unique · label 80
    an `attachment://name` must name an uploaded file

Interaction responses and follow-ups go to `/interactions/...` and `/webhooks/...`, which discord.py
also builds on `Route.BASE`, so they are recorded the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

DISCORD_EPOCH_MS = 1_420_070_400_000
#: A fixed clock for snowflakes, so ids are the same on every run.
BASE_TIME_MS = 1_750_000_000_000
API_PREFIX = "/api/v10"

EPHEMERAL = 1 << 6
MESSAGE_CONTENT_INTENT = 1 << 15

# Discord's limits on a message (see the module docstring).
CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
EMBED_TOTAL_LIMIT = 6000
ROWS_LIMIT = 5
BUTTONS_PER_ROW_LIMIT = 5
CUSTOM_ID_LIMIT = 100
LABEL_LIMIT = 80


@dataclass
class Upload:
    """A file sent in a multipart request."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Recorded:
    """One REST call the bot made."""

    method: str
    #: The route template, e.g. "POST /channels/{channel_id}/messages".
    route: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[Upload] = field(default_factory=list)
    status: int = 200
    response: Any = None

    @property
    def message_payload(self) -> dict[str, Any]:
        """The message part of the body (an interaction callback nests it under `data`)."""
        if self.route.endswith("/callback"):
            return dict((self.body or {}).get("data") or {})
        return dict(self.body or {})


class Snowflakes:
    """Discord ids: milliseconds since the Discord epoch, shifted, plus a counter."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> str:
        n = next(self._counter)
        return str(((BASE_TIME_MS + n - DISCORD_EPOCH_MS) << 22) | (n & 0xFFF))


def limit_problems(payload: dict[str, Any], *, files: list[str] | None = None) -> list[str]:
    """What Discord would refuse in a message payload, one line per problem; [] when it is valid."""
    problems: list[str] = []
    content = payload.get("content")
    if content is not None and len(content) > CONTENT_LIMIT:
        problems.append(f"content: {len(content)} > {CONTENT_LIMIT}")
    embeds = payload.get("embeds") or []
    if len(embeds) > EMBEDS_LIMIT:
        problems.append(f"embeds: {len(embeds)} > {EMBEDS_LIMIT}")
    total = 0
    for i, embed in enumerate(embeds):
        problems.extend(_embed_problems(f"embeds.{i}", embed, files))
        total += _embed_characters(embed)
    if total > EMBED_TOTAL_LIMIT:
        problems.append(f"embeds: {total} characters > {EMBED_TOTAL_LIMIT}")
    problems.extend(_component_problems(payload.get("components") or []))
    return problems


def _embed_texts(embed: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(key, text, limit) of each single text of an embed: title, description, footer, author."""
    return [
        ("title", embed.get("title") or "", TITLE_LIMIT),
        ("description", embed.get("description") or "", DESCRIPTION_LIMIT),
        ("footer", (embed.get("footer") or {}).get("text") or "", FOOTER_LIMIT),
        ("author", (embed.get("author") or {}).get("name") or "", AUTHOR_LIMIT),
    ]


def _embed_characters(embed: dict[str, Any]) -> int:
    """The characters that count towards Discord's limit on all the embeds of a message together."""
    fields_ = embed.get("fields") or []
    texts = sum(len(text) for _, text, _ in _embed_texts(embed))
    return texts + sum(len(str(f.get("name") or "")) + len(str(f.get("value") or "")) for f in fields_)


def _embed_problems(where: str, embed: dict[str, Any], files: list[str] | None) -> list[str]:
    problems = [
        f"{where}.{key}: {len(text)} > {limit}"
        for key, text, limit in _embed_texts(embed)
        if len(text) > limit
    ]
    fields_ = embed.get("fields") or []
    if len(fields_) > FIELDS_LIMIT:
        problems.append(f"{where}.fields: {len(fields_)} > {FIELDS_LIMIT}")
    for j, fld in enumerate(fields_):
        name, value = str(fld.get("name") or ""), str(fld.get("value") or "")
        if not name.strip() or not value.strip():
            problems.append(f"{where}.fields.{j}: name and value are required")
        if len(name) > FIELD_NAME_LIMIT:
            problems.append(f"{where}.fields.{j}.name: {len(name)} > {FIELD_NAME_LIMIT}")
        if len(value) > FIELD_VALUE_LIMIT:
            problems.append(f"{where}.fields.{j}.value: {len(value)} > {FIELD_VALUE_LIMIT}")
    for key in ("image", "thumbnail"):
        url = str((embed.get(key) or {}).get("url") or "")
        named = url.removeprefix("attachment://")
        if url.startswith("attachment://") and files is not None and named not in files:
            problems.append(f"{where}.{key}: {url} names no uploaded file")
    return problems


def _component_problems(rows: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(rows) > ROWS_LIMIT:
        problems.append(f"components: {len(rows)} rows > {ROWS_LIMIT}")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        items = row.get("components") or []
        if row.get("type") != 1:
            problems.append(f"components.{i}: not an action row")
        if len(items) > BUTTONS_PER_ROW_LIMIT:
            problems.append(f"components.{i}: {len(items)} buttons > {BUTTONS_PER_ROW_LIMIT}")
        for j, item in enumerate(items):
            custom_id = item.get("custom_id")
            label = item.get("label") or ""
            if len(label) > LABEL_LIMIT:
                problems.append(f"components.{i}.{j}.label: {len(label)} > {LABEL_LIMIT}")
            if custom_id is None and item.get("style") != 5:
                problems.append(f"components.{i}.{j}: a button needs a custom_id")
            if custom_id is not None:
                if len(custom_id) > CUSTOM_ID_LIMIT:
                    problems.append(f"components.{i}.{j}.custom_id: {len(custom_id)} > {CUSTOM_ID_LIMIT}")
                if custom_id in seen:
                    problems.append(f"components.{i}.{j}.custom_id: {custom_id!r} is not unique")
                seen.add(custom_id)
    return problems


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def snowflake_time_ms(snowflake: str) -> int:
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


class FakeDiscord:
    """One application with one bot user, guilds with text channels, and a message store.

    Use `async with FakeDiscord() as fake:` inside a running loop; `base_url` is what `Route.BASE`
    (or `ROUNDTABLE_DISCORD_API_URL`) takes, and `token` is the only token it accepts.
    """

    def __init__(
        self, *, token: str = "fake-bot-token", bot_name: str = "RoundTable", message_content: bool = True
    ) -> None:
        self.token = token
        #: Whether the application may use the privileged message content intent (a portal switch).
        self.message_content = message_content
        self.ids = Snowflakes()
        self.application_id = self.ids.next()
        self.bot = self.user_payload(self.application_id, bot_name, bot=True)
        self.owner = self.user_payload(self.ids.next(), "owner")
        self.guilds: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.members: dict[tuple[str, str], dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.identifies: list[dict[str, Any]] = []
        #: Route templates -> statuses to answer with before serving normally (e.g. 429 once).
        #: None in the list serves that call normally, so a later call can be the one that fails.
        self.failures: dict[str, list[int | None]] = {}
        #: How long an edit takes on the server; long enough, two overlapping edits would show.
        self.edit_delay_s = 0.0
        #: The most edits of one message that were ever in flight at once.
        self.max_concurrent_edits = 0
        self._editing: dict[str, int] = {}
        self._interactions: dict[str, dict[str, Any]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        for method, path, handler in self._routes():
            app.router.add_route(method, API_PREFIX + path, self._wrap(method, path, handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        [(_, port)] = self._runner.addresses  # the one socket bound above: (host, port)
        self._port = int(port)
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    # -- the world -------------------------------------------------------------------------------

    @staticmethod
    def user_payload(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": user_id,
            "username": name.lower(),
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }

    def add_guild(self, name: str = "Guild", *, channels: tuple[str, ...] = ("general",)) -> dict[str, Any]:
        guild_id = self.ids.next()
        guild: dict[str, Any] = {
            "id": guild_id,
            "name": name,
            "icon": None,
            "owner_id": self.owner["id"],
            "roles": [self._role(guild_id, "@everyone", position=0)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [],
            "threads": [],
            "members": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "member_count": 0,
            "large": False,
            "unavailable": False,
            "joined_at": iso(BASE_TIME_MS),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_flags": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }
        self.guilds[guild_id] = guild
        self.add_member(guild_id, self.bot)
        for channel_name in channels:
            self.add_channel(guild_id, channel_name)
        return guild

    def _role(self, role_id: str, name: str, *, position: int) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": "2248473465835073",
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def add_role(self, guild_id: str, name: str) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        role = self._role(self.ids.next(), name, position=len(guild["roles"]))
        guild["roles"].append(role)
        return role

    def add_channel(self, guild_id: str, name: str) -> dict[str, Any]:
        channel: dict[str, Any] = {
            "id": self.ids.next(),
            "type": 0,
            "guild_id": guild_id,
            "name": name,
            "position": len(self.guilds[guild_id]["channels"]),
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self.guilds[guild_id]["channels"].append(channel)
        self.channels[channel["id"]] = channel
        return channel

    def add_user(self, name: str) -> dict[str, Any]:
        return self.user_payload(self.ids.next(), name)

    def add_member(
        self, guild_id: str, user: dict[str, Any], *, roles: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        member = {
            "user": user,
            "nick": None,
            "avatar": None,
            "roles": list(roles),
            "joined_at": iso(BASE_TIME_MS),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        self.guilds[guild_id]["members"].append(member)
        self.guilds[guild_id]["member_count"] = len(self.guilds[guild_id]["members"])
        self.members[(guild_id, user["id"])] = member
        return member

    # -- gateway events, as Discord sends them ---------------------------------------------------

    async def send_message(
        self,
        channel_id: str,
        author: dict[str, Any],
        content: str,
        *,
        mentions: tuple[dict[str, Any], ...] = (),
    ) -> dict[str, Any]:
        """A user posts `content` in a channel: MESSAGE_CREATE goes to every connected bot."""
        channel = self.channels[channel_id]
        guild_id = channel.get("guild_id")
        message = self._message(channel_id, author, {"content": content}, mentions=mentions)
        if guild_id is not None:
            member = {k: v for k, v in self.members[(guild_id, author["id"])].items() if k != "user"}
            message["guild_id"] = guild_id
            message["member"] = member
        self.messages[message["id"]] = message
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    def add_bot_message(self, channel_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A message the bot posted earlier (e.g. before a restart), stored without a request."""
        message = self._message(channel_id, self.bot, payload)
        self._store(message)
        return message

    async def slash(
        self, channel_id: str, user: dict[str, Any], name: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """A user runs a chat-input command: INTERACTION_CREATE of type 2, with typed options."""
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise LookupError(f"the bot registered no command {name!r}; registered: {self.commands}")
        types = {o["name"]: o["type"] for o in command.get("options") or []}
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": types[k], "value": v} for k, v in options.items()],
        }
        interaction = self._interaction(2, channel_id, user, data)
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def click(self, message_id: str, custom_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A user clicks a button of a stored message: INTERACTION_CREATE of type 3."""
        message = self.messages[message_id]
        if not any(
            item.get("custom_id") == custom_id
            for row in message.get("components") or []
            for item in row.get("components") or []
        ):
            raise LookupError(f"message {message_id} has no component {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 2}
        interaction = self._interaction(3, message["channel_id"], user, data, message=message)
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    def _interaction(
        self,
        kind: int,
        channel_id: str,
        user: dict[str, Any],
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        channel = self.channels[channel_id]
        guild_id = channel.get("guild_id")
        interaction: dict[str, Any] = {
            "id": self.ids.next(),
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "channel_id": channel_id,
            "channel": dict(channel),
            "token": f"itoken-{self.ids.next()}",
            "version": 1,
            "app_permissions": "2248473465835073",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id} if guild_id else {"1": user["id"]},
            "context": 0 if guild_id else 1,
            "attachment_size_limit": 26_214_400,
        }
        if guild_id is not None:
            member = dict(self.members[(guild_id, user["id"])])
            member["permissions"] = "2248473465835073"
            interaction["guild_id"] = guild_id
            interaction["guild_locale"] = "en-US"
            interaction["member"] = member
        else:
            interaction["user"] = user
        if message is not None:
            interaction["message"] = message
        self._interactions[interaction["token"]] = {"interaction": interaction, "original": None}
        if message is not None:
            self._interactions[interaction["token"]]["component_message"] = message["id"]
        return interaction

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every connected gateway session."""
        for ws in list(self._sockets):
            await self._send_dispatch(ws, event, data)

    async def _send_dispatch(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41_250}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame.get("op") == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif frame.get("op") == 2:
                    await self._identify(ws, frame["d"])
        finally:
            self._sockets.remove(ws)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if int(data.get("intents") or 0) & MESSAGE_CONTENT_INTENT and not self.message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": guild_id, "unavailable": True} for guild_id in self.guilds],
            "session_id": f"session-{self.ids.next()}",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await self._send_dispatch(ws, "READY", ready)
        for guild in self.guilds.values():
            await self._send_dispatch(ws, "GUILD_CREATE", guild)
        async with self._changed:  # after the guilds, so an event sent next arrives after them
            self.identifies.append(data)
            self._changed.notify_all()

    # -- what tests read ------------------------------------------------------------------------

    def calls(self, route: str) -> list[Recorded]:
        """The recorded calls of one route template, e.g. "POST /channels/{channel_id}/messages"."""
        return [r for r in self.requests if r.route == route]

    def sent_messages(self) -> Iterator[Recorded]:
        """Every call that carried a message payload (sends, edits, follow-ups, interaction replies)."""
        for r in self.requests:
            if r.route in MESSAGE_ROUTES and r.message_payload:
                yield r

    async def wait_identified(self, *, count: int = 1, wait_s: float = 15.0) -> dict[str, Any]:
        """The `count`-th IDENTIFY a bot sent on the gateway; waits for it."""
        async with asyncio.timeout(wait_s), self._changed:
            await self._changed.wait_for(lambda: len(self.identifies) >= count)
        return self.identifies[count - 1]

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], *, since: int = 0, wait_s: float = 15.0
    ) -> Recorded:
        """The first recorded call from index `since` that matches; waits for one to arrive."""

        def find() -> Recorded | None:
            return next((r for r in self.requests[since:] if predicate(r)), None)

        async with asyncio.timeout(wait_s), self._changed:
            await self._changed.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    # -- REST ------------------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/gateway", self._get_gateway_bot),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._thread_from_message),
            ("POST", "/channels/{channel_id}/threads", self._thread),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_webhook_message),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._patch_webhook_message,
            ),
        ]

    def _wrap(self, method: str, path: str, handler: Callable[..., Any]) -> Callable[[web.Request], Any]:
        route = f"{method} {path}"

        async def serve(request: web.Request) -> web.StreamResponse:
            body, files = await _read_body(request)
            record = Recorded(
                method=method,
                route=route,
                params=dict(request.match_info),
                query=dict(request.query),
                body=body,
                files=files,
            )
            response = await self._answer(request, route, record, handler)
            record.status = response.status
            if isinstance(response, web.Response) and response.text:
                with contextlib.suppress(ValueError):
                    record.response = json.loads(response.text)
            async with self._changed:
                self.requests.append(record)
                self._changed.notify_all()
            return response

        return serve

    async def _answer(
        self, request: web.Request, route: str, record: Recorded, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        is_webhook = route.split(" ", 1)[1].startswith(("/interactions/", "/webhooks/"))
        if not is_webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        pending = self.failures.get(route)
        status = pending.pop(0) if pending else None
        if status is not None:
            if status == 429:
                return _json(
                    {"message": "You are being rate limited.", "retry_after": 0.01, "global": False},
                    status=429,
                    headers={"Retry-After": "0.01", "X-RateLimit-Scope": "user"},
                )
            if status == 403:
                return _error(403, 50013, "Missing Permissions")
            return _error(status, 0, f"{status}: injected failure")
        if route in MESSAGE_ROUTES:
            payload = record.message_payload
            problems = limit_problems(payload, files=[f.filename for f in record.files])
            if problems:
                return _error(400, 50035, "Invalid Form Body", errors=problems)
        result = await handler(record)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return _json(result)

    async def _get_me(self, record: Recorded) -> dict[str, Any]:
        return {**self.bot, "verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _get_application(self, record: Recorded) -> dict[str, Any]:
        return {
            "id": self.application_id,
            "name": self.bot["global_name"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.owner,
            "flags": 0,
            "bot": self.bot,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
        }

    async def _get_gateway_bot(self, record: Recorded) -> dict[str, Any]:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _put_commands(self, record: Recorded) -> list[dict[str, Any]]:
        commands = []
        for command in record.body or []:
            stored = {
                **command,
                "id": self.ids.next(),
                "application_id": self.application_id,
                "version": self.ids.next(),
                "default_member_permissions": command.get("default_member_permissions"),
                "type": command.get("type", 1),
            }
            if "guild_id" in record.params:
                stored["guild_id"] = record.params["guild_id"]
            commands.append(stored)
        self.commands = commands
        return commands

    async def _get_channel(self, record: Recorded) -> Any:
        channel = self.channels.get(record.params["channel_id"])
        return channel if channel is not None else _error(404, 10003, "Unknown Channel")

    def _message(
        self,
        channel_id: str,
        author: dict[str, Any],
        payload: dict[str, Any],
        *,
        mentions: tuple[dict[str, Any], ...] = (),
        files: list[Upload] | None = None,
        message_id: str | None = None,
        webhook_id: str | None = None,
        interaction: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message_id = message_id or self.ids.next()
        attachments = [
            {
                "id": self.ids.next(),
                "filename": upload.filename,
                "size": len(upload.data),
                "url": f"https://cdn.discordapp.com/attachments/{channel_id}/{message_id}/{upload.filename}",
                "proxy_url": f"https://media.discordapp.net/attachments/{channel_id}/{message_id}/{upload.filename}",
                "content_type": _content_type(upload),
            }
            for upload in files or []
        ]
        by_name = {a["filename"]: a for a in attachments}
        embeds = []
        for embed in payload.get("embeds") or []:
            embed = {**embed, "type": embed.get("type", "rich")}
            image = embed.get("image") or {}
            name = str(image.get("url", "")).removeprefix("attachment://")
            if name in by_name:  # Discord resolves attachment:// to the uploaded file
                embed["image"] = {"url": by_name[name]["url"], "proxy_url": by_name[name]["proxy_url"]}
            embeds.append(embed)
        message: dict[str, Any] = {
            "id": message_id,
            "channel_id": channel_id,
            "type": 19 if payload.get("message_reference") else 0,
            "author": author,
            "content": payload.get("content") or "",
            "timestamp": iso(snowflake_time_ms(message_id)),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": list(mentions),
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds,
            "components": payload.get("components") or [],
            "pinned": False,
            "flags": int(payload.get("flags") or 0),
        }
        reference = payload.get("message_reference")
        if reference:
            message["message_reference"] = {"channel_id": channel_id, **reference}
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
            message["application_id"] = self.application_id
        if interaction is not None:
            message["interaction_metadata"] = {
                "id": interaction["id"],
                "type": interaction["type"],
                "user": (interaction.get("member") or {}).get("user") or interaction.get("user"),
                "authorizing_integration_owners": interaction["authorizing_integration_owners"],
            }
        return message

    async def _post_message(self, record: Recorded) -> Any:
        channel_id = record.params["channel_id"]
        if channel_id not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        message = self._message(channel_id, self.bot, record.body or {}, files=record.files)
        self._store(message)
        return message

    def _store(self, message: dict[str, Any]) -> None:
        self.messages[message["id"]] = message
        channel = self.channels.get(message["channel_id"])
        if channel is not None:
            channel["last_message_id"] = message["id"]

    async def _get_message(self, record: Recorded) -> Any:
        message = self.messages.get(record.params["message_id"])
        return message if message is not None else _error(404, 10008, "Unknown Message")

    async def _patch_message(self, record: Recorded) -> Any:
        message_id = record.params["message_id"]
        message = self.messages.get(message_id)
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return await self._edit(message, record)

    async def _edit(self, message: dict[str, Any], record: Recorded) -> dict[str, Any]:
        message_id = message["id"]
        self._editing[message_id] = self._editing.get(message_id, 0) + 1
        self.max_concurrent_edits = max(self.max_concurrent_edits, self._editing[message_id])
        try:
            await asyncio.sleep(self.edit_delay_s)  # a concurrent edit of the same message would overlap
            payload = dict(record.body or {})
            edited = self._message(
                message["channel_id"],
                message["author"],
                {**{k: message[k] for k in ("content", "embeds", "components", "flags")}, **payload},
                files=record.files,
                message_id=message_id,
            )
            if "attachments" not in payload and not record.files:
                edited["attachments"] = message["attachments"]
            for key in ("webhook_id", "application_id", "interaction_metadata", "message_reference", "type"):
                if key in message:
                    edited[key] = message[key]
            edited["edited_timestamp"] = iso(BASE_TIME_MS + len(self.requests) + 1)
            self._store(edited)
            return edited
        finally:
            self._editing[message_id] -= 1

    async def _typing(self, record: Recorded) -> None:
        return None

    def _thread_payload(self, thread_id: str, parent: dict[str, Any], name: str) -> dict[str, Any]:
        thread = {
            "id": thread_id,
            "type": 11,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": self.bot["id"],
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso(BASE_TIME_MS),
                "locked": False,
                "create_timestamp": iso(snowflake_time_ms(thread_id)),
            },
            "member": {
                "id": thread_id,
                "user_id": self.bot["id"],
                "join_timestamp": iso(BASE_TIME_MS),
                "flags": 0,
            },
        }
        self.channels[thread_id] = thread
        return thread

    async def _thread_from_message(self, record: Recorded) -> Any:
        parent = self.channels.get(record.params["channel_id"])
        if parent is None or record.params["message_id"] not in self.messages:
            return _error(404, 10008, "Unknown Message")
        # A thread started from a message takes the message's id.
        return self._thread_payload(record.params["message_id"], parent, str(record.body["name"]))

    async def _thread(self, record: Recorded) -> Any:
        parent = self.channels.get(record.params["channel_id"])
        if parent is None:
            return _error(404, 10003, "Unknown Channel")
        return self._thread_payload(self.ids.next(), parent, str(record.body["name"]))

    def _token_state(self, token: str) -> dict[str, Any] | None:
        return self._interactions.get(token)

    async def _callback(self, record: Recorded) -> Any:
        state = self._token_state(record.params["token"])
        if state is None or state["interaction"]["id"] != record.params["interaction_id"]:
            return _error(404, 10062, "Unknown interaction")
        if state.get("responded"):
            return _error(400, 40060, "Interaction has already been acknowledged.")
        state["responded"] = True
        interaction = state["interaction"]
        kind = int(record.body["type"])
        data = dict(record.body.get("data") or {})
        flags = int(data.get("flags") or 0)
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction["id"],
                "type": interaction["type"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
        }
        if kind in (4, 5):  # a message (or "thinking…") answers the interaction
            message = self._message(
                interaction["channel_id"],
                self.bot,
                {**data, "flags": flags | (1 << 7 if kind == 5 else 0)},
                files=record.files,
                webhook_id=self.application_id,
                interaction=interaction,
            )
            self._store(message)
            state["original"] = message["id"]
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"] = {"type": kind, "message": message}
        elif kind in (6, 7):  # acknowledge (and maybe update) the message the component is on
            state["original"] = state.get("component_message")
            if kind == 7:
                await self._edit(self.messages[state["original"]], Recorded("PATCH", "", {}, {}, data))
            answer["resource"] = {"type": kind}
        if record.query.get("with_response") in ("1", "true", "True"):
            return answer
        return None

    async def _followup(self, record: Recorded) -> Any:
        state = self._token_state(record.params["token"])
        if state is None or record.params["application_id"] != self.application_id:
            return _error(404, 10015, "Unknown Webhook")
        interaction = state["interaction"]
        payload = dict(record.body or {})
        original = self.messages.get(state["original"] or "")
        if original is not None and original["flags"] & (1 << 7):
            # The first follow-up after a deferred "thinking…" reply replaces it, keeping its flags.
            payload["flags"] = (original["flags"] & EPHEMERAL) | int(payload.get("flags") or 0)
            message = self._message(
                interaction["channel_id"],
                self.bot,
                payload,
                files=record.files,
                message_id=original["id"],
                webhook_id=self.application_id,
                interaction=interaction,
            )
        else:
            message = self._message(
                interaction["channel_id"],
                self.bot,
                payload,
                files=record.files,
                webhook_id=self.application_id,
                interaction=interaction,
            )
        self._store(message)
        return message

    def _webhook_message(self, record: Recorded) -> dict[str, Any] | None:
        state = self._token_state(record.params["token"])
        if state is None:
            return None
        message_id = record.params["message_id"]
        if message_id == "@original":
            message_id = state["original"] or ""
        return self.messages.get(message_id)

    async def _get_webhook_message(self, record: Recorded) -> Any:
        message = self._webhook_message(record)
        return message if message is not None else _error(404, 10008, "Unknown Message")

    async def _patch_webhook_message(self, record: Recorded) -> Any:
        message = self._webhook_message(record)
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return await self._edit(message, record)


#: Routes whose body is a message (or, for the callback, carries one under `data`).
MESSAGE_ROUTES = frozenset(
    {
        "POST /channels/{channel_id}/messages",
        "PATCH /channels/{channel_id}/messages/{message_id}",
        "POST /interactions/{interaction_id}/{token}/callback",
        "POST /webhooks/{application_id}/{token}",
        "PATCH /webhooks/{application_id}/{token}/messages/{message_id}",
    }
)


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[Upload] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # Discord's uploads are flat; a nested multipart is not one
            data = await part.read()
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                files.append(
                    Upload(
                        name=str(part.name),
                        filename=str(part.filename),
                        content_type=part.headers.get("Content-Type", ""),
                        data=bytes(data),
                    )
                )
        return body, files
    raw = await request.read()
    if not raw:
        return None, []
    return json.loads(raw), []


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with Discord's exact content type (discord.py compares it verbatim)."""
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _content_type(upload: Upload) -> str:
    if upload.data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return upload.content_type or "application/octet-stream"


def _error(status: int, code: int, message: str, *, errors: list[str] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": e} for e in errors]}
    return _json(body, status=status)


def custom_ids(message: dict[str, Any]) -> list[str]:
    """The custom ids of a message's buttons, in order."""
    return [
        str(item["custom_id"])
        for row in message.get("components") or []
        for item in row.get("components") or []
        if item.get("custom_id")
    ]
