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
    Delivery,
    EntryId,
    check_not_negative,
    check_positive,
    check_start,
    parse_entry_id,
)
from bus.message import AgentMessage, MalformedMessage
from engine.errors import BusUnavailable


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


@dataclass(slots=True)
class _Stream:
    ids: list[EntryId] = field(default_factory=list)
    entries: dict[EntryId, dict[str, str]] = field(default_factory=dict)
    last_id: EntryId = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    waiting: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, fields: Mapping[str, str], maxlen: int | None) -> EntryId:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self.last_id
        entry_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        self.ids.append(entry_id)
        self.entries[entry_id] = dict(fields)
        self.last_id = entry_id
        if maxlen is not None and len(self.ids) > maxlen:
            excess = len(self.ids) - maxlen
            for old in self.ids[:excess]:
                del self.entries[old]
            del self.ids[:excess]
        self.wake()
        return entry_id

    def wake(self) -> None:
        if self.waiting:
            self.wakeup.set()
            self.wakeup = asyncio.Event()


def _format(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def _delivery(stream: str, entry_id: EntryId, fields: Mapping[str, str], deliveries: int) -> Delivery:
    try:
        message: AgentMessage | None = AgentMessage.from_fields(fields)
        error = None
    except MalformedMessage as exc:
        message, error = None, str(exc)
    return Delivery(stream, _format(entry_id), message, error, deliveries)


class InMemoryBus:
    """Streams, consumer groups, pending lists and blocking reads, kept in this process's memory.

    Trimming by `maxlen` is exact here, where Redis trims approximately; both keep at least `maxlen`.
    """

    name = "memory"

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    async def publish(self, stream: str, message: AgentMessage, *, maxlen: int | None = None) -> str:
        fields = message.to_fields()
        return self._append(stream, fields, maxlen)

    async def _publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        """Append fields as they are, skipping the message checks (tests write malformed entries)."""
        return self._append(stream, fields, None)

    def _append(self, stream: str, fields: Mapping[str, str], maxlen: int | None) -> str:
        self._check_open()
        if maxlen is not None:
            check_not_negative("maxlen", maxlen)
        return _format(self._streams.setdefault(stream, _Stream()).append(fields, maxlen))

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            self._check_open()
            entries = self._streams.get(stream)
            if entries is None or group not in entries.groups:
                self._ensure_group(stream, group, "0")
                entries = self._streams[stream]
            got = self._read_new(stream, entries, entries.groups[group], consumer, count)
            remaining = deadline - loop.time()
            if got or remaining <= 0:
                return got
            # No await between the read above and taking the event, so no publish can slip between.
            wakeup = entries.wakeup
            entries.waiting += 1
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return []
            finally:
                entries.waiting -= 1

    def _read_new(
        self, stream: str, entries: _Stream, group: _Group, consumer: str, count: int
    ) -> list[Delivery]:
        start = bisect_right(entries.ids, group.last_id)
        batch = entries.ids[start : start + count]
        if not batch:
            return []
        now = _now_ms()
        for entry_id in batch:
            group.pending[entry_id] = _Pending(consumer, now, 1)
        group.last_id = batch[-1]
        return [_delivery(stream, entry_id, entries.entries[entry_id], 1) for entry_id in batch]

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        parsed = [parse_entry_id(entry_id) for entry_id in entry_ids]
        self._check_open()
        found = self._group(stream, group)
        if found is None:
            return 0
        return sum(found.pending.pop(entry_id, None) is not None for entry_id in parsed)

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[Delivery]:
        check_not_negative("min_idle_ms", min_idle_ms)
        check_positive("count", count)
        self._check_open()
        found = self._group(stream, group)
        if found is None:
            return []
        entries = self._streams[stream]
        now = _now_ms()
        claimed: list[Delivery] = []
        for entry_id, pending in list(found.pending.items()):
            if len(claimed) >= count:
                break
            if now - pending.delivered_ms < min_idle_ms:
                continue
            fields = entries.entries.get(entry_id)
            if fields is None:  # trimmed or deleted: XAUTOCLAIM drops it from the pending list
                del found.pending[entry_id]
                continue
            pending.consumer, pending.delivered_ms = consumer, now
            pending.deliveries += 1
            claimed.append(_delivery(stream, entry_id, fields, pending.deliveries))
        return claimed

    async def pending_count(self, stream: str, group: str) -> int:
        self._check_open()
        found = self._group(stream, group)
        return 0 if found is None else len(found.pending)

    async def length(self, stream: str) -> int:
        self._check_open()
        entries = self._streams.get(stream)
        return 0 if entries is None else len(entries.ids)

    async def delete(self, *streams: str) -> None:
        self._check_open()
        for name in streams:
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

    def _group(self, stream: str, group: str) -> _Group | None:
        entries = self._streams.get(stream)
        return None if entries is None else entries.groups.get(group)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")
