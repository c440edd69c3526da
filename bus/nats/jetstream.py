"""The bus on NATS JetStream, through nats-py, for deployments that outgrow one Redis.

How the `Bus` contract maps onto JetStream (`nats_names` says how keys become names, `nats_wire` how
entries look, `nats_streams` how streams and groups are made, `nats_kv` how claims and tables are kept):

- **Streams.** Each bus stream is a JetStream stream with one subject, e.g. `rt.default.inbox.analyst.p9`,
  kept by limits (every consumer group sees every entry, as on Redis). Its sequence numbers are the
  entry ids (`"<seq>-0"`), so they grow in publish order. `Retention` sets the stream's `max_msgs`
  (exact, where Redis is approximate) or `max_age` (100 ms at least: JetStream's floor).
- **Groups.** A consumer group is a durable pull consumer with explicit acknowledgement; consumers of a
  group share it, so each entry goes to one of them. Its `ack_wait` is the idle time after which the
  server hands an unacknowledged entry out again, counting the delivery; `reclaim(min_idle_ms=...)`
  sets it. Its `max_deliver` is a backstop above the delivery layer's own limit: entries the server
  gives up on are announced on the max-deliveries advisory subject, kept in the `rt~max-deliveries`
  stream (the original entry stays readable in its stream).
- **Claims and tables** live in KV buckets (`nats_kv`): KV `create` is the atomic claim.
- **Inspection** for operators (`nats_inspection`): streams, groups, lag and pending from the
  JetStream API; per-entry pending state is approximated from the group's ack floor.
- **Hot path.** Publishes, claims and acknowledgements go out in batches, one flush and one wait per
  batch; a pull fetches up to `count` entries at once and returns as soon as any is there.

What JetStream cannot give is listed in `NatsBus.unsupported`, with the reason; the contract suite
skips those tests on NATS instead of faking them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import urlsplit

from nats.aio.msg import Msg

from bus.backend import (
    Claims,
    ClaimStatus,
    Delivery,
    Received,
    Retention,
    Settlement,
    check_not_negative,
    check_owner,
    check_positive,
    check_receive,
    check_start,
    parse_entry_id,
)
from bus.message import AgentMessage
from bus.nats.client import REQUEST_TIMEOUT_S, NatsLink, NoResponders, Request, status_of
from bus.nats.inspection import NatsInspection
from bus.nats.kv import DEFAULT_CLAIMS_TTL_MS, Buckets
from bus.nats.names import consumer_name, stream_name, subject
from bus.nats.streams import Group, Streams, limits_of
from bus.nats.wire import Taken, ack_info, ack_subject, decode, delivery, encode, entry_id, entry_seq
from bus.ops.inspection import PendingEntry, StreamInfo
from bus.urls import redact_url
from engine.errors import BusUnavailable, ConfigError

#: The idle time after which an unacknowledged entry is handed out again (the delivery layer's default).
DEFAULT_ACK_WAIT_MS = 30_000
#: Deliveries after which the server gives an entry up; above the delivery layer's own limit (5).
DEFAULT_MAX_DELIVER = 20
#: Longest a single pull waits; longer `block_ms` return [] sooner, as the contract allows.
MAX_BLOCK_MS = 10_000
#: How long a read woken by a publish waits for JetStream to have stored it.
WAKE_GRACE_MS = 100
_HELD_SWEEP = 10_000


class NatsBus:
    """The bus on a NATS server with JetStream (2.9 or later).

    Args:
        url: a NATS URL, `nats://host:4222` or `tls://host:4222` (credentials in it are hidden in logs).
        storage: "file" (survives a restart) or "memory" for the streams and buckets this bus creates.
        replicas: copies of each stream in a JetStream cluster.
        ack_wait_ms: idle time after which an unacknowledged entry is delivered again.
        max_deliver: deliveries after which the server gives an entry up (-1: never).
        claims_ttl_ms: how long claim keys are kept at least.
        sync_acks: wait for the server to confirm acknowledgements (one round trip per batch), so a
            `pending_count` right after sees them; False sends them and only flushes.
        request_timeout_s: how long to wait for any one reply.

    Raises:
        ConfigError: the URL is not a NATS URL.
    """

    name = "nats"

    #: What the contract asks and JetStream cannot give: capability -> why. The contract suite skips
    #: the tests that need one of these on this backend, with this reason.
    unsupported: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "reclaim": (
                "JetStream hands an unacknowledged entry out again by itself once it has been pending for "
                "the consumer's ack_wait (reclaim's min_idle_ms sets it); no call gives a chosen consumer "
                "the entries idle longer than a chosen time, so redeliveries come back through receive "
                "and consume, with their delivery count"
            ),
            "age_retention_under_100ms": (
                "JetStream's shortest max_age is 100 ms, and the server expires entries on its own timer, "
                "so younger limits keep entries for 100 ms"
            ),
        }
    )

    def __init__(
        self,
        url: str,
        *,
        storage: str = "file",
        replicas: int = 1,
        ack_wait_ms: int = DEFAULT_ACK_WAIT_MS,
        max_deliver: int = DEFAULT_MAX_DELIVER,
        claims_ttl_ms: int = DEFAULT_CLAIMS_TTL_MS,
        sync_acks: bool = True,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = redact_url(url)
        if urlsplit(url).scheme not in ("nats", "tls"):
            raise ConfigError(f"{self.url!r} is not a NATS URL; use nats://host:4222 or tls://host:4222")
        if storage not in ("file", "memory"):
            raise ConfigError(f"unknown JetStream storage {storage!r}; choose file or memory")
        check_positive("ack_wait_ms", ack_wait_ms)
        self._sync_acks = sync_acks
        self._link = NatsLink(url, self.url, request_timeout_s=request_timeout_s)
        self._kv = Buckets(self._link, storage=storage, replicas=replicas, claims_ttl_ms=claims_ttl_ms)
        self._streams = Streams(
            self._link, storage=storage, replicas=replicas, ack_wait_ms=ack_wait_ms, max_deliver=max_deliver
        )
        self._inspection = NatsInspection(self._link, self._streams)
        self._closed = False

    # --- publishing -------------------------------------------------------------------------------

    async def publish(self, stream: str, message: AgentMessage, *, retention: Retention | None = None) -> str:
        [ident] = await self._append([(stream, encode(message.to_fields()), retention)])
        return ident

    async def publish_many(
        self, entries: Sequence[tuple[str, AgentMessage]], *, retention: Retention | None = None
    ) -> list[str]:
        checked = [(stream, encode(message.to_fields()), retention) for stream, message in entries]
        return await self._append(checked)

    async def append(
        self, stream: str, fields: Mapping[str, str], *, retention: Retention | None = None
    ) -> str:
        [ident] = await self._append([(stream, encode(fields), retention)])
        return ident

    async def _append(self, items: Sequence[tuple[str, bytes, Retention | None]]) -> list[str]:
        """Publish entries in one batch (one flush, one wait for all acknowledgements)."""
        self._check_open()
        if not items:
            return []
        for retention in {r for _, _, r in items}:
            await self._streams.ensure([k for k, _, r in items if r == retention], limits_of(retention))
        replies = await self._link.request_many([(subject(key), payload, None) for key, payload, _ in items])
        seqs: list[int | None] = [self._puback(reply) for reply in replies]
        gone = [i for i, seq in enumerate(seqs) if seq is None]
        if gone:
            # Another process deleted the stream meanwhile: make it again and send those once more.
            for i in gone:
                self._streams.forget(items[i][0])
            for i in gone:
                await self._streams.ensure([items[i][0]], limits_of(items[i][2]))
            again = await self._link.request_many([(subject(items[i][0]), items[i][1], None) for i in gone])
            for i, reply in zip(gone, again, strict=True):
                seqs[i] = self._puback(reply)
        if any(seq is None for seq in seqs):
            raise BusUnavailable(f"nats at {self.url} failed: a stream vanished while it was written")
        return [entry_id(seq) for seq in seqs if seq is not None]

    def _puback(self, reply: Msg) -> int | None:
        if status_of(reply) == "503":
            return None
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error:
            raise BusUnavailable(f"nats at {self.url} failed: {error.get('description')}")
        return int(answer["seq"])

    # --- groups -----------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        check_start(start)
        self._check_open()
        await self._streams.group(stream, group, start)

    # --- reading ----------------------------------------------------------------------------------

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int = 10, block_ms: int = 1000
    ) -> list[Delivery]:
        check_positive("count", count)
        check_not_negative("block_ms", block_ms)
        self._check_open()
        taken: list[Taken] = []
        block = min(block_ms, MAX_BLOCK_MS)
        if block:
            await self._pull(stream, group, count, block, taken, {})
        else:
            await self._streams.group(stream, group)
            await self._read_lanes([stream], group, count, set(), 0, taken, {})
        return [delivery(t, "new") for t in taken]

    async def receive(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int = 1000,
        claims: Claims | None = None,
    ) -> Received:
        check_receive(streams, consumer, count, block_ms, claims)
        self._check_open()
        await self._streams.groups(list(streams), group)
        taken: list[Taken] = []
        trimmed: dict[str, int] = {}
        block = min(block_ms, MAX_BLOCK_MS)
        if block and len(streams) == 1:
            await self._pull(streams[0], group, count, block, taken, trimmed)
        elif block:
            await self._wait_and_read(streams, group, count, block, taken, trimmed)
        else:
            await self._read_lanes(streams, group, count, set(), 0, taken, trimmed)
        if claims is None:
            statuses: list[ClaimStatus] = ["new"] * len(taken)
        else:
            statuses = await self._kv.take(claims, [t.fields.get("id") for t in taken])
        deliveries = [delivery(t, s) for t, s in zip(taken, statuses, strict=True)]
        return Received(deliveries, trimmed)

    async def _wait_and_read(
        self,
        keys: Sequence[str],
        group: str,
        count: int,
        block_ms: int,
        taken: list[Taken],
        trimmed: dict[str, int],
    ) -> None:
        """Read the lanes in order; when all are empty, wait for a publish on any of them and read again.

        The subscriptions start before the read that follows them, so nothing published in between
        is missed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        await self._read_lanes(keys, group, count, set(), 0, taken, trimmed)
        if taken:
            return  # busy lanes need no subscriptions
        async with self._link.wakeups([subject(k) for k in keys]) as wakeups:
            woken: set[str] = set()
            while True:
                left_ms = int((deadline - loop.time()) * 1000)
                grace = max(1, min(WAKE_GRACE_MS, left_ms))
                await self._read_lanes(keys, group, count, woken, grace, taken, trimmed)
                if taken or left_ms <= 0:
                    return
                with self._link.errors:
                    if not await wakeups.wait(left_ms / 1000):
                        return
                woken = wakeups.take()

    async def _read_lanes(
        self,
        keys: Sequence[str],
        group: str,
        count: int,
        woken: set[str],
        grace_ms: int,
        taken: list[Taken],
        trimmed: dict[str, int],
    ) -> None:
        """One pass over the lanes, highest first; a lane that just saw a publish waits `grace_ms` for it.

        One round trip first finds the lanes with nothing new and nothing pending (see
        `Streams.quiet`), so that the pass pulls only where there can be something.
        """
        quiet = await self._streams.quiet([k for k in keys if subject(k) not in woken], group)
        for key in keys:
            if len(taken) >= count:
                return
            if key not in quiet:
                wait = grace_ms if subject(key) in woken else 0
                await self._pull(key, group, count - len(taken), wait, taken, trimmed)

    async def _pull(
        self, key: str, group: str, count: int, wait_ms: int, taken: list[Taken], trimmed: dict[str, int]
    ) -> None:
        known = await self._streams.group(key, group)
        try:
            msgs = await self._link.fetch(known.stream, known.consumer, count, wait_ms)
        except NoResponders:
            # The stream or the group was deleted: heal like Redis does, from the start of the stream.
            self._streams.forget(key)
            known = await self._streams.group(key, group)
            try:
                msgs = await self._link.fetch(known.stream, known.consumer, count, wait_ms)
            except NoResponders:
                raise BusUnavailable(
                    f"nats at {self.url} failed: group {group!r} on {key!r} vanished"
                ) from None
        lost = self._note(key, known, msgs, taken)
        if lost:
            trimmed[key] = trimmed.get(key, 0) + lost

    def _note(self, key: str, group: Group, msgs: Sequence[Msg], taken: list[Taken]) -> int:
        """Record deliveries as held here, and count entries trimmed before the group was handed them.

        A new delivery whose consumer sequence directly follows the last one this instance saw had no
        other delivery of the group between them, so the stream sequences it skipped were trimmed. When
        other instances read the same group in between, nothing is counted: the count is exact for one
        reader of a group and a lower bound otherwise.
        """
        lost = 0
        deadline = time.monotonic() + group.ack_wait_ms / 1000
        for msg in msgs:
            deliveries, seq, order = ack_info(msg.reply)
            if deliveries == 1:
                if order == group.last_delivery + 1 and seq > group.last_new + 1:
                    lost += seq - group.last_new - 1
                group.last_new = max(group.last_new, seq)
            group.last_delivery = order
            group.held[seq] = (msg.reply, deadline)
            fields, error = decode(msg.data)
            taken.append(Taken(key, seq, deliveries, fields, error))
        if len(group.held) > _HELD_SWEEP:
            now = time.monotonic()
            group.held = {s: h for s, h in group.held.items() if h[1] > now}
        return lost

    async def entries(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        check_positive("count", count)
        after_seq = 0 if after is None else parse_entry_id(after)[0]
        self._check_open()
        state = await self._streams.state(stream)
        if state is None:
            return []
        name = stream_name(stream)
        seq, last = max(after_seq + 1, int(state["first_seq"])), int(state["last_seq"])
        rows: list[tuple[str, dict[str, str]]] = []
        while len(rows) < count and seq <= last:
            batch = range(seq, min(last, seq + count - len(rows) - 1) + 1)
            replies = await self._link.request_many(
                [(f"$JS.API.DIRECT.GET.{name}", json.dumps({"seq": n}).encode(), None) for n in batch]
            )
            for n, reply in zip(batch, replies, strict=True):
                if status_of(reply) is None:  # 404: trimmed meanwhile
                    rows.append((entry_id(n), decode(reply.data)[0]))
            seq = batch.stop
        return rows

    # --- settling ---------------------------------------------------------------------------------

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        seqs = list(dict.fromkeys(entry_seq(entry_id) for entry_id in entry_ids))
        self._check_open()
        seqs = [seq for seq in seqs if seq > 0]
        if not seqs:
            return 0
        known = self._streams.known(stream, group)
        now = time.monotonic()
        if known is not None and all(known.held.get(s, ("", 0.0))[1] > now for s in seqs):
            await self._send_acks([(stream, group, seqs)], b"+ACK")
            return len(seqs)
        # Some were handed out elsewhere: count what the server's pending list lost.
        before = await self.pending_count(stream, group)
        if not before:
            return 0
        await self._send_acks([(stream, group, seqs)], b"+ACK", confirm=True)
        return max(0, min(len(seqs), before - await self.pending_count(stream, group)))

    async def _send_acks(
        self, batches: Sequence[tuple[str, str, Sequence[int]]], verb: bytes, *, confirm: bool = False
    ) -> None:
        """Send `+ACK` (or `+WPI`) for entries in one write; acks forget the entries as held here.

        With `sync_acks` (or `confirm`) the last one to each group asks for the server's answer, which
        comes once all of that group's were applied (one reply per group, not per entry); otherwise
        they are sent with one flush.
        """
        groups: list[list[Request]] = []
        deadline_of = time.monotonic()
        for key, group, seqs in batches:
            name, durable = stream_name(key), consumer_name(group)
            known = self._streams.known(key, group)
            messages: list[Request] = []
            for seq in seqs:
                held = known.held.get(seq) if known else None
                reply = held[0] if held else ack_subject(name, durable, seq)
                messages.append((reply, verb, None))
                if known is None:
                    continue
                if verb == b"+ACK":
                    known.held.pop(seq, None)
                elif held:
                    known.held[seq] = (held[0], deadline_of + known.ack_wait_ms / 1000)
            groups.append(messages)
        if self._sync_acks or confirm:
            await self._link.confirm_many(groups)  # "no responders": the group is gone, nothing to ack
        else:
            await self._link.publish_many([m for messages in groups for m in messages])

    async def reclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        count: int = 10,
        claims: Claims | None = None,
    ) -> Received:
        """Tie the group's ack_wait to `min_idle_ms`; JetStream then redelivers idle entries by itself.

        Redeliveries come back through `receive` and `consume` (see `unsupported`), so this returns
        nothing itself.
        """
        check_not_negative("min_idle_ms", min_idle_ms)
        check_positive("count", count)
        check_owner(claims, consumer)
        self._check_open()
        if min_idle_ms > 0:
            await self._streams.set_ack_wait(stream, group, min_idle_ms)
        return Received()

    async def touch(
        self,
        stream: str,
        group: str,
        consumer: str,
        entry_ids: Sequence[str],
        *,
        claims: Claims | None = None,
        message_ids: Sequence[str] = (),
    ) -> None:
        seqs = [s for s in (entry_seq(entry_id) for entry_id in entry_ids) if s > 0]
        self._check_open()
        work = []
        if seqs:
            work.append(self._send_acks([(stream, group, seqs)], b"+WPI"))
        if claims is not None and message_ids:
            work.append(self._kv.renew(claims, message_ids))
        await asyncio.gather(*work)

    async def settle(self, settlement: Settlement) -> None:
        """Records first, then claims, then acknowledgements: a settlement cut short leaves entries
        pending (delivered again, and skipped as done), never acknowledged with a record missing."""
        self._check_open()
        if settlement.is_empty():
            return
        if settlement.records:
            await self._append([(r.stream, encode(r.fields), r.retention) for r in settlement.records])
        claims = settlement.claims
        if claims is not None:
            await asyncio.gather(
                self._kv.mark_done(claims, settlement.done, settlement.done_ms),
                self._kv.release(claims, settlement.released),
            )
        batches = [
            (stream, settlement.group, [s for s in map(entry_seq, ids) if s > 0])
            for stream, ids in settlement.acks.items()
            if ids
        ]
        if batches:
            await self._send_acks(batches, b"+ACK")

    # --- state ------------------------------------------------------------------------------------

    async def pending_count(self, stream: str, group: str) -> int:
        self._check_open()
        info = await self._streams.consumer_info(stream, group)
        return 0 if info is None else int(info.get("num_ack_pending", 0))

    async def length(self, stream: str) -> int:
        self._check_open()
        state = await self._streams.state(stream)
        return 0 if state is None else int(state.get("messages", 0))

    # --- inspection, for operators (bus/ops/inspection.py, bus/nats/inspection.py) ---------------------

    async def list_streams(self, prefix: str) -> list[str]:
        self._check_open()
        return await self._inspection.list_streams(prefix)

    async def stream_info(self, stream: str) -> StreamInfo | None:
        self._check_open()
        return await self._inspection.stream_info(stream)

    async def pending_entry(self, stream: str, group: str, entry_id: str) -> PendingEntry | None:
        """Approximated from the group's ack floor: see bus/nats/inspection.py."""
        parse_entry_id(entry_id)
        self._check_open()
        return await self._inspection.pending_entry(stream, group, entry_id)

    async def id_before_time(self, stream: str, at: datetime) -> str | None:
        self._check_open()
        return await self._inspection.id_before_time(stream, at)

    async def map_set(self, key: str, fields: Mapping[str, str]) -> None:
        self._check_open()
        if fields:
            await self._kv.map_change(key, lambda table: table | dict(fields))

    async def map_remove(self, key: str, *names: str) -> None:
        self._check_open()
        if names:
            gone = set(names)
            await self._kv.map_change(key, lambda table: {k: v for k, v in table.items() if k not in gone})

    async def map_get(self, key: str) -> dict[str, str]:
        self._check_open()
        return await self._kv.map_get(key)

    async def delete(self, *keys: str) -> None:
        self._check_open()
        if not keys:
            return
        await self._streams.delete(list(keys))
        await self._kv.map_purge(keys)

    async def ping(self) -> None:
        """Return when the server answers and has JetStream; raise `BusUnavailable` otherwise."""
        self._check_open()
        with self._link.errors:
            await self._link.api("INFO")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._link.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable(f"the bus on nats at {self.url} is closed")
