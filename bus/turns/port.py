"""The engine's `AgentPort` over the bus: a turn request out, the correlated reply back.

A turn is a request like any other (`bus.agents.requests.Requester`): it goes from the engine's mailbox
to the agent's inbox, so it gets the mailbox's guarantees (reclaimed from a dead worker, handled once,
dead-lettered when expired), and its reply comes back on this port's own reply stream,
`rt:{ws}:reply:engine:<instance>`, matched by correlation id. This module only translates: a
`TurnRequest` into a request, a response into a `TurnReply`, and the requester's errors into the ones
the engine's port promises.

A reply that arrives after the engine stopped waiting for it is never handed to anyone else: it is
counted, and its usage reported through `on_late`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from bus.agents.requests import OUTAGE_S, Requester, RequestStats
from bus.backend import Bus
from bus.delivery import DeliveryConfig
from bus.mailbox import Mailbox
from bus.message import AgentMessage
from engine.errors import AgentUnavailable, BadRequest, RequestFailed
from engine.turns import TurnReply, TurnRequest

log = logging.getLogger("roundtable.bus")

#: The sender of turn requests.
ENGINE_AGENT = "engine"
#: Extra seconds a request stays deliverable beyond its turn timeout.
_TTL_MARGIN_S = 5.0

LateHandler = Callable[[TurnReply], Coroutine[Any, Any, None]]


class BusAgentPort:
    """Asks agents for turns over the bus, for one session.

    `ask` raises `AgentUnavailable` when the agent fails, answers with something that is not a turn
    reply, or cannot be reached (not registered); `BusUnavailable` when the bus cannot be reached at
    send, or stays unreachable for `outage_s` while a turn waits. The caller applies the turn timeout;
    the port's own wait ends at the request's ttl, with `RequestTimedOut`.
    """

    def __init__(
        self,
        bus: Bus,
        session_id: str,
        *,
        workspace: str = "default",
        on_late: LateHandler | None = None,
        config: DeliveryConfig | None = None,
        outage_s: float = OUTAGE_S,
    ) -> None:
        self._session_id = session_id
        self._on_late = on_late
        outbox = Mailbox(
            bus, workspace, ENGINE_AGENT, consumer=f"engine-{uuid.uuid4().hex[:8]}", config=config
        )
        self._requester = Requester(outbox, on_late=self._late, outage_s=outage_s)

    @property
    def reply_to(self) -> str:
        """The stream this port's replies come back on."""
        return self._requester.reply_to

    @property
    def stats(self) -> RequestStats:
        """What this port's turns came to (late replies included); they count in `request_totals()` too."""
        return self._requester.stats

    async def start(self) -> None:
        """Create the reply stream and start reading it. Raises `BusUnavailable`."""
        await self._requester.start()

    async def close(self) -> None:
        """Stop reading (turns still waiting fail with `BusUnavailable`) and delete the reply stream."""
        await self._requester.close()

    async def __aenter__(self) -> BusAgentPort:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def ask(self, request: TurnRequest) -> TurnReply:
        try:
            response = await self._requester.request(
                request.agent,
                request.model_dump(mode="json"),
                timeout=request.timeout_s + _TTL_MARGIN_S,
                metadata={"session_id": self._session_id, "step": request.step},
            )
        except RequestFailed as exc:
            # The agent's own words, without the request id: they become the turn's fallback reason.
            raise AgentUnavailable(exc.error or f"{request.agent} failed") from exc
        except BadRequest as exc:  # not registered (UnknownRecipient), or not a possible agent id
            raise AgentUnavailable(f"{request.agent} is not serving: {exc}") from exc
        try:
            return TurnReply.model_validate(response.content)
        except ValueError as exc:
            raise AgentUnavailable(
                f"{request.agent} answered with something that is not a turn reply: {exc}"
            ) from exc

    async def _late(self, message: AgentMessage) -> None:
        """A reply the engine stopped waiting for: its usage was spent all the same, so report it."""
        if message.metadata.get("status") == "failed":
            return  # a failed turn reports no usage
        try:
            reply = TurnReply.model_validate(message.content)
        except ValueError:
            log.warning("roundtable.reply_malformed session=%s id=%s", self._session_id, message.message_id)
            return
        log.info(
            "roundtable.reply_late session=%s agent=%s step=%s", self._session_id, reply.agent, reply.step
        )
        if self._on_late is not None:
            await self._on_late(reply)
