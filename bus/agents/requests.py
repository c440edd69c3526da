"""Request/response on the bus: send a request, wait for the response that carries its correlation id.

The reply path (see docs/bus-protocol.md):

- A request is a `request` message with `requires_response=True` and `metadata.reply_to`, the stream
  its response goes to. Each `Requester` reads a stream of its own, `rt:{ws}:reply:<agent>:<instance>`,
  so a response reaches the very process that waits for it, even when several processes serve the same
  agent (they share the agent's inbox, never a reply stream).
- The responder appends one `response` message to `reply_to`, with `correlation_id` set to the request's
  `message_id` and `metadata.status` "ok" or "failed" (then `content.error` says why). A request without
  `reply_to` is answered in the sender's inbox instead; `Requester.resolve` accepts either.

A request's ttl is its timeout, so a responder that takes it up too late dead-letters it unrun. A
response that still arrives after its waiter gave up is dropped and counted (`RequestStats.late`), as is
one no waiter asked for (`unmatched`): a response reaches only the waiter of its correlation id, and
only when it comes from the agent that was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from bus.addressing import check_agent
from bus.backend import Bus, Retention, stream_key
from bus.backoff import Backoff
from bus.loops import stop_task
from bus.mailbox import Mailbox
from bus.message import BROADCAST, AgentMessage, MessageType
from engine.errors import BadRequest, BusUnavailable, RequestFailed, RequestTimedOut, UnknownRecipient

log = logging.getLogger("roundtable.bus")

#: The consumer group on a reply stream (its one reader is the requester that owns it).
REPLY_GROUP = "reply"
#: How much of a reply stream is kept; responses are read within moments, so little is needed.
REPLY_RETENTION = Retention(maxlen=10_000)
#: `metadata.status` of a response.
Status = Literal["ok", "failed"]
#: How many timed-out correlation ids are remembered, to tell a late response from a stray one.
_REMEMBERED = 10_000


def reply_key(workspace: str, agent: str, instance: str) -> str:
    """The reply stream of one requester: `rt:{ws}:reply:<agent>:<instance>`."""
    return stream_key(workspace, "reply", check_agent(agent), instance)


@dataclass(slots=True)
class RequestStats:
    """What a requester's requests came to; counters for metrics."""

    sent: int = 0
    #: Answered with status "ok".
    answered: int = 0
    #: Answered with status "failed".
    failed: int = 0
    timed_out: int = 0
    #: Responses dropped because their request had timed out already.
    late: int = 0
    #: Responses dropped because no waiter asked for them: unknown or repeated correlation id, a sender
    #: other than the agent asked, another workspace, or an unreadable entry.
    unmatched: int = 0


#: Every requester's counts in this process, summed: what a metrics exporter reads (`request_totals`).
_TOTALS = RequestStats()


def request_totals() -> RequestStats:
    """The counts of all requesters of this process since it started (a copy)."""
    return dataclasses.replace(_TOTALS)


@dataclass(frozen=True, slots=True)
class _Waiter:
    to: str
    future: asyncio.Future[AgentMessage]


class Requester:
    """Sends requests from an agent's mailbox and matches their responses, for one process.

    `start` before the first request and `close` at the end (or use `async with`); the reply stream
    is deleted at close. The mailbox need not be registered to send requests, but the recipients must be.

    Args:
        mailbox: the sending agent's mailbox; requests go out with its checks (registered recipient...).
        instance: names this requester's reply stream; the mailbox's consumer name by default.
        block_ms: longest a read of the reply stream waits before looking again.
    """

    def __init__(self, mailbox: Mailbox, *, instance: str | None = None, block_ms: int = 1000) -> None:
        self._box = mailbox
        self._bus: Bus = mailbox.bus
        self._instance = instance or mailbox.consumer
        self.reply_to = reply_key(mailbox.workspace, mailbox.agent, self._instance)
        self._block_ms = block_ms
        self._waiters: dict[str, _Waiter] = {}
        self._gave_up: OrderedDict[str, None] = OrderedDict()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = RequestStats()

    async def start(self) -> None:
        """Create the reply stream and start reading it. Raises `BusUnavailable`."""
        self._closing = False
        await self._bus.ensure_group(self.reply_to, REPLY_GROUP)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name=f"replies-{self._instance}")

    async def close(self) -> None:
        """Stop reading, fail the requests still waiting, and delete the reply stream."""
        self._closing = True
        if self._reader is not None:
            await stop_task(self._reader)
            self._reader = None
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(BusUnavailable("the requester was closed before a response came"))
        with contextlib.suppress(BusUnavailable):
            await self._bus.delete(self.reply_to)

    async def __aenter__(self) -> Requester:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def request(
        self,
        to: str,
        content: dict[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - it is also the request's ttl, which travels with it
        message_type: MessageType = "request",
        priority: int = 5,
        metadata: dict[str, str] | None = None,
        to_sandbox: str = BROADCAST,
    ) -> AgentMessage:
        """Send a request to agent `to` and return its response.

        Args:
            to: the agent asked; it must be registered in the workspace.
            content: the request's content (JSON-serializable).
            timeout: seconds to wait for the response; also the request's ttl.
            message_type: "request", or "command" for a request that is also a command.
            metadata: extra metadata; `reply_to` is set here.

        Raises:
            RequestTimedOut: no response came within `timeout`.
            RequestFailed: the response says the responder failed (status "failed").
            UnknownRecipient: `to` is not registered.
            BadRequest: `to`, `content` or `timeout` cannot make a request.
            BusUnavailable: the bus cannot be reached, or the requester is not running.
        """
        if timeout <= 0:
            raise BadRequest(f"a request timeout must be more than 0 seconds, got {timeout}")
        check_agent(to)
        if self._reader is None or self._reader.done():
            raise BusUnavailable("the requester is not running; call start() first")
        message = AgentMessage(
            from_agent=self._box.agent,
            from_sandbox=self._box.sandbox,
            to_agent=to,
            to_sandbox=to_sandbox,
            message_type=message_type,
            content=content,
            requires_response=True,
            ttl=timeout,
            priority=priority,
            workspace_id=self._box.workspace,
            metadata={**(metadata or {}), "reply_to": self.reply_to},
        )
        future: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiters[message.message_id] = _Waiter(to, future)
        try:
            await self._box.send(message)
            self._count("sent")
            try:
                response = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                self._count("timed_out")
                self._remember_gave_up(message.message_id)
                raise RequestTimedOut(
                    f"no response from {to!r} within {timeout:g}s to request {message.message_id}; "
                    "a later response will be dropped"
                ) from None
        finally:
            self._waiters.pop(message.message_id, None)
        if response.metadata.get("status") == "failed":
            self._count("failed")
            error = response.content.get("error") or "no reason given"
            raise RequestFailed(f"{to!r} failed request {message.message_id}: {error}")
        self._count("answered")
        return response

    def expects(self, correlation_id: str | None) -> bool:
        """Whether a response with this correlation id is this requester's: awaited, or timed out."""
        return correlation_id is not None and (
            correlation_id in self._waiters or correlation_id in self._gave_up
        )

    def resolve(self, message: AgentMessage) -> bool:
        """Hand a response to its waiter; False (and counted) when it is late or nobody's."""
        correlation = message.correlation_id or ""
        waiter = self._waiters.get(correlation)
        if (
            waiter is None
            or waiter.future.done()
            or message.message_type != "response"
            or message.from_agent != waiter.to
            or message.workspace_id != self._box.workspace
        ):
            late = waiter is None and correlation in self._gave_up
            if late:
                self._count("late")
            else:
                self._count("unmatched")
            log.info(
                "roundtable.response_dropped why=%s agent=%s from=%s correlation=%s",
                "late" if late else "unmatched",
                self._box.agent,
                message.from_agent,
                correlation or "-",
            )
            return False
        waiter.future.set_result(message)
        return True

    def _count(self, name: str) -> None:
        setattr(self.stats, name, getattr(self.stats, name) + 1)
        setattr(_TOTALS, name, getattr(_TOTALS, name) + 1)

    def _remember_gave_up(self, message_id: str) -> None:
        self._gave_up[message_id] = None
        while len(self._gave_up) > _REMEMBERED:
            self._gave_up.popitem(last=False)

    async def _read(self) -> None:
        backoff = Backoff()
        while not self._closing:
            try:
                deliveries = await self._bus.consume(
                    self.reply_to, REPLY_GROUP, self._instance, count=100, block_ms=self._block_ms
                )
                for delivery in deliveries:
                    if delivery.message is None:
                        self._count("unmatched")
                        log.warning(
                            "roundtable.response_malformed stream=%s error=%s", self.reply_to, delivery.error
                        )
                    else:
                        self.resolve(delivery.message)
                if deliveries:
                    await self._bus.ack(self.reply_to, REPLY_GROUP, [d.entry_id for d in deliveries])
                backoff.reset()
            except BusUnavailable as exc:
                # Waiters keep waiting until their own timeouts: the bus may be back before then.
                log.warning("roundtable.replies_unreadable stream=%s error=%s", self.reply_to, exc)
                await backoff.wait()


def response_to(
    request: AgentMessage, *, from_agent: str, content: dict[str, Any], status: Status = "ok"
) -> AgentMessage:
    """The response to a request: correlated by its message id, addressed to its sender."""
    return AgentMessage(
        from_agent=from_agent,
        to_agent=request.from_agent,
        message_type="response",
        content=content,
        correlation_id=request.message_id,
        priority=request.priority,
        workspace_id=request.workspace_id,
        metadata={"status": status},
    )


async def answer(
    mailbox: Mailbox, request: AgentMessage, content: dict[str, Any], *, status: Status = "ok"
) -> bool:
    """Send the response to a request along its reply path; False when it has nowhere to go.

    The response goes to `metadata.reply_to`, which must be a stream of the request's workspace, or
    else, without one, to the sender's inbox.

    Raises:
        BusUnavailable: the bus cannot be reached; the request should stay unsettled, to be retried.
    """
    response = response_to(request, from_agent=mailbox.agent, content=content, status=status)
    reply_to = request.metadata.get("reply_to")
    if reply_to is None:
        try:
            await mailbox.send(response)
        except UnknownRecipient as exc:
            log.warning("roundtable.response_undeliverable agent=%s error=%s", mailbox.agent, exc)
            return False
        return True
    if not reply_to.startswith(stream_key(request.workspace_id, "reply") + ":") and not reply_to.startswith(
        stream_key(request.workspace_id, "session") + ":"
    ):
        log.warning(
            "roundtable.response_undeliverable agent=%s reply_to=%r is not a reply stream of workspace %r",
            mailbox.agent,
            reply_to,
            request.workspace_id,
        )
        return False
    await mailbox.bus.publish(reply_to, response, retention=REPLY_RETENTION)
    return True
