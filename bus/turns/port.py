"""The engine's `AgentPort` over the bus: a turn request out, the correlated reply back.

Requests are sent from the engine's mailbox to each agent's inbox, so they get the mailbox's
guarantees (reclaimed from a dead worker, handled once, dead-lettered when expired). Replies come
back on the session's reply stream, read by a consumer group and matched by correlation id. A reply
that arrives after its waiter gave up is never handed to anyone else: it is counted, and its usage
reported through `on_late`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from bus.backend import Bus, stream_key
from bus.delivery import DeliveryConfig
from bus.loops import stop_task
from bus.mailbox import Mailbox
from bus.message import AgentMessage
from engine.errors import AgentUnavailable, BusUnavailable, UnknownRecipient
from engine.turns import TurnReply, TurnRequest

log = logging.getLogger("roundtable.bus")

REPLY_GROUP = "engine"
#: The sender of turn requests.
ENGINE_AGENT = "engine"
#: Extra seconds a request stays deliverable beyond its turn timeout.
_TTL_MARGIN_S = 5.0


def reply_stream(workspace: str, session_id: str) -> str:
    return stream_key(workspace, "session", session_id, "replies")


LateHandler = Callable[[TurnReply], Coroutine[Any, Any, None]]


class BusAgentPort:
    """Asks agents for turns over the bus, for one session."""

    def __init__(
        self,
        bus: Bus,
        session_id: str,
        *,
        workspace: str = "default",
        on_late: LateHandler | None = None,
        config: DeliveryConfig | None = None,
    ) -> None:
        self._bus = bus
        self._session_id = session_id
        self._workspace = workspace
        self._replies = reply_stream(workspace, session_id)
        self._consumer = f"engine-{uuid.uuid4().hex[:8]}"
        self._outbox = Mailbox(bus, workspace, ENGINE_AGENT, consumer=self._consumer, config=config)
        self._waiters: dict[str, asyncio.Future[TurnReply]] = {}
        self._on_late = on_late
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.late_replies = 0

    async def start(self) -> None:
        await self._bus.ensure_group(self._replies, REPLY_GROUP)
        self._reader = asyncio.create_task(self._read_replies(), name=f"replies-{self._session_id}")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            await stop_task(self._reader)
            self._reader = None
        with contextlib.suppress(BusUnavailable):
            await self._bus.delete(self._replies)

    async def __aenter__(self) -> BusAgentPort:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def ask(self, request: TurnRequest) -> TurnReply:
        if self._reader is None or self._reader.done():
            raise BusUnavailable("the reply reader is not running; is the bus reachable?")
        message = AgentMessage(
            from_agent=ENGINE_AGENT,
            to_agent=request.agent,
            message_type="request",
            content=request.model_dump(mode="json"),
            requires_response=True,
            ttl=request.timeout_s + _TTL_MARGIN_S,
            workspace_id=self._workspace,
            metadata={"reply_to": self._replies, "session_id": self._session_id, "step": request.step},
        )
        future: asyncio.Future[TurnReply] = asyncio.get_running_loop().create_future()
        self._waiters[message.message_id] = future
        try:
            try:
                await self._outbox.send(message)
            except UnknownRecipient as exc:
                raise AgentUnavailable(f"{request.agent} is not serving: {exc}") from exc
            return await future
        finally:
            self._waiters.pop(message.message_id, None)

    async def _read_replies(self) -> None:
        try:
            while not self._closing:
                deliveries = await self._bus.consume(
                    self._replies, REPLY_GROUP, self._consumer, count=50, block_ms=1000
                )
                for delivery in deliveries:
                    self._dispatch(delivery.message)
                if deliveries:
                    await self._bus.ack(self._replies, REPLY_GROUP, [d.entry_id for d in deliveries])
        except BusUnavailable as exc:
            for future in self._waiters.values():
                if not future.done():
                    future.set_exception(BusUnavailable(str(exc)))
            raise

    def _dispatch(self, message: AgentMessage | None) -> None:
        if message is None:
            log.warning("roundtable.reply_malformed session=%s", self._session_id)
            return
        try:
            reply = TurnReply.model_validate(message.content)
        except ValueError:
            log.warning("roundtable.reply_malformed session=%s id=%s", self._session_id, message.message_id)
            return
        if message.metadata.get("status") == "failed":
            error = AgentUnavailable(reply.error or f"{reply.agent} failed")
            future = self._waiters.get(message.correlation_id or "")
            if future is not None and not future.done():
                future.set_exception(error)
            return
        future = self._waiters.get(message.correlation_id or "")
        if future is None or future.done():
            self.late_replies += 1
            log.info(
                "roundtable.reply_late session=%s agent=%s step=%s", self._session_id, reply.agent, reply.step
            )
            if self._on_late is not None:
                task = asyncio.create_task(self._on_late(reply))
                task.add_done_callback(_log_failure)
            return
        future.set_result(reply)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("roundtable.late_usage_failed error=%s", task.exception())
