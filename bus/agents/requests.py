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
response that still arrives after its waiter gave up (timed out, was cancelled, or lost the bus) is
counted (`RequestStats.late`) and handed to `on_late`, never to another waiter; one no waiter asked for
is dropped and counted (`unmatched`): a response reaches only the waiter of its correlation id, and
only when it comes from the agent that was asked.

A lost bus does not fail the waiters at once: the reader backs off and retries (`bus.backoff.Backoff`,
as the mailboxes do), so a restart of a few seconds costs nothing, and each waiter ends at its own
timeout. Only when the reply stream has stayed unreadable for `outage_s` does the bus count as gone:
every waiter then fails with `BusUnavailable`, which a caller can act on (the engine stops, resumable)
rather than mistake for an agent that did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
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
#: How long the reply stream may stay unreadable before the bus counts as gone and every waiter fails
#: with `BusUnavailable`; longer than a restart or a failover, shorter than a deliberation's turn timeout.
OUTAGE_S = 10.0
#: How many given-up correlation ids are remembered, to tell a late response from a stray one.
_REMEMBERED = 10_000

#: Receives a response that came after its waiter gave up, e.g. to account for the work it cost.
LateHandler = Callable[[AgentMessage], Coroutine[Any, Any, None]]


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
    #: Given up before a response came, other than by timeout: the caller cancelled the request (as the
    #: engine does at its turn timeout), the bus stayed unreachable, or the requester was closed.
    abandoned: int = 0
    #: Responses that came after their request was given up (timed out or abandoned).
    late: int = 0
    #: Responses dropped because no waiter asked for them: unknown or repeated correlation id, a sender
    #: other than the agent asked, another workspace, or an unreadable entry.
    unmatched: int = 0


#: Every requester's counts in this process, summed: what `bus.ops.metrics` reads (`request_totals`).
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
        on_late: called with each response that comes after its request was given up.
        outage_s: how long the reply stream may stay unreadable before every waiter fails with
            `BusUnavailable`.
    """

    def __init__(
        self,
        mailbox: Mailbox,
        *,
        instance: str | None = None,
        block_ms: int = 1000,
        on_late: LateHandler | None = None,
        outage_s: float = OUTAGE_S,
    ) -> None:
        if outage_s <= 0:
            raise BadRequest(f"a requester's outage_s must be more than 0 seconds, got {outage_s}")
        self._box = mailbox
        self._bus: Bus = mailbox.bus
        self._instance = instance or mailbox.consumer
        self.reply_to = reply_key(mailbox.workspace, mailbox.agent, self._instance)
        self._block_ms = block_ms
        self._on_late = on_late
        self._outage_s = outage_s
        self._waiters: dict[str, _Waiter] = {}
        #: Given-up request ids, each with the agent that was asked.
        self._gave_up: OrderedDict[str, str] = OrderedDict()
        self._late_calls: set[asyncio.Task[None]] = set()
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
        """Stop reading, fail the requests still waiting, and delete the reply stream.

        `on_late` calls under way are waited for, so the work they account for is not lost.
        """
        self._closing = True
        if self._reader is not None:
            await stop_task(self._reader)
            self._reader = None
        self._fail_waiters("the requester was closed before a response came")
        if self._late_calls:
            await asyncio.gather(*self._late_calls, return_exceptions=True)
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
            RequestFailed: the response says the responder failed (status "failed"); its `error` says why.
            UnknownRecipient: `to` is not registered.
            BadRequest: `to`, `content` or `timeout` cannot make a request.
            BusUnavailable: the bus cannot be reached (at send, or for `outage_s` while waiting), or the
                requester is not running or was closed.
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
        return self._outcome(await self._send_and_wait(message, timeout))

    async def _send_and_wait(self, message: AgentMessage, wait_s: float) -> AgentMessage:
        """Send `message` and wait for its response; a waiter given up on is remembered, so that a
        response that still comes is counted as late, not as a stray."""
        to = message.to_agent
        future: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiters[message.message_id] = _Waiter(to, future)
        try:
            await self._box.send(message)
            self._count("sent")
            try:
                return await asyncio.wait_for(future, wait_s)
            except TimeoutError:
                self._count("timed_out")
                self._remember_gave_up(message.message_id, to)
                raise RequestTimedOut(
                    f"no response from {to!r} within {wait_s:g}s to request {message.message_id}; "
                    "a later response will be counted as late"
                ) from None
            except (asyncio.CancelledError, BusUnavailable):
                # The request is out: a response may still come, and is then late, not a stray.
                self._count("abandoned")
                self._remember_gave_up(message.message_id, to)
                raise
        finally:
            self._waiters.pop(message.message_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # failed while the send was still under way: seen, not "never retrieved"

    def _outcome(self, response: AgentMessage) -> AgentMessage:
        """The response, or `RequestFailed` when it says the responder failed."""
        if response.metadata.get("status") == "failed":
            self._count("failed")
            error = str(response.content.get("error") or "no reason given")
            raise RequestFailed(
                f"{response.from_agent!r} failed request {response.correlation_id}: {error}", error=error
            )
        self._count("answered")
        return response

    def expects(self, correlation_id: str | None) -> bool:
        """Whether a response with this correlation id is this requester's: awaited, or timed out."""
        return correlation_id is not None and (
            correlation_id in self._waiters or correlation_id in self._gave_up
        )

    def resolve(self, message: AgentMessage) -> bool:
        """Hand a response to its waiter; False (and counted) when it is late or nobody's.

        A late response (from the agent asked) goes to `on_late`, in a task of its own.
        """
        correlation = message.correlation_id or ""
        waiter = self._waiters.get(correlation)
        if (
            waiter is None
            or waiter.future.done()
            or message.message_type != "response"
            or message.from_agent != waiter.to
            or message.workspace_id != self._box.workspace
        ):
            late = (
                waiter is None
                and message.message_type == "response"
                and self._gave_up.get(correlation) == message.from_agent
                and message.workspace_id == self._box.workspace
            )
            if late:
                self._count("late")
                self._call_on_late(message)
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

    def _call_on_late(self, message: AgentMessage) -> None:
        if self._on_late is None:
            return
        # Held here, since the loop keeps only a weak reference to a task; `close` waits for them.
        call = asyncio.create_task(self._on_late(message), name=f"late-{message.correlation_id}")
        self._late_calls.add(call)
        call.add_done_callback(self._late_call_done)

    def _late_call_done(self, call: asyncio.Task[None]) -> None:
        self._late_calls.discard(call)
        if not call.cancelled() and call.exception() is not None:
            log.warning(
                "roundtable.late_response_failed agent=%s error=%s", self._box.agent, call.exception()
            )

    def _fail_waiters(self, why: str) -> None:
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(BusUnavailable(why))

    def _count(self, name: str) -> None:
        setattr(self.stats, name, getattr(self.stats, name) + 1)
        setattr(_TOTALS, name, getattr(_TOTALS, name) + 1)

    def _remember_gave_up(self, message_id: str, to: str) -> None:
        self._gave_up[message_id] = to
        while len(self._gave_up) > _REMEMBERED:
            self._gave_up.popitem(last=False)

    async def _read(self) -> None:
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        # Armed by the first failed read, disarmed by the next good one. A timer rather than a check after
        # each failure, since one read can take long to fail (a backend queueing its reconnections).
        deadline: asyncio.TimerHandle | None = None
        error = ""

        def gone() -> None:
            self._fail_waiters(f"the bus has been unreachable for {self._outage_s:g}s: {error}")

        try:
            while not self._closing:
                try:
                    await self._read_once()
                except BusUnavailable as exc:
                    error = str(exc)
                    if deadline is None:
                        log.warning("roundtable.replies_unreadable stream=%s error=%s", self.reply_to, exc)
                        deadline = loop.call_later(self._outage_s, gone)
                    elif deadline.when() <= loop.time():
                        gone()  # still gone: the requests sent since then fail too
                    await backoff.wait()
                    continue
                if deadline is not None:
                    deadline.cancel()
                    deadline = None
                    log.info("roundtable.replies_readable stream=%s", self.reply_to)
                backoff.reset()
        finally:
            if deadline is not None:
                deadline.cancel()

    async def _read_once(self) -> None:
        deliveries = await self._bus.consume(
            self.reply_to, REPLY_GROUP, self._instance, count=100, block_ms=self._block_ms
        )
        for delivery in deliveries:
            if delivery.message is None:
                self._count("unmatched")
                log.warning("roundtable.response_malformed stream=%s error=%s", self.reply_to, delivery.error)
            else:
                self.resolve(delivery.message)
        if deliveries:
            await self._bus.ack(self.reply_to, REPLY_GROUP, [d.entry_id for d in deliveries])


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
    if not reply_to.startswith(stream_key(request.workspace_id, "reply") + ":"):
        log.warning(
            "roundtable.response_undeliverable agent=%s reply_to=%r is not a reply stream of workspace %r",
            mailbox.agent,
            reply_to,
            request.workspace_id,
        )
        return False
    await mailbox.bus.publish(reply_to, response, retention=REPLY_RETENTION)
    return True
