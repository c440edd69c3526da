"""An agent's end of the bus: send messages, receive its own, settle them, serve a handler.

The delivery guarantees, on any backend that passes the contract suite:

- **At-least-once.** A message is acknowledged only once it is settled: handled, skipped as a
  duplicate, or dead-lettered. A consumer that dies leaves it pending; after `idle_timeout_s` without
  a heartbeat another consumer of the same agent reclaims it.
- **Handled effectively once.** Each message id is claimed as it is read; a handled one is marked
  done in the same step as its acknowledgement, and a redelivery or duplicate of it is acknowledged
  without running the handler again. Only a consumer that dies between its handler's return and
  that step runs it twice.
- **Dead letters.** Malformed entries, expired messages, and messages that failed or were handed out
  `max_deliveries` times go to the workspace's dead-letter stream, with the reason and the count.
- **Priority.** A message waits in the lane of its priority, and a lane is read only when every higher
  one is empty, so a higher-priority message is taken before lower ones already waiting.
- **Retention.** Lanes are trimmed as they grow (`DeliveryConfig.retention`); entries trimmed before
  this agent's group was handed them are counted in `stats.trimmed` and logged.

Sending checks what it can before anything leaves: the message is valid, not expired, from this
mailbox's agent, to a registered agent, and a command only from a role the workspace allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from bus import observe
from bus.addressing import (
    INBOX_GROUP,
    check_agent,
    check_topic,
    claim_scope,
    inbox_key,
    inbox_lanes,
    is_fan_out,
    members_key,
    recipients,
    topic_key,
)
from bus.backend import Bus, Claims, Delivery, Record, Settlement, check_positive
from bus.deadletter import DeadLetter, DeadReason
from bus.delivery import DeliveryConfig, DeliveryStats, Envelope, Handler, Outcome
from bus.events import BusEvent
from bus.message import ANY_AGENT, AgentMessage
from bus.policy import AuditRecord, CommandPolicy, fetch_policy
from bus.serving import Serving
from engine.errors import BadRequest, CommandRefused, MessageExpired

log = logging.getLogger("roundtable.bus")


class Mailbox:
    """One agent's inbox in a workspace, read by one consumer of the agent's consumer group.

    Several mailboxes of the same agent (in one process or many) share the work: each message goes to
    one of them. A mailbox that only sends need not `register`.

    Args:
        bus: the backend.
        workspace: the workspace id; all keys live under it.
        agent: this agent's id; messages sent from here must have it as `from_agent`.
        sandbox: where the agent runs; recorded with its membership, and matched against `to_sandbox`.
        group: the consumer group; a second group on the same inbox gets its own copy of everything.
        consumer: this consumer's name in the group; a fresh one by default.
        config: delivery settings.
    """

    def __init__(
        self,
        bus: Bus,
        workspace: str,
        agent: str,
        *,
        sandbox: str = "host",
        group: str = INBOX_GROUP,
        consumer: str | None = None,
        config: DeliveryConfig | None = None,
    ) -> None:
        self.bus = bus
        self.workspace = workspace
        self.agent = check_agent(agent)
        self.sandbox = sandbox
        self.group = group
        self.consumer = consumer or f"{agent}-{uuid.uuid4().hex[:8]}"
        self.config = config or DeliveryConfig()
        self.lanes = inbox_lanes(workspace, agent)
        self.claims = Claims(claim_scope(workspace, agent, group), self.consumer, self.config.lease_ms)
        self.stats = DeliveryStats()
        self._members: dict[str, str] = {}
        self._members_at = float("-inf")
        self._in_flight: dict[tuple[str, str], Envelope] = {}
        self._stopping = False
        self._registered = False
        observe.mailbox_opened(self)  # metrics see every mailbox (bus/observe.py)

    # --- membership -------------------------------------------------------------------------------

    async def register(self) -> None:
        """Join the workspace: create this agent's lanes and group, then appear in the member list.

        Membership outlives the process, so messages sent while the agent is down wait for it.
        """
        for lane in self.lanes:
            await self.bus.ensure_group(lane, self.group)
        await self.bus.map_set(members_key(self.workspace), {self.agent: self.sandbox})
        self._registered = True

    async def unregister(self) -> None:
        """Leave the workspace: direct messages to this agent are refused from now on.

        Its lanes are kept, so an agent that registers again finds what was sent before it left.
        """
        await self.bus.map_remove(members_key(self.workspace), self.agent)

    async def subscribe(self, *topics: str) -> None:
        """Follow topics: a message with `to_agent="any"` and one of these topics reaches this agent."""
        for topic in topics:
            await self.bus.map_set(topic_key(self.workspace, topic), {self.agent: self.sandbox})

    async def unsubscribe(self, *topics: str) -> None:
        for topic in topics:
            await self.bus.map_remove(topic_key(self.workspace, topic), self.agent)

    async def fetch_members(self) -> dict[str, str]:
        """The workspace's registered agents (agent -> sandbox), read now."""
        self._members = await self.bus.map_get(members_key(self.workspace))
        self._members_at = time.monotonic()
        return dict(self._members)

    # --- sending ----------------------------------------------------------------------------------

    async def send(self, message: AgentMessage) -> list[str]:
        """Send a message; returns the agents it was delivered to (sorted).

        Raises:
            BadRequest: the message is invalid, or not from this mailbox's agent and workspace.
            MessageExpired: its ttl has passed already.
            UnknownRecipient: `to_agent` is not registered in the workspace.
            CommandRefused: it is a command and the sender's role may not send one (audited).
        """
        [reached] = await self.send_many([message])
        return reached

    async def send_many(self, messages: Sequence[AgentMessage]) -> list[list[str]]:
        """Send messages in one round trip (two with a fan-out); each one's recipients, in order.

        Every message is checked first: when one is refused, none is sent.
        """
        now = datetime.now(UTC)
        for message in messages:
            self._check_outgoing(message, now)
        if any(m.message_type == "command" for m in messages):
            await self._check_commands(messages)
        members = await self._members_for(messages)
        topics = {m.topic for m in messages if m.topic is not None and is_fan_out(m)}
        followers = dict(
            zip(
                topics,
                await asyncio.gather(*(self.bus.map_get(topic_key(self.workspace, t)) for t in topics)),
                strict=True,
            )
        )
        routes = [
            recipients(m, members, followers=followers.get(m.topic) if m.topic else None) for m in messages
        ]
        entries = [
            (inbox_key(self.workspace, agent, message.priority), message)
            for message, reached in zip(messages, routes, strict=True)
            for agent in reached
        ]
        await self.bus.publish_many(entries, retention=self.config.retention)
        self.stats.sent += len(entries)
        return routes

    def _check_outgoing(self, message: AgentMessage, now: datetime) -> None:
        if message.from_agent != self.agent:
            raise BadRequest(
                f"message from_agent {message.from_agent!r} is not this mailbox's agent {self.agent!r}; "
                "send it from its own agent's mailbox"
            )
        if message.workspace_id != self.workspace:
            raise BadRequest(
                f"message workspace_id {message.workspace_id!r} is not this mailbox's workspace "
                f"{self.workspace!r}"
            )
        if message.to_agent != ANY_AGENT:
            check_agent(message.to_agent)
        if message.topic is not None:
            check_topic(message.topic)
        if message.is_expired(now):
            assert message.ttl is not None
            ended = message.timestamp + timedelta(seconds=message.ttl)
            raise MessageExpired(
                f"message {message.message_id} expired at {ended.isoformat()} (ttl {message.ttl:g}s), "
                "before it was sent; send it with a later timestamp or a longer ttl"
            )

    async def _check_commands(self, messages: Sequence[AgentMessage]) -> None:
        policy = await fetch_policy(self.bus, self.workspace)
        for message in messages:
            reason = policy.refusal(message)
            if reason is not None:
                self.stats.refused += 1
                audit = AuditRecord.refused(message, policy, where="send", reason=reason)
                record = audit.record(self.workspace, self.config.audit_retention)
                await self.bus.append(record.stream, record.fields, retention=record.retention)
                log.warning(
                    "roundtable.bus_command_refused where=send from=%s to=%s id=%s",
                    message.from_agent,
                    message.to_agent,
                    message.message_id,
                )
                raise CommandRefused(f"command refused: {reason}")

    async def _members_for(self, messages: Sequence[AgentMessage]) -> Mapping[str, str]:
        """Members as of now for a fan-out; for direct messages a recent copy, re-read on a miss."""
        fresh = time.monotonic() - self._members_at <= self.config.members_cache_s
        if fresh and not any(is_fan_out(m) or m.to_agent not in self._members for m in messages):
            return self._members
        return await self.fetch_members()

    # --- receiving --------------------------------------------------------------------------------

    async def receive(self, *, count: int | None = None, block_ms: int | None = None) -> list[Envelope]:
        """The next messages to handle, highest priority first, waiting up to `block_ms` for one.

        What must not be handled is settled on the way (dead letters, duplicates, refused commands).
        Each envelope returned is this mailbox's until it is passed to `complete` or `fail`.
        """
        received = await self.bus.receive(
            self.lanes,
            self.group,
            self.consumer,
            count=count or self.config.batch,
            block_ms=self.config.block_ms if block_ms is None else block_ms,
            claims=self.claims,
        )
        self._note_trimmed(received.trimmed)
        return await self._triage(received.deliveries)

    async def reclaim(self, *, count: int | None = None) -> list[Envelope]:
        """Take over messages left pending by silent consumers (this one's failures included)."""
        want = count or self.config.batch
        deliveries: list[Delivery] = []
        for lane in self.lanes:
            if len(deliveries) >= want:
                break
            received = await self.bus.reclaim(
                lane,
                self.group,
                self.consumer,
                min_idle_ms=self.config.idle_timeout_ms,
                count=want - len(deliveries),
                claims=self.claims,
            )
            self._note_trimmed(received.trimmed)
            deliveries.extend(received.deliveries)
        self.stats.reclaimed += len(deliveries)
        return await self._triage(deliveries)

    async def complete(self, envelopes: Sequence[Envelope]) -> None:
        """Settle handled messages: marked done and acknowledged in one step."""
        await self.settle([(envelope, None) for envelope in envelopes])

    async def fail(self, envelope: Envelope, error: BaseException) -> None:
        """Settle a failed message: retried after the idle timeout, dead-lettered at `max_deliveries`."""
        await self.settle([(envelope, error)])

    async def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Settle several messages at once: (envelope, None) when handled, (envelope, error) when not."""
        if not outcomes:
            return
        builder = _Settling(self)
        for envelope, error in outcomes:
            if error is None:
                builder.handled(envelope)
            else:
                builder.failed(envelope, error)
        await self.bus.settle(builder.settlement())
        builder.count()
        for envelope, _ in outcomes:
            self._in_flight.pop(envelope.key, None)

    async def heartbeat(self) -> None:
        """Tell the bus this mailbox still works on its messages, so none is reclaimed from it."""
        by_stream: dict[str, list[Envelope]] = {}
        for envelope in list(self._in_flight.values()):
            by_stream.setdefault(envelope.delivery.stream, []).append(envelope)
        for stream, envelopes in by_stream.items():
            await self.bus.touch(
                stream,
                self.group,
                self.consumer,
                [e.delivery.entry_id for e in envelopes],
                claims=self.claims,
                message_ids=[e.message.message_id for e in envelopes],
            )

    def abandon(self, envelopes: Sequence[Envelope]) -> None:
        """Stop heartbeating messages that will not be settled here (their handler was cancelled).

        They stay pending, and another consumer reclaims them after the idle timeout.
        """
        for envelope in envelopes:
            self._in_flight.pop(envelope.key, None)

    @property
    def in_flight(self) -> int:
        """Messages handed to this mailbox and not settled yet."""
        return len(self._in_flight)

    async def _triage(self, deliveries: Sequence[Delivery]) -> list[Envelope]:
        if not deliveries:
            return []
        self.stats.received += len(deliveries)
        policy: CommandPolicy | None = None
        if any(d.message is not None and d.message.message_type == "command" for d in deliveries):
            policy = await fetch_policy(self.bus, self.workspace)
        now = datetime.now(UTC)
        builder = _Settling(self)
        ready: list[Envelope] = []
        working = {envelope.message.message_id for envelope in self._in_flight.values()}
        for delivery in deliveries:
            message = delivery.message
            if delivery.status == "busy" or (
                message is not None and delivery.status == "new" and message.message_id in working
            ):
                # Another consumer holds it, or this one is handling another copy of it: it stays
                # pending, and when it comes back it is skipped as done, or run if that attempt failed.
                continue
            if message is None:
                builder.dead(delivery, "malformed", delivery.error or "unreadable entry", delivery.deliveries)
            elif not self._turned_away(delivery, message, builder, policy, now):
                envelope = Envelope(message, delivery)
                self._in_flight[envelope.key] = envelope
                working.add(message.message_id)
                ready.append(envelope)
        settlement = builder.settlement()
        if not settlement.is_empty():
            try:
                await self.bus.settle(settlement)
            except BaseException:
                for envelope in ready:
                    self._in_flight.pop(envelope.key, None)
                raise
            builder.count()
        return ready

    def _turned_away(
        self,
        delivery: Delivery,
        message: AgentMessage,
        builder: _Settling,
        policy: CommandPolicy | None,
        now: datetime,
    ) -> bool:
        """Settle a readable delivery that is not to be handled: a duplicate, one handed out too often,
        an expired one, or a command the policy refuses. Whether it was one of those."""
        if delivery.status == "done":
            builder.duplicate(delivery)
        elif delivery.deliveries > self.config.max_deliveries:
            attempts = delivery.deliveries - 1
            builder.dead(delivery, "max_deliveries", f"handed out {attempts} times, never settled", attempts)
        elif message.is_expired(now):
            assert message.ttl is not None
            detail = f"ttl {message.ttl:g}s from {message.timestamp.isoformat()} passed"
            builder.dead(delivery, "expired", detail, delivery.deliveries)
        elif policy is not None and (reason := policy.refusal(message)) is not None:
            builder.refused(delivery, message, policy, reason)
        else:
            return False
        return True

    def _note_trimmed(self, trimmed: Mapping[str, int]) -> None:
        for stream, count in trimmed.items():
            if count < 0:
                log.warning(
                    "roundtable.bus_trimmed_before_delivery agent=%s stream=%s count=unknown",
                    self.agent,
                    stream,
                )
                continue
            self.stats.trimmed += count
            log.warning(
                "roundtable.bus_trimmed_before_delivery agent=%s stream=%s count=%d total=%d",
                self.agent,
                stream,
                count,
                self.stats.trimmed,
            )

    def stop(self) -> None:
        """Ask a running `serve` to return after its current read; it settles what was handled."""
        self._stopping = True

    async def serve(self, handler: Handler, *, concurrency: int = 1, idle_stop_ms: int | None = None) -> int:
        """Run `handler` on each message until `stop` (or cancellation); returns how many it handled.

        Registers the agent first, unless this mailbox has already.

        Up to `concurrency` handlers run at once, started in priority order. A handler that returns
        has handled its message; one that raises is retried after the idle timeout, and dead-lettered
        at `max_deliveries`. In the meantime this mailbox heartbeats its messages and reclaims those
        of silent consumers. With `idle_stop_ms`, it returns once nothing came for that long and no
        handler is running (burst mode, for tests and batch jobs).
        """
        check_positive("concurrency", concurrency)
        self._stopping = False
        if not self._registered:
            await self.register()
        return await Serving(self, observe.wrap_handler(self, handler), concurrency).run(idle_stop_ms)

    @property
    def stopping(self) -> bool:
        return self._stopping


class _Settling:
    """Builds one settlement, and counts it in the mailbox's stats once it is written."""

    def __init__(self, mailbox: Mailbox) -> None:
        self._box = mailbox
        self._records: list[Record] = []
        self._done: list[str] = []
        self._released: list[str] = []
        self._acks: dict[str, list[str]] = {}
        self._counts: list[tuple[str, str]] = []

    def _ack(self, delivery: Delivery) -> None:
        self._acks.setdefault(delivery.stream, []).append(delivery.entry_id)

    def handled(self, envelope: Envelope) -> None:
        self._done.append(envelope.message.message_id)
        self._ack(envelope.delivery)
        self._counts.append(("handled", ""))

    def duplicate(self, delivery: Delivery) -> None:
        self._ack(delivery)
        self._counts.append(("duplicates", ""))

    def failed(self, envelope: Envelope, error: BaseException) -> None:
        box = self._box
        self._counts.append(("failed", ""))
        detail = f"{type(error).__name__}: {error}"
        log.warning(
            "roundtable.bus_handler_failed agent=%s id=%s delivery=%d error=%s",
            box.agent,
            envelope.message.message_id,
            envelope.deliveries,
            detail,
        )
        if envelope.deliveries >= box.config.max_deliveries:
            self.dead(envelope.delivery, "handler_failed", detail, envelope.deliveries)
        else:
            self._released.append(envelope.message.message_id)  # stays pending: reclaimed later

    def dead(self, delivery: Delivery, reason: DeadReason, detail: str, deliveries: int) -> None:
        box = self._box
        letter = DeadLetter.of(
            delivery, reason=reason, detail=detail, deliveries=deliveries, agent=box.agent, group=box.group
        )
        self._records.append(letter.record(box.workspace, box.config.dead_letter_retention))
        self._records.append(BusEvent.of_dead_letter(letter).record(box.workspace))  # the events stream
        if delivery.message is not None:
            self._released.append(delivery.message.message_id)
        self._ack(delivery)
        self._counts.append(("dead", reason))
        log.warning(
            "roundtable.bus_dead_letter agent=%s reason=%s id=%s deliveries=%d detail=%s",
            box.agent,
            reason,
            letter.message_id or "-",
            deliveries,
            detail,
        )

    def refused(self, delivery: Delivery, message: AgentMessage, policy: CommandPolicy, reason: str) -> None:
        box = self._box
        audit = AuditRecord.refused(message, policy, where="receive", reason=reason)
        self._records.append(audit.record(box.workspace, box.config.audit_retention))
        self._released.append(message.message_id)
        self._ack(delivery)
        self._counts.append(("refused", ""))
        log.warning(
            "roundtable.bus_command_refused where=receive from=%s to=%s id=%s",
            message.from_agent,
            box.agent,
            message.message_id,
        )

    def settlement(self) -> Settlement:
        box = self._box
        return Settlement(
            group=box.group,
            records=self._records,
            done=self._done,
            released=self._released,
            acks=self._acks,
            claims=box.claims,
            done_ms=box.config.dedup_window_ms,
        )

    def count(self) -> None:
        stats = self._box.stats
        for kind, reason in self._counts:
            if kind == "dead":
                stats.dead_lettered[reason] += 1
            else:
                setattr(stats, kind, getattr(stats, kind) + 1)
