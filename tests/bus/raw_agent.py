"""An agent written from docs/bus-protocol.md alone, with plain Redis commands.

It imports nothing of RoundTable (the test checks this module's imports), so it stands for a program
in any language: each method is a few commands from the document, and says which section it follows.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

LEASE_MS = 27_000
DONE_MS = 300_000
MAX_DELIVERIES = 5


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_message(
    from_agent: str, to_agent: str, message_type: str, content: dict[str, Any], workspace: str, **more: Any
) -> dict[str, Any]:
    """A message with every field written (§2)."""
    message: dict[str, Any] = {
        "message_id": uuid.uuid4().hex,
        "from_sandbox": "host",
        "to_sandbox": "broadcast",
        "from_agent": from_agent,
        "to_agent": to_agent,
        "message_type": message_type,
        "content": content,
        "timestamp": iso_now(),
        "priority": 5,
        "requires_response": False,
        "correlation_id": None,
        "ttl": None,
        "metadata": {},
        "workspace_id": workspace,
        "topic": None,
        "version": 1,
    }
    message.update(more)
    return message


def entry_of(message: dict[str, Any]) -> dict[str, str]:
    """The stream entry of a message (§2)."""
    return {
        "v": "1",
        "id": message["message_id"],
        "type": message["message_type"],
        "msg": json.dumps(message),
    }


class Malformed(Exception):
    pass


def read_entry(fields: dict[str, str]) -> dict[str, Any]:
    """The message in an entry, checked as §2 asks."""
    if fields.get("v") != "1":
        raise Malformed(f"unsupported wire version {fields.get('v')!r}")
    if "msg" not in fields:
        raise Malformed("no msg field")
    try:
        message = json.loads(fields["msg"])
    except ValueError:
        raise Malformed("msg is not JSON") from None
    if not isinstance(message, dict) or "from_agent" not in message or "message_type" not in message:
        raise Malformed("msg is not a message")
    if fields.get("id") != message.get("message_id"):
        raise Malformed("id differs from message_id")
    return message


def expired(message: dict[str, Any]) -> bool:
    if message.get("ttl") is None:
        return False
    stamp = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() + float(message["ttl"]) < time.time()


class RawAgent:
    """One agent, one consumer, on a `decode_responses=True` redis-py client."""

    def __init__(
        self, redis: Redis, workspace: str, agent: str, *, consumer: str, sandbox: str = "host"
    ) -> None:
        self.r = redis
        self.workspace = workspace
        self.agent = agent
        self.consumer = consumer
        self.sandbox = sandbox
        #: Message ids this agent's handler ran for, in order.
        self.handled: list[str] = []

    def key(self, *parts: str) -> str:
        """§1: every key starts with rt:{<workspace>}:"""
        return ":".join([f"rt:{{{self.workspace}}}", *parts])

    def lanes(self, agent: str | None = None) -> list[str]:
        """§3: ten lanes, read highest first."""
        return [self.key("inbox", agent or self.agent, f"p{n}") for n in range(9, -1, -1)]

    # --- §4 and §7: joining --------------------------------------------------------------------------

    async def register(self, *, name: str, capabilities: list[str], agent_type: str = "agent") -> None:
        for lane in self.lanes():
            try:
                await self.r.xgroup_create(lane, "inbox", "0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        card = {
            "agent": self.agent,
            "name": name,
            "type": agent_type,
            "capabilities": capabilities,
            "sandbox": self.sandbox,
            "meta": {"language": "raw redis"},
        }
        now = now_ms()
        await self.r.hset(self.key("agents"), self.agent, json.dumps(card))
        await self.r.hset(self.key("presence"), f"{self.agent}/{self.consumer}", str(now))
        await self.r.hset(self.key("status"), self.agent, json.dumps({"status": "online", "last_seen": now}))
        await self.r.hset(self.key("members"), self.agent, self.sandbox)
        await self.event("joined", "online", "a raw Redis agent")

    async def heartbeat(self) -> None:
        await self.r.hset(self.key("presence"), f"{self.agent}/{self.consumer}", str(now_ms()))

    async def event(self, kind: str, status: str, detail: str, message_id: str = "") -> None:
        fields = {
            "kind": kind,
            "agent": self.agent,
            "status": status,
            "at": iso_now(),
            "detail": detail,
            "instance": self.consumer,
            "message_id": message_id,
        }
        await self.r.xadd(self.key("events"), fields, maxlen=10_000, approximate=True)  # type: ignore[arg-type]

    # --- §3: sending ---------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        to = message["to_agent"]
        if await self.r.hget(self.key("members"), to) is None:
            raise LookupError(f"{to} is not a member")
        lane = self.key("inbox", to, f"p{message['priority']}")
        await self.r.xadd(lane, entry_of(message), maxlen=100_000, approximate=True)  # type: ignore[arg-type]

    # --- §4, §5, §8: receiving -----------------------------------------------------------------------

    async def read(self, *, block_ms: int = 2000) -> list[tuple[str, str, dict[str, str]]]:
        """New entries (lane, entry id, fields), highest lane first."""
        lanes = self.lanes()
        reply: Any = await self.r.xreadgroup(
            "inbox", self.consumer, {lane: ">" for lane in lanes}, count=10, block=block_ms
        )
        got: list[tuple[str, str, dict[str, str]]] = []
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                got.append((stream, entry_id, fields))
        got.sort(key=lambda item: lanes.index(item[0]))
        return got

    async def serve_once(self, handler: Any, *, block_ms: int = 2000) -> int:
        """Read once and settle everything read; returns how many entries were read."""
        entries = await self.read(block_ms=block_ms)
        for lane, entry_id, fields in entries:
            await self.take(lane, entry_id, fields, handler)
        return len(entries)

    async def take(self, lane: str, entry_id: str, fields: dict[str, str], handler: Any) -> None:
        try:
            message = read_entry(fields)
        except Malformed as exc:
            await self.dead_letter(lane, entry_id, fields, "malformed", str(exc), fields.get("id", ""))
            return
        message_id = message["message_id"]
        claim = self.key("seen", self.agent, "inbox", message_id)
        if not await self.r.set(claim, self.consumer, nx=True, px=LEASE_MS):
            held = await self.r.get(claim)
            if held == "+done":
                await self.r.xack(lane, "inbox", entry_id)  # a duplicate: acknowledged unhandled
                return
            if held != self.consumer:
                return  # another consumer works on it: leave it pending
            await self.r.pexpire(claim, LEASE_MS)
        if expired(message):
            await self.dead_letter(lane, entry_id, fields, "expired", "ttl passed", message_id)
            return
        result = await handler(message)
        self.handled.append(message_id)
        if message.get("requires_response") and message["message_type"] in ("request", "command"):
            await self.respond(message, result)
        await self.r.set(claim, "+done", px=DONE_MS)
        await self.r.xack(lane, "inbox", entry_id)

    async def dead_letter(
        self, lane: str, entry_id: str, fields: dict[str, str], reason: str, detail: str, message_id: str
    ) -> None:
        letter = {
            "reason": reason,
            "detail": detail,
            "deliveries": "1",
            "at": iso_now(),
            "agent": self.agent,
            "group": "inbox",
            "stream": lane,
            "entry_id": entry_id,
            "message_id": message_id,
            "original": json.dumps(fields, sort_keys=True),
        }
        await self.r.xadd(self.key("dlq"), letter, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
        await self.event("dead_letter", reason, detail, message_id)
        if message_id:
            claim = self.key("seen", self.agent, "inbox", message_id)
            if await self.r.get(claim) == self.consumer:
                await self.r.delete(claim)
        await self.r.xack(lane, "inbox", entry_id)

    # --- §6: responses and requests ------------------------------------------------------------------

    async def respond(self, request: dict[str, Any], content: dict[str, Any]) -> None:
        response = new_message(
            self.agent,
            request["from_agent"],
            "response",
            content,
            request["workspace_id"],
            correlation_id=request["message_id"],
            metadata={"status": "ok"},
        )
        reply_to = request["metadata"].get("reply_to")
        if reply_to is None:
            await self.send(response)
            return
        if reply_to.startswith(f"rt:{{{request['workspace_id']}}}:reply:"):
            await self.r.xadd(reply_to, entry_of(response), maxlen=10_000, approximate=True)  # type: ignore[arg-type]

    async def request(
        self, to: str, content: dict[str, Any], *, timeout_s: float, kind: str | None = None
    ) -> dict[str, Any]:
        """Ask `to` and wait for the response on this agent's own reply stream; the response message."""
        reply_to = self.key("reply", self.agent, self.consumer)
        try:
            await self.r.xgroup_create(reply_to, "reply", "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        metadata = {"reply_to": reply_to} | ({"kind": kind} if kind else {})
        message = new_message(
            self.agent, to, "request", content, self.workspace,
            requires_response=True, ttl=timeout_s, metadata=metadata,
        )  # fmt: skip
        await self.send(message)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply: Any = await self.r.xreadgroup(
                "reply", self.consumer, {reply_to: ">"}, count=100, block=200
            )
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    await self.r.xack(reply_to, "reply", entry_id)
                    response = read_entry(fields)
                    if response["correlation_id"] == message["message_id"] and response["from_agent"] == to:
                        return response
        raise TimeoutError(f"no response from {to}")
