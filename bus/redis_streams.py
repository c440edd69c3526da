"""The bus on Redis Streams, through redis-py's asyncio client.

Every redis-py error is turned into `BusUnavailable` in one place, `_RedisErrors`, so callers never
see a traceback from inside redis-py, and every message names the server (without its password).

Connections: a blocking XREADGROUP holds a connection for up to `block_ms`, so the pool waits for a
free connection instead of failing when all are busy, and reads block for at most `MAX_BLOCK_MS`,
safely below the socket timeout that detects a server that hangs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError, ResponseError

from bus.backend import Delivery, check_not_negative, check_positive, check_start, parse_entry_id
from bus.message import AgentMessage, MalformedMessage
from engine.errors import BusUnavailable, ConfigError

#: Connections per bus; blocked consumers each hold one while they wait.
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds to wait for a free pooled connection before reporting the bus unavailable.
POOL_WAIT_S = 30.0
SOCKET_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
#: Longest a single XREADGROUP blocks; longer `block_ms` return [] sooner, as the contract allows.
MAX_BLOCK_MS = 10_000

# XAUTOCLAIM does not return delivery counts, so the script reads each claimed entry's count with
# XPENDING in the same atomic step: one round trip, and no other consumer can claim in between.
# It follows the XAUTOCLAIM cursor until `count` entries are claimed or the pending list is scanned.
_RECLAIM = """
local cursor = '0-0'
local count = tonumber(ARGV[4])
local claimed = {}
repeat
  local reply = redis.call(
    'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', count - #claimed)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if entry then
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
      local deliveries = 1
      if pending[1] then deliveries = pending[1][4] end
      claimed[#claimed + 1] = {entry[1], entry[2], deliveries}
    end
  end
until cursor == '0-0' or #claimed >= count
return claimed
"""


class _RedisErrors:
    """Re-raises redis-py errors (and socket errors) as `BusUnavailable`, naming the server.

    A plain context manager works around awaits, the way httpx's `map_httpcore_exceptions` does.
    """

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, RedisError | OSError):
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise BusUnavailable(f"redis at {self._where} failed: {detail}") from exc


def redact_url(url: str) -> str:
    """The URL without its password or query string, fit for logs and error messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:***@{host}" if ":" in user else f"{name}@{host}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _describe(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_nogroup(exc: ResponseError) -> bool:
    return "NOGROUP" in str(exc)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _delivery(stream: str, entry_id: str, fields: Mapping[str, str] | None, deliveries: int) -> Delivery:
    if fields is None:
        return Delivery(stream, entry_id, None, "the entry was deleted from the stream", deliveries)
    try:
        return Delivery(stream, entry_id, AgentMessage.from_fields(fields), None, deliveries)
    except MalformedMessage as exc:
        return Delivery(stream, entry_id, None, str(exc), deliveries)


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
            self._client: Redis = Redis.from_pool(pool)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
            self.url = _describe(url_or_client)
        self._errors = _RedisErrors(self.url)
        self._reclaim_script = self._client.register_script(_RECLAIM)
        self._closed = False

    async def publish(self, stream: str, message: AgentMessage, *, maxlen: int | None = None) -> str:
        fields = message.to_fields()
        if maxlen is not None:
            check_not_negative("maxlen", maxlen)
        self._check_open()
        with self._errors:
            entry_id = await self._client.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        return _text(entry_id)

    async def _publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        """Append fields as they are, skipping the message checks (tests write malformed entries)."""
        self._check_open()
        with self._errors:
            entry_id = await self._client.xadd(stream, dict(fields))  # type: ignore[arg-type]
        return _text(entry_id)

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
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[Delivery]:
        check_not_negative("min_idle_ms", min_idle_ms)
        check_positive("count", count)
        self._check_open()
        with self._errors:
            try:
                claimed = await self._reclaim_script(
                    keys=[stream], args=[group, consumer, min_idle_ms, count], client=self._client
                )
            except ResponseError as exc:
                if _is_nogroup(exc):
                    return []
                raise
        return [_delivery(stream, entry_id, _pairs(flat), int(n)) for entry_id, flat, n in claimed]

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

    async def delete(self, *streams: str) -> None:
        self._check_open()
        if streams:
            with self._errors:
                await self._client.delete(*streams)

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
