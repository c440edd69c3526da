"""redis-py errors mapped to ours in one place, and the small helpers every Redis module shares."""

from __future__ import annotations

from types import TracebackType

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.errors import BusUnavailable


class RedisErrors:
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


def describe(client: Redis) -> str:
    """Where a client points, as a URL without a password."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def text(value: bytes | str) -> str:
    """A reply value as text, whichever `decode_responses` the client was made with."""
    return value.decode() if isinstance(value, bytes) else value
