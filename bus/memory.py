"""An in-memory bus with the semantics of Redis Streams consumer groups, for one process.

It is the last-resort backend when no Redis is around, and a fast fake in tests. Entries are stored
as wire fields and parsed on delivery, exactly as from Redis, so a message that would not survive the
trip through Redis does not survive this one either.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bus.backend import (
    DONE,
    Claims,
    ClaimStatus,
    Delivery,
    EntryId,
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
from bus.message import AgentMessage, MalformedMessage
from bus.ops.inspection import ConsumerInfo, GroupInfo, PendingEntry, StreamInfo
from engine.errors import BusUnavailable

#: Sweep expired claims once this many were set since the last sweep.
_SWEEP_EVERY = 4096


def _now_ms() -> float:
    return time.monotonic() * 1000


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_ms: float
    deliveries: int


@dataclass(slots=True)
class _Group:
    last_id: EntryId
    # Entries are added in id order (a group's last id only grows), so dict order is the PEL's id order.
    pending: dict[EntryId, _Pending] = field(default_factory=dict)
    #: Entries trimmed away before this group read them, not yet reported by `receive`.
    trimmed: int = 0


@dataclass(slots=True)
class _Stream:
    ids: list[EntryId] = field(default_factory=list)
    entries: dict[EntryId, dict[str, str]] = field(default_factory=dict)
    last_id: EntryId = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    waiting: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, fields: Mapping[str, str], retention: Retention | None) -> EntryId:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self.last_id
        entry_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        self.ids.append(entry_id)
        self.entries[entry_id] = dict(fields)
        self.last_id = entry_id
        if retention is not None:
            self.trim(retention, ms)
        self.wake()
        return entry_id

    def trim(self, retention: Retention, now_ms: int) -> None:
        if retention.maxlen is not None:
            excess = max(0, len(self.ids) - retention.maxlen)
        elif retention.max_age_ms is not None:
            excess = bisect_right(self.ids, (now_ms - retention.max_age_ms - 1, 2**63))
        else:
            excess = 0
        if not excess:
            return
        gone = self.ids[:excess]
        for group in self.groups.values():
            group.trimmed += excess - bisect_right(gone, group.last_id)
        for old in gone:
            del self.entries[old]
        del self.ids[:excess]

    def wake(self) -> None:
        if self.waiting:
            self.wakeup.set()
            self.wakeup = asyncio.Event()


def _format(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def _delivery(
    stream: str, entry_id: EntryId, fields: Mapping[str, str], deliveries: int, status: ClaimStatus = "new"
) -> Delivery:
    try:
        message: AgentMessage | None = AgentMessage.from_fields(fields)
        error = None
    except MalformedMessage as exc:
        message, error = None, str(exc)
    return Delivery(stream, _format(entry_id), message, error, deliveries, status, fields)


class InMemoryBus:
    """Streams, consumer groups, pending lists, claims and blocking reads, kept in this process's memory.

    Trimming is exact here, where Redis trims approximately; both keep at least what retention asks.
    """

    name = "memory"

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._maps: dict[str, dict[str, str]] = {}
        # claim key -> (value, expiry in monotonic ms)
        self._claims: dict[str, tuple[str, float]] = {}
        self._claims_set = 0
        self._closed = False

    async def publish(self, stream: str, message: AgentMessage, *, retention: Retention | None = None) -> str:
        fields = message.to_fields()
        return self._append(stream, fields, retention)

    async def publish_many(
        self, entries: Sequence[tuple[str, AgentMessage]], *, retention: Retention | None = None
    ) -> list[str]:
        checked = [(stream, message.to_fields()) for stream, message in entries]
        self._check_open()
        return [self._append(stream, fields, retention) for stream, fields in checked]

    async def append(
        self, stream: str, fields: Mapping[str, str], *, retention: Retention | None = None
    ) -> str:
        return self._append(stream, fields, retention)

    def _append(self, stream: str, fields: Mapping[str, str], retention: Retention | None) -> str:
        self._check_open()
        return _format(self._streams.setdefault(stream, _Stream()).append(fields, retention))

    async def entries(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        check_positive("count", count)
        start_id = (0, 0) if after is None else parse_entry_id(after)
        self._check_open()
        found = self._streams.get(stream)
        if found is None:
            return []
        start = 0 if after is None else bisect_right(found.ids, start_id)
        return [(_format(i), dict(found.entries[i])) for i in found.ids[start : start + count]]

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        check_start(start)
        self._check_open()
        self._ensure_group(stream, group, start)

    def _ensure_group(self, stream: str, group: str, start: str) -> _Group:
        entries = self._streams.setdefault(stream, _Stream())
        existing = entries.groups.get(group)
        if existing is not None:
            return existing
        last_id = entries.last_id if start == "$" else parse_entry_id(start)
        created = entries.groups[group] = _Group(last_id)
        return created

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int = 10, block_ms: int = 1000
    ) -> list[Delivery]:
        check_positive("count", count)
        check_not_negative("block_ms", block_ms)
        received = await self._receive([stream], group, consumer, count, block_ms, None)
        return received.deliveries

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
        return await self._receive(streams, group, consumer, count, block_ms, claims)

    async def _receive(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        count: int,
        block_ms: int,
        claims: Claims | None,
    ) -> Received:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        received = Received()
        while True:
            self._check_open()
            want = count
            for name in streams:
                if want <= 0:
                    break
                entries = self._streams.get(name)
                if entries is None or group not in entries.groups:
                    self._ensure_group(name, group, "0")
                    entries = self._streams[name]
                found = entries.groups[group]
                if found.trimmed:
                    received.trimmed[name] = received.trimmed.get(name, 0) + found.trimmed
                    found.trimmed = 0
                got = self._read_new(name, entries, found, consumer, want, claims)
                received.deliveries.extend(got)
                want -= len(got)
            remaining = deadline - loop.time()
            if received.deliveries or remaining <= 0:
                return received
            # No await between the reads above and taking the events, so no publish can slip between.
            waits = [self._streams[name] for name in streams]
            wakeups = [asyncio.ensure_future(entries.wakeup.wait()) for entries in waits]
            for entries in waits:
                entries.waiting += 1
            try:
                done, _ = await asyncio.wait(wakeups, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for entries in waits:
                    entries.waiting -= 1
                for wakeup in wakeups:
                    wakeup.cancel()
            if not done:
                return received

    def _read_new(
        self,
        stream: str,
        entries: _Stream,
        group: _Group,
        consumer: str,
        count: int,
        claims: Claims | None,
    ) -> list[Delivery]:
        start = bisect_right(entries.ids, group.last_id)
        batch = entries.ids[start : start + count]
        if not batch:
            return []
        now = _now_ms()
        for entry_id in batch:
            group.pending[entry_id] = _Pending(consumer, now, 1)
        group.last_id = batch[-1]
        return [
            _delivery(stream, i, entries.entries[i], 1, self._claim(claims, entries.entries[i]))
            for i in batch
        ]

    def _claim(self, claims: Claims | None, fields: Mapping[str, str]) -> ClaimStatus:
        message_id = fields.get("id")
        if claims is None or message_id is None:
            return "new"
        key = claims.key(message_id)
        now = _now_ms()
        held = self._claims.get(key)
        if held is None or held[1] <= now:
            self._claims[key] = (claims.owner, now + claims.lease_ms)
            self._claims_set += 1
            if self._claims_set >= _SWEEP_EVERY:
                self._sweep_claims(now)
            return "new"
        if held[0] == DONE:
            return "done"
        if held[0] == claims.owner:
            self._claims[key] = (claims.owner, now + claims.lease_ms)
            return "new"
        return "busy"

    def _sweep_claims(self, now: float) -> None:
        self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
        self._claims_set = 0

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        parsed = [parse_entry_id(entry_id) for entry_id in entry_ids]
        self._check_open()
        return self._ack(stream, group, parsed)

    def _ack(self, stream: str, group: str, entry_ids: Sequence[EntryId]) -> int:
        found = self._group(stream, group)
        if found is None:
            return 0
        return sum(found.pending.pop(entry_id, None) is not None for entry_id in entry_ids)

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
        check_not_negative("min_idle_ms", min_idle_ms)
        check_positive("count", count)
        check_owner(claims, consumer)
        self._check_open()
        received = Received()
        found = self._group(stream, group)
        if found is None:
            return received
        entries = self._streams[stream]
        now = _now_ms()
        gone = 0
        for entry_id, pending in list(found.pending.items()):
            if len(received.deliveries) >= count:
                break
            if now - pending.delivered_ms < min_idle_ms:
                continue
            fields = entries.entries.get(entry_id)
            if fields is None:  # trimmed or deleted: XAUTOCLAIM drops it from the pending list
                del found.pending[entry_id]
                gone += 1
                continue
            pending.consumer, pending.delivered_ms = consumer, now
            pending.deliveries += 1
            received.deliveries.append(
                _delivery(stream, entry_id, fields, pending.deliveries, self._claim(claims, fields))
            )
        if gone:
            received.trimmed[stream] = gone
        return received

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
        parsed = [parse_entry_id(entry_id) for entry_id in entry_ids]
        self._check_open()
        now = _now_ms()
        found = self._group(stream, group)
        if found is not None:
            for entry_id in parsed:
                pending = found.pending.get(entry_id)
                if pending is not None:
                    pending.consumer, pending.delivered_ms = consumer, now
        if claims is not None:
            for message_id in message_ids:
                key = claims.key(message_id)
                held = self._claims.get(key)
                if held is not None and now < held[1] < now + claims.lease_ms:
                    self._claims[key] = (held[0], now + claims.lease_ms)

    async def settle(self, settlement: Settlement) -> None:
        self._check_open()
        for record in settlement.records:
            self._append(record.stream, record.fields, record.retention)
        claims = settlement.claims
        if claims is not None:
            now = _now_ms()
            for message_id in settlement.done:
                self._claims[claims.key(message_id)] = (DONE, now + settlement.done_ms)
            for message_id in settlement.released:
                key = claims.key(message_id)
                held = self._claims.get(key)
                if held is not None and held[0] == claims.owner:
                    del self._claims[key]
        for stream, entry_ids in settlement.acks.items():
            self._ack(stream, settlement.group, [parse_entry_id(i) for i in entry_ids])

    async def pending_count(self, stream: str, group: str) -> int:
        self._check_open()
        found = self._group(stream, group)
        return 0 if found is None else len(found.pending)

    async def length(self, stream: str) -> int:
        self._check_open()
        entries = self._streams.get(stream)
        return 0 if entries is None else len(entries.ids)

    # --- inspection, for operators (bus/ops/inspection.py) --------------------------------------------

    async def list_streams(self, prefix: str) -> list[str]:
        self._check_open()
        return sorted(name for name in self._streams if name.startswith(prefix))

    async def stream_info(self, stream: str) -> StreamInfo | None:
        self._check_open()
        entries = self._streams.get(stream)
        if entries is None:
            return None
        now = _now_ms()
        groups = []
        for name, group in entries.groups.items():
            by_consumer: dict[str, list[_Pending]] = {}
            for pending in group.pending.values():
                by_consumer.setdefault(pending.consumer, []).append(pending)
            consumers = [
                ConsumerInfo(
                    name=consumer,
                    pending=len(held),
                    idle_ms=int(now - max(p.delivered_ms for p in held)),
                )
                for consumer, held in sorted(by_consumer.items())
            ]
            groups.append(
                GroupInfo(
                    name=name,
                    consumers=consumers,
                    pending=len(group.pending),
                    last_delivered_id=_format(group.last_id),
                    lag=len(entries.ids) - bisect_right(entries.ids, group.last_id),
                )
            )
        return StreamInfo(
            stream=stream,
            length=len(entries.ids),
            first_id=_format(entries.ids[0]) if entries.ids else None,
            last_id=_format(entries.ids[-1]) if entries.ids else None,
            groups=groups,
        )

    async def pending_entry(self, stream: str, group: str, entry_id: str) -> PendingEntry | None:
        parsed = parse_entry_id(entry_id)
        self._check_open()
        found = self._group(stream, group)
        pending = None if found is None else found.pending.get(parsed)
        if pending is None:
            return None
        return PendingEntry(
            entry_id=_format(parsed),
            consumer=pending.consumer,
            idle_ms=int(_now_ms() - pending.delivered_ms),
            deliveries=pending.deliveries,
        )

    async def map_set(self, key: str, fields: Mapping[str, str]) -> None:
        self._check_open()
        if fields:
            self._maps.setdefault(key, {}).update(fields)

    async def map_remove(self, key: str, *names: str) -> None:
        self._check_open()
        table = self._maps.get(key)
        if table is not None:
            for name in names:
                table.pop(name, None)
            if not table:
                del self._maps[key]

    async def map_get(self, key: str) -> dict[str, str]:
        self._check_open()
        return dict(self._maps.get(key, {}))

    async def delete(self, *keys: str) -> None:
        self._check_open()
        for name in keys:
            self._maps.pop(name, None)
            entries = self._streams.pop(name, None)
            if entries is not None:
                entries.wake()  # blocked consumers re-check, and recreate their group

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for entries in self._streams.values():
            entries.wake()
        self._streams.clear()
        self._maps.clear()
        self._claims.clear()

    def _group(self, stream: str, group: str) -> _Group | None:
        entries = self._streams.get(stream)
        return None if entries is None else entries.groups.get(group)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")
