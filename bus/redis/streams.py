"""The bus on Redis Streams, through redis-py's asyncio client.

Every redis-py error is turned into `BusUnavailable` in one place, `RedisErrors`, so callers never
see a traceback from inside redis-py, and every message names the server (without its password).

Connections: a blocking XREADGROUP holds a connection for up to `block_ms`, so the pool waits for a
free connection instead of failing when all are busy, and reads block for at most `MAX_BLOCK_MS`,
safely below the socket timeout that detects a server that hangs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ResponseError

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
from bus.message import AgentMessage, MalformedMessage
from bus.ops.inspection import ConsumerInfo, GroupInfo, PendingEntry, StreamInfo
from bus.redis import scripts as redis_scripts
from bus.redis.codec import with_hiredis_packing
from bus.redis.errors import RedisErrors, describe, text
from bus.urls import redact_url
from engine.errors import BusUnavailable, ConfigError

#: Connections per bus; blocked consumers each hold one while they wait.
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds to wait for a free pooled connection before reporting the bus unavailable.
POOL_WAIT_S = 30.0
SOCKET_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
#: Messages per publish script call: bounds the script's run (Redis serves nobody else meanwhile).
_PUBLISH_CHUNK = 500
#: Longest a single XREADGROUP blocks; longer `block_ms` return [] sooner, as the contract allows.
MAX_BLOCK_MS = 10_000


def _is_nogroup(exc: ResponseError) -> bool:
    return "NOGROUP" in str(exc)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """A flat [name, value, ...] reply as a dict; one iterator read in pairs, without two slices."""
    names = iter(flat)
    return dict(zip(names, names, strict=False))


def _delivery(
    stream: str,
    entry_id: str,
    fields: Mapping[str, str] | None,
    deliveries: int,
    status: ClaimStatus = "new",
) -> Delivery:
    if fields is None:
        return Delivery(stream, entry_id, None, "the entry was deleted from the stream", deliveries, status)
    try:
        return Delivery(stream, entry_id, AgentMessage.from_fields(fields), None, deliveries, status, fields)
    except MalformedMessage as exc:
        return Delivery(stream, entry_id, None, str(exc), deliveries, status, fields)


def _trim_args(retention: Retention | None) -> dict[str, Any]:
    """XADD's trimming arguments: MAXLEN ~ n, or MINID ~ (now - age)."""
    if retention is None:
        return {}
    if retention.maxlen is not None:
        return {"maxlen": retention.maxlen, "approximate": True}
    if retention.max_age_ms is not None:
        return {"minid": f"{int(time.time() * 1000) - retention.max_age_ms}-0", "approximate": True}
    return {}


def _trim_kind(retention: Retention | None) -> tuple[str, str | int]:
    """A script's trimming arguments: ("MAXLEN", n), ("MINID", id) or ("", "")."""
    trim = _trim_args(retention)
    if "maxlen" in trim:
        return "MAXLEN", trim["maxlen"]
    if "minid" in trim:
        return "MINID", trim["minid"]
    return "", ""


def _claim_args(claims: Claims | None) -> list[str | int]:
    return ["", 0] if claims is None else [claims.scope, claims.lease_ms]


def _read_entries(reply: Any, stream: str) -> list[tuple[str, dict[str, str] | None]]:
    """The entries of one stream in an XREADGROUP reply, in RESP2 or RESP3 shape."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [[(id, fields), ...]]}
        entries: list[Any] = reply.get(stream) or []
        if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], tuple):
            entries = entries[0]
        return entries
    result: list[tuple[str, dict[str, str] | None]] = reply[0][1]  # RESP2: [[stream, [(id, fields)]]]
    return result


class RedisBus:
    """The bus on a Redis server (5.0 or later; `reclaim` needs 6.2).

    Args:
        url_or_client: a Redis URL (`redis://`, `rediss://`, `unix://`), or a `redis.asyncio.Redis`
            client made with `decode_responses=True`. A client passed in stays the caller's to close.
        max_connections: size of the pool made from a URL.

    Raises:
        ConfigError: the URL is not a Redis URL.
    """

    name = "redis"

    def __init__(self, url_or_client: str | Redis, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if isinstance(url_or_client, str):
            self.url = redact_url(url_or_client)
            try:
                pool = BlockingConnectionPool.from_url(
                    url_or_client,
                    decode_responses=True,
                    max_connections=max_connections,
                    timeout=POOL_WAIT_S,
                    socket_timeout=SOCKET_TIMEOUT_S,
                    socket_connect_timeout=CONNECT_TIMEOUT_S,
                    # A few quick retries ride out a blip; a server that is gone fails within a second.
                    retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), retries=3),
                )
            except ValueError as exc:
                raise ConfigError(
                    f"{self.url!r} is not a Redis URL ({exc}); use redis://host:port/db, "
                    "rediss://host:port/db or unix:///path/to/redis.sock"
                ) from None
            self._client: Redis = Redis.from_pool(with_hiredis_packing(pool))
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
            self.url = describe(url_or_client)
        self._errors = RedisErrors(self.url)
        self._receive_script = self._client.register_script(redis_scripts.RECEIVE)
        self._reclaim_script = self._client.register_script(redis_scripts.RECLAIM)
        self._settle_script = self._client.register_script(redis_scripts.SETTLE)
        self._publish_script = self._client.register_script(redis_scripts.PUBLISH)
        self._closed = False

    @property
    def client(self) -> Redis:
        """The redis-py client under this bus, for Redis-only helpers such as `RedisRateLimiter`."""
        return self._client

    async def publish(self, stream: str, message: AgentMessage, *, retention: Retention | None = None) -> str:
        fields = message.to_fields()
        self._check_open()
        with self._errors:
            entry_id = await self._client.xadd(stream, fields, **_trim_args(retention))  # type: ignore[arg-type]
        return text(entry_id)

    async def publish_many(
        self, entries: Sequence[tuple[str, AgentMessage]], *, retention: Retention | None = None
    ) -> list[str]:
        checked = [(stream, message.to_fields()) for stream, message in entries]
        self._check_open()
        if not checked:
            return []
        kind, value = _trim_kind(retention)
        entry_ids: list[str] = []
        with self._errors:
            for start in range(0, len(checked), _PUBLISH_CHUNK):
                chunk = checked[start : start + _PUBLISH_CHUNK]
                args: list[str | int] = [kind, value]
                for _, fields in chunk:
                    args += [fields["v"], fields["id"], fields["type"], fields["msg"]]
                replies = await self._publish_script(
                    keys=[stream for stream, _ in chunk], args=args, client=self._client
                )
                entry_ids += [text(entry_id) for entry_id in replies]
        return entry_ids

    async def append(
        self, stream: str, fields: Mapping[str, str], *, retention: Retention | None = None
    ) -> str:
        self._check_open()
        with self._errors:
            entry_id = await self._client.xadd(stream, dict(fields), **_trim_args(retention))  # type: ignore[arg-type]
        return text(entry_id)

    async def entries(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        check_positive("count", count)
        if after is not None:
            parse_entry_id(after)
        self._check_open()
        with self._errors:
            reply = await self._client.xrange(stream, "-" if after is None else f"({after}", "+", count=count)
        rows: list[Any] = reply or []
        return [(text(entry_id), dict(fields)) for entry_id, fields in rows]

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        check_start(start)
        self._check_open()
        with self._errors:
            await self._create_group(stream, group, start)

    async def _create_group(self, stream: str, group: str, start: str) -> None:
        try:
            await self._client.xgroup_create(stream, group, start, mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int = 10, block_ms: int = 1000
    ) -> list[Delivery]:
        check_positive("count", count)
        check_not_negative("block_ms", block_ms)
        self._check_open()
        # BLOCK 0 would wait forever in Redis; ours means "do not wait", which is no BLOCK at all.
        block = min(block_ms, MAX_BLOCK_MS) or None
        with self._errors:
            try:
                reply = await self._client.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=block
                )
            except ResponseError as exc:
                if not _is_nogroup(exc):
                    raise
                await self._create_group(stream, group, "0")
                reply = await self._client.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=block
                )
        return [_delivery(stream, entry_id, fields, 1) for entry_id, fields in _read_entries(reply, stream)]

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
        received, marks = await self._receive_once(streams, group, consumer, count, claims)
        if received.deliveries or not block_ms:
            return received
        # Nothing waiting: block until any stream has an entry past its group's last delivered id,
        # then read once more (another consumer may have taken it: [] is then the answer).
        with self._errors:
            await self._client.xread(
                dict(zip(streams, marks, strict=True)), count=1, block=min(block_ms, MAX_BLOCK_MS)
            )
        again, _ = await self._receive_once(streams, group, consumer, count, claims)
        for stream, lost in received.trimmed.items():
            again.trimmed[stream] = again.trimmed.get(stream, 0) + lost
        return again

    async def _receive_once(
        self, streams: Sequence[str], group: str, consumer: str, count: int, claims: Claims | None
    ) -> tuple[Received, list[str]]:
        with self._errors:
            entries, trimmed, marks = await self._receive_script(
                keys=list(streams),
                args=[group, consumer, count, *_claim_args(claims)],
                client=self._client,
            )
        received = Received(
            [
                _delivery(streams[int(index) - 1], entry_id, _pairs(flat), 1, status)
                for index, entry_id, flat, status in entries
            ]
        )
        for index, lost in zip(trimmed[::2], trimmed[1::2], strict=True):
            received.trimmed[streams[int(index) - 1]] = int(lost)
        return received, [text(mark) for mark in marks]

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        for entry_id in entry_ids:
            parse_entry_id(entry_id)
        self._check_open()
        if not entry_ids:
            return 0
        with self._errors:
            acked: int = await self._client.xack(stream, group, *entry_ids)
        return acked

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
        with self._errors:
            try:
                claimed, gone = await self._reclaim_script(
                    keys=[stream],
                    args=[group, consumer, min_idle_ms, count, *_claim_args(claims)],
                    client=self._client,
                )
            except ResponseError as exc:
                if _is_nogroup(exc):
                    return Received()
                raise
        received = Received(
            [
                _delivery(stream, entry_id, _pairs(flat), int(n), status)
                for entry_id, flat, n, status in claimed
            ]
        )
        if gone:
            received.trimmed[stream] = int(gone)
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
        for entry_id in entry_ids:
            parse_entry_id(entry_id)
        self._check_open()
        if not entry_ids and not message_ids:
            return
        with self._errors:
            async with self._client.pipeline(transaction=False) as pipe:
                if entry_ids:
                    # JUSTID: the idle time restarts, the delivery count does not grow.
                    pipe.xclaim(stream, group, consumer, 0, list(entry_ids), justid=True)
                if claims is not None:
                    for message_id in message_ids:
                        # GT: a claim settled meanwhile keeps its longer done mark.
                        pipe.pexpire(claims.key(message_id), claims.lease_ms, gt=True)
                try:
                    await pipe.execute()
                except ResponseError as exc:
                    if not _is_nogroup(exc):
                        raise

    async def settle(self, settlement: Settlement) -> None:
        self._check_open()
        if settlement.is_empty():
            return
        claims = settlement.claims
        done = [claims.key(m) for m in settlement.done] if claims is not None else []
        released = [claims.key(m) for m in settlement.released] if claims is not None else []
        acks = [(stream, list(ids)) for stream, ids in settlement.acks.items() if ids]
        args: list[str | int] = [
            settlement.done_ms,
            claims.owner if claims is not None else "",
            settlement.group,
            len(done),
            len(released),
            len(acks),
            len(settlement.records),
        ]
        for _, entry_ids in acks:
            args += [len(entry_ids), *entry_ids]
        for record in settlement.records:
            kind, value = _trim_kind(record.retention)
            flat = [part for pair in record.fields.items() for part in pair]
            args += [kind, value, len(flat), *flat]
        keys = [*done, *released, *(stream for stream, _ in acks), *(r.stream for r in settlement.records)]
        with self._errors:
            await self._settle_script(keys=keys, args=args, client=self._client)

    async def pending_count(self, stream: str, group: str) -> int:
        self._check_open()
        with self._errors:
            try:
                summary = await self._client.xpending(stream, group)
            except ResponseError as exc:
                if _is_nogroup(exc):
                    return 0
                raise
        return int(summary["pending"])

    async def length(self, stream: str) -> int:
        self._check_open()
        with self._errors:
            size: int = await self._client.xlen(stream)
        return size

    # --- inspection, for operators (bus/ops/inspection.py) --------------------------------------------

    async def list_streams(self, prefix: str) -> list[str]:
        self._check_open()
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        with self._errors:
            found = {
                text(key) async for key in self._client.scan_iter(match=pattern, count=1000, _type="stream")
            }
        return sorted(found)

    async def stream_info(self, stream: str) -> StreamInfo | None:
        self._check_open()
        with self._errors:
            try:
                info = await self._client.xinfo_stream(stream)
                groups = await self._client.xinfo_groups(stream)
            except ResponseError as exc:
                if "no such key" in str(exc):  # absent, or deleted between the two calls
                    return None
                raise
            async with self._client.pipeline(transaction=False) as pipe:
                for group in groups:
                    pipe.xinfo_consumers(stream, group["name"])
                consumers = await pipe.execute() if groups else []
        first, last = info.get("first-entry"), info.get("last-entry")
        return StreamInfo(
            stream=stream,
            length=int(info["length"]),
            first_id=text(first[0]) if first else None,
            last_id=text(last[0]) if last else None,
            groups=[
                GroupInfo(
                    name=text(group["name"]),
                    consumers=[
                        ConsumerInfo(name=text(c["name"]), pending=int(c["pending"]), idle_ms=int(c["idle"]))
                        for c in members
                    ],
                    pending=int(group["pending"]),
                    last_delivered_id=text(group["last-delivered-id"]),
                    lag=None if group.get("lag") is None else int(group["lag"]),
                )
                for group, members in zip(groups, consumers, strict=True)
            ],
        )

    async def pending_entry(self, stream: str, group: str, entry_id: str) -> PendingEntry | None:
        parse_entry_id(entry_id)
        self._check_open()
        with self._errors:
            try:
                rows = await self._client.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
            except ResponseError as exc:
                if _is_nogroup(exc):
                    return None
                raise
        if not rows:
            return None
        row = rows[0]
        return PendingEntry(
            entry_id=str(row["message_id"]),
            consumer=str(row["consumer"]),
            idle_ms=int(row["time_since_delivered"]),
            deliveries=int(row["times_delivered"]),
        )

    async def map_set(self, key: str, fields: Mapping[str, str]) -> None:
        self._check_open()
        if fields:
            with self._errors:
                await self._client.hset(key, mapping=dict(fields))  # type: ignore[arg-type]

    async def map_remove(self, key: str, *names: str) -> None:
        self._check_open()
        if names:
            with self._errors:
                await self._client.hdel(key, *names)

    async def map_get(self, key: str) -> dict[str, str]:
        self._check_open()
        with self._errors:
            table = await self._client.hgetall(key)
        return {text(name): text(value) for name, value in table.items()}

    async def delete(self, *keys: str) -> None:
        self._check_open()
        if keys:
            with self._errors:
                await self._client.delete(*keys)

    async def ping(self) -> None:
        self._check_open()
        with self._errors:
            await self._client.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with self._errors:
                await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable(f"the bus on redis at {self.url} is closed")
