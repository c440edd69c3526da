"""`ContainerAgent`: the agent SDK, for an agent in a container, a local process or this one.

    agent = ContainerAgent("redis://localhost:6379/0", "echo", capabilities=["echo"])

    @agent.on_task_assigned
    async def echo(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
        return {"echo": task}

    asyncio.run(agent.run())  # until SIGTERM or Ctrl-C

`start()` registers the agent (its card in the registry, its inbox in the workspace), then runs the
message loop (`Mailbox.serve`, with its delivery guarantees) and the heartbeat loop. Handlers:

- `on_task_assigned`: answers `collaborate_with` (a request whose `metadata.kind` is "task"); its
  return value is the response's content.
- `on_message`, optionally filtered by message type and topic (a topic filter also subscribes the agent
  to that topic): every matching handler runs; for a request, the first value one returns is the
  response's content. A handler may return `Reply(content, status="failed")` to answer with a failure.

A request's handler that raises is answered with status "failed" (the caller gets `RequestFailed` at
once rather than a timeout); any other handler that raises leaves its message to be retried, and
dead-lettered after `DeliveryConfig.max_deliveries`.

When the bus goes away the loops keep trying with a capped, jittered backoff, and once it answers again
the agent registers again (the server may have lost it) and carries on. Nothing is lost meanwhile: a
message is acknowledged only after its handler returned, so what was unacknowledged stays pending on the
server and is handled after the reconnect; outcomes the server could not take are kept and settled then.
Sending (`send_message`, `broadcast`, `request`) raises `BusUnavailable` while the bus is away: retrying
is the caller's choice, and the message `send_message` returned, sent again (`agent.mailbox.send`), is
handled once, since it keeps its `message_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args, overload

from bus.addressing import check_agent, check_topic
from bus.agents.registry import AgentCard, Registry
from bus.agents.requests import Requester, RequestStats, Status, answer
from bus.backend import Bus
from bus.backoff import Backoff
from bus.connect import open_bus
from bus.delivery import DeliveryConfig, DeliveryStats
from bus.loops import stop_task
from bus.mailbox import Mailbox
from bus.message import ANY_AGENT, BROADCAST, AgentMessage, MessageType
from engine.errors import BadRequest, BusUnavailable

log = logging.getLogger("roundtable.agent")

#: `metadata.kind` of a request that assigns a task (sent by `collaborate_with`).
TASK_KIND = "task"
#: How long `start` keeps trying to reach the bus before it gives up.
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler may return to choose the response's status; a plain dict means status "ok"."""

    content: dict[str, Any] = field(default_factory=dict)
    status: Status = "ok"


Result = dict[str, Any] | Reply | None
MessageHandler = Callable[[AgentMessage], Awaitable[Result]]
TaskHandler = Callable[[dict[str, Any], AgentMessage], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: MessageHandler
    message_type: MessageType | None
    topic: str | None

    def matches(self, message: AgentMessage) -> bool:
        return (self.message_type is None or message.message_type == self.message_type) and (
            self.topic is None or message.topic == self.topic
        )


class ContainerAgent:
    """One agent on the bus: registered, serving its inbox, heartbeating, sending and asking.

    Args:
        bus: a `Bus`, or a bus URL (`redis://...`, `unix://...`, `nats://...`); a bus made from a URL is
            closed by `stop`.
        agent_id: the agent's id on the bus (1-64 letters, digits, '_', '.', '-').
        workspace: the workspace to join.
        name: a display name; the id by default.
        agent_type: "agent", "persona", or another kind, for discovery.
        capabilities: what it can do, for discovery (`Registry.discover(capability=...)`).
        sandbox: where it runs: "host" or a sandbox id.
        meta: free-form details for its registry card.
        consumer: this process's name in the agent's consumer group; several processes serving the same
            agent share its messages. A fresh one by default.
        concurrency: handlers run at once.
        config: delivery settings of its mailbox.
        offline_after_s: the registry marks the agent offline after this long without a heartbeat; it
            heartbeats every third of it.
    """

    def __init__(
        self,
        bus: Bus | str,
        agent_id: str,
        *,
        workspace: str = "default",
        name: str | None = None,
        agent_type: str = "agent",
        capabilities: Sequence[str] = (),
        sandbox: str = "host",
        meta: Mapping[str, Any] | None = None,
        consumer: str | None = None,
        concurrency: int = 4,
        config: DeliveryConfig | None = None,
        offline_after_s: float = 15.0,
    ) -> None:
        if concurrency < 1:
            raise BadRequest(f"concurrency must be 1 or more, got {concurrency}")
        if offline_after_s <= 0:
            raise BadRequest(f"offline_after_s must be more than 0, got {offline_after_s}")
        self._owns_bus = isinstance(bus, str)
        self.bus: Bus = open_bus(bus) if isinstance(bus, str) else bus
        self.agent_id = check_agent(agent_id)
        self.workspace = workspace
        self.name = name or agent_id
        self.agent_type = agent_type
        self.capabilities = list(capabilities)
        self.sandbox = sandbox
        self.meta = dict(meta or {})
        self.mailbox = Mailbox(
            self.bus, workspace, agent_id, sandbox=sandbox, consumer=consumer, config=config
        )
        self.registry = Registry(
            self.bus, workspace, offline_after_s=offline_after_s, instance=self.mailbox.consumer
        )
        self.requester = Requester(self.mailbox, block_ms=self.mailbox.config.block_ms)
        self.heartbeat_s = self.registry.heartbeat_s
        #: Times the agent found the bus again after losing it (and registered again).
        self.reconnects = 0
        self._concurrency = concurrency
        self._routes: list[_Route] = []
        self._task_handler: TaskHandler | None = None
        self._topics: set[str] = set()
        self._serving: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._requester_started = False
        self._stopping = False

    # --- handlers -------------------------------------------------------------------------------------

    @overload
    def on_message(self, handler: MessageHandler, /) -> MessageHandler: ...

    @overload
    def on_message(
        self, *, message_type: MessageType | None = None, topic: str | None = None
    ) -> Callable[[MessageHandler], MessageHandler]: ...

    def on_message(
        self,
        handler: MessageHandler | None = None,
        *,
        message_type: MessageType | None = None,
        topic: str | None = None,
    ) -> MessageHandler | Callable[[MessageHandler], MessageHandler]:
        """Register a handler for messages, all of them or those of one type and/or topic.

        Use as `@agent.on_message` or `@agent.on_message(message_type="notification", topic="news")`.
        A topic filter subscribes the agent to the topic when it starts.
        """
        if message_type is not None and message_type not in get_args(MessageType):
            raise BadRequest(
                f"unknown message type {message_type!r}; choose one of {', '.join(get_args(MessageType))}"
            )
        if topic is not None:
            check_topic(topic)

        def register(func: MessageHandler) -> MessageHandler:
            self._routes.append(_Route(func, message_type, topic))
            if topic is not None:
                self._topics.add(topic)
            return func

        return register(handler) if handler is not None else register

    def on_task_assigned(self, handler: TaskHandler) -> TaskHandler:
        """Register the handler of tasks (`collaborate_with`): `(task, message) -> result`.

        Raises:
            BadRequest: the agent has a task handler already.
        """
        if self._task_handler is not None:
            raise BadRequest(f"agent {self.agent_id!r} has a task handler already; register one")
        self._task_handler = handler
        return handler

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def card(self) -> AgentCard:
        """The agent's registry card, as of now."""
        return AgentCard(
            agent=self.agent_id,
            name=self.name,
            type=self.agent_type,
            capabilities=self.capabilities,
            sandbox=self.sandbox,
            workspace=self.workspace,
            status="online",
            last_seen=datetime.now(UTC),
            meta=self.meta,
        )

    @property
    def stats(self) -> DeliveryStats:
        """Delivery counters of the agent's inbox."""
        return self.mailbox.stats

    @property
    def request_stats(self) -> RequestStats:
        """Counters of the agent's requests: sent, answered, failed, timed out, late, unmatched."""
        return self.requester.stats

    @property
    def running(self) -> bool:
        return self._serving is not None and not self._serving.done()

    async def start(self, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Register, then run the message loop and the heartbeat loop in the background.

        Keeps trying to reach the bus for `connect_timeout_s` (an agent may start before its server).

        Raises:
            BusUnavailable: the bus did not answer within `connect_timeout_s`.
        """
        if self.running:
            return
        self._stopping = False
        await self._connect(connect_timeout_s)
        self._serving = asyncio.create_task(self._serve_loop(), name=f"agent-{self.agent_id}")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.agent_id}")
        # Let the message loop begin, so that a `stop` right after `start` reaches a running serve.
        await asyncio.sleep(0)

    async def stop(self, *, leave: bool = False) -> None:
        """Stop the loops; what was handled is settled, what was not stays pending for later.

        Handlers still running are cancelled: their messages stay pending, and this agent (or another
        process serving it) takes them up again after the idle timeout.

        Args:
            leave: also leave the workspace (the registry's "left" event). When no other process serves
                this agent, direct messages to it are refused from then on. By default the agent stays
                registered, so messages sent while it is down wait for it.
        """
        self._stopping = True
        if self._heartbeat is not None:
            await stop_task(self._heartbeat)
            self._heartbeat = None
        if leave:
            # Before the message loop ends, so that senders learn at once that nobody serves it.
            with contextlib.suppress(BusUnavailable):
                await self.registry.leave(self.agent_id)
        self.mailbox.stop()
        if self._serving is not None:
            await stop_task(self._serving)
            self._serving = None
        if self._requester_started:
            await self.requester.close()
            self._requester_started = False
        if self._owns_bus:
            with contextlib.suppress(BusUnavailable):
                await self.bus.close()

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT (Ctrl-C), then stop."""
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await self.start()
            log.info("roundtable.agent_started agent=%s workspace=%s", self.agent_id, self.workspace)
            await stopped.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()

    async def run_burst(self, *, idle_ms: int = 200) -> int:
        """Register, handle everything waiting, and return how many messages were handled once idle.

        Burst mode, for tests and batch jobs: no heartbeat loop, and no reconnecting.
        """
        await self._register()
        return await self.mailbox.serve(self._handle, concurrency=self._concurrency, idle_stop_ms=idle_ms)

    async def __aenter__(self) -> ContainerAgent:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def subscribe(self, *topics: str) -> None:
        """Follow topics: broadcasts on them reach this agent (handlers without a topic filter see them)."""
        for topic in topics:
            self._topics.add(check_topic(topic))
        await self.mailbox.subscribe(*topics)

    # --- sending --------------------------------------------------------------------------------------

    async def send_message(
        self,
        to: str,
        content: dict[str, Any],
        *,
        message_type: MessageType = "notification",
        priority: int = 5,
        ttl: float | None = None,
        topic: str | None = None,
        metadata: Mapping[str, str] | None = None,
        to_sandbox: str = BROADCAST,
    ) -> AgentMessage:
        """Send a message to one agent and return it as sent (its `message_id` identifies it).

        Raises:
            UnknownRecipient: `to` is not registered in the workspace.
            CommandRefused: a command from a role that may not send one.
            BadRequest: the message is invalid.
            BusUnavailable: the bus cannot be reached; nothing was sent.
        """
        message = self._message(to, content, message_type, priority, ttl, topic, metadata, to_sandbox)
        await self.mailbox.send(message)
        return message

    async def broadcast(
        self,
        content: dict[str, Any],
        topic: str | None = None,
        *,
        message_type: MessageType = "notification",
        priority: int = 5,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Send a message to every other member, or with `topic` to the topic's followers; returns who."""
        message = self._message(ANY_AGENT, content, message_type, priority, ttl, topic, metadata, BROADCAST)
        return await self.mailbox.send(message)

    async def request(
        self,
        to: str,
        content: dict[str, Any],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - also the request's ttl
        priority: int = 5,
        metadata: Mapping[str, str] | None = None,
    ) -> AgentMessage:
        """Send a request to agent `to` and return its response; see `Requester.request`.

        Raises:
            RequestTimedOut, RequestFailed, UnknownRecipient, BadRequest, BusUnavailable.
        """
        await self._ensure_requester()
        return await self.requester.request(
            to, content, timeout=timeout, priority=priority, metadata=dict(metadata or {})
        )

    async def collaborate_with(
        self,
        target: str,
        task: dict[str, Any],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - also the request's ttl
    ) -> dict[str, Any]:
        """Assign a task to agent `target` and return what its `on_task_assigned` handler returned.

        Raises:
            RequestTimedOut: no answer within `timeout`.
            RequestFailed: the target has no task handler, or its handler raised.
            UnknownRecipient, BadRequest, BusUnavailable: as for `request`.
        """
        response = await self.request(target, task, timeout=timeout, metadata={"kind": TASK_KIND})
        return response.content

    def _message(
        self,
        to: str,
        content: dict[str, Any],
        message_type: MessageType,
        priority: int,
        ttl: float | None,
        topic: str | None,
        metadata: Mapping[str, str] | None,
        to_sandbox: str,
    ) -> AgentMessage:
        return AgentMessage(
            from_agent=self.agent_id,
            from_sandbox=self.sandbox,
            to_agent=to,
            to_sandbox=to_sandbox,
            message_type=message_type,
            content=content,
            priority=priority,
            ttl=ttl,
            topic=topic,
            metadata=dict(metadata or {}),
            workspace_id=self.workspace,
        )

    async def _ensure_requester(self) -> None:
        # Started on first use: an agent that never asks keeps no reply stream and no reader.
        if not self._requester_started:
            await self.requester.start()
            self._requester_started = True

    # --- the loops ------------------------------------------------------------------------------------

    async def _register(self) -> None:
        await self.mailbox.register()
        await self.registry.register(self.card)
        if self._topics:
            await self.mailbox.subscribe(*sorted(self._topics))

    async def _connect(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        backoff = Backoff(base_s=0.1, cap_s=2.0)
        while True:
            try:
                await self._register()
                return
            except BusUnavailable as exc:
                delay = backoff.next_delay()
                if loop.time() + delay > deadline:
                    raise BusUnavailable(
                        f"agent {self.agent_id!r} could not register within {timeout_s:g}s: {exc}"
                    ) from exc
                log.warning("roundtable.agent_connect_retry agent=%s error=%s", self.agent_id, exc)
                await asyncio.sleep(delay)

    async def _serve_loop(self) -> None:
        """Run the mailbox's serve; should it end on an error, start it again after a backoff.

        `Mailbox.serve` rides out a lost bus by itself (it retries reads and keeps unsettled outcomes);
        this loop is the net for anything that still ends it.
        """
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        while not self._stopping:
            try:
                await self.mailbox.serve(self._handle, concurrency=self._concurrency)
                backoff.reset()
            except BusUnavailable as exc:
                log.warning("roundtable.agent_serve_failed agent=%s error=%s", self.agent_id, exc)
                await backoff.wait()
            except Exception:  # a bug in the loop must not end the agent for good
                log.exception("roundtable.agent_serve_crashed agent=%s", self.agent_id)
                await backoff.wait()

    async def _heartbeat_loop(self) -> None:
        """Heartbeat every `heartbeat_s`, and sweep the registry every third beat (every agent helps
        mark silent ones offline); after losing the bus, register again once it answers."""
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        lost = False
        beats = 0
        while not self._stopping:
            if not lost:
                await asyncio.sleep(self.heartbeat_s)
            try:
                if lost:
                    # The server may have restarted without our registration: register again.
                    await self._register()
                    self.reconnects += 1
                    log.info("roundtable.agent_reconnected agent=%s", self.agent_id)
                await self.registry.heartbeat(self.agent_id)
                beats += 1
                if beats % 3 == 0:
                    await self.registry.sweep()
                lost = False
                backoff.reset()
            except BusUnavailable as exc:
                if not lost:
                    log.warning("roundtable.agent_bus_lost agent=%s error=%s", self.agent_id, exc)
                lost = True
                await backoff.wait()
            except Exception:  # a bug here must not stop the heartbeat for good
                log.exception("roundtable.agent_heartbeat_crashed agent=%s", self.agent_id)
                await backoff.wait()

    async def _handle(self, message: AgentMessage) -> None:
        if message.message_type == "response" and self.requester.expects(message.correlation_id):
            self.requester.resolve(message)
            return
        wants_answer = message.requires_response and message.message_type in ("request", "command")
        if message.metadata.get("kind") == TASK_KIND and message.message_type == "request":
            result = await self._run_task(message)
        else:
            routes = [route for route in self._routes if route.matches(message)]
            if not routes:
                log.info(
                    "roundtable.agent_unhandled agent=%s type=%s id=%s",
                    self.agent_id,
                    message.message_type,
                    message.message_id,
                )
                if not wants_answer:
                    return
                result = Reply(
                    {"error": f"agent {self.agent_id!r} has no handler for {message.message_type} messages"},
                    "failed",
                )
            else:
                result = await self._run_routes(routes, message, wants_answer)
        if wants_answer:
            reply = result if isinstance(result, Reply) else Reply(result or {})
            # A failure to send the response raises: the request stays unsettled, and is retried.
            await answer(self.mailbox, message, reply.content, status=reply.status)

    async def _run_routes(self, routes: list[_Route], message: AgentMessage, wants_answer: bool) -> Result:
        result: Result = None
        for route in routes:
            try:
                value = await route.handler(message)
            except Exception as exc:
                if not wants_answer:
                    raise  # retried, then dead-lettered: see the module docstring
                log.exception(
                    "roundtable.agent_handler_failed agent=%s id=%s", self.agent_id, message.message_id
                )
                return Reply({"error": f"{type(exc).__name__}: {exc}"}, "failed")
            if result is None:
                result = value
        return result

    async def _run_task(self, message: AgentMessage) -> Result:
        if self._task_handler is None:
            return Reply(
                {"error": f"agent {self.agent_id!r} takes no tasks (no on_task_assigned handler)"}, "failed"
            )
        try:
            return await self._task_handler(message.content, message)
        except Exception as exc:
            log.exception("roundtable.agent_task_failed agent=%s id=%s", self.agent_id, message.message_id)
            return Reply({"error": f"{type(exc).__name__}: {exc}"}, "failed")
