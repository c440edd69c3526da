"""Bus fixtures: a private redis-server for the session, and a `bus` fixture over both backends.

Set REDIS_URL to run the Redis half of the suite on another server instead; tests only touch keys
under a fresh prefix, and delete them afterwards, so a shared server keeps its data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from bus.backend import Bus
from bus.memory import InMemoryBus
from bus.redis_server import PrivateRedis, redis_server_binary
from bus.redis_streams import RedisBus

BACKENDS = ["memory", "redis"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the whole test session: REDIS_URL, or a private redis-server."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    if redis_server_binary() is None:
        message = "redis-server is not installed and REDIS_URL is not set"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the Redis half, not skip it quietly
        pytest.skip(message)
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"rt:{{test-{uuid.uuid4().hex[:12]}}}:"


@pytest.fixture
def new_stream(prefix: str) -> Callable[..., str]:
    """Names streams under this test's prefix."""

    def name(suffix: str = "s") -> str:
        return prefix + suffix

    return name


@pytest.fixture(params=BACKENDS)
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Bus]:
    """Each backend in turn; the contract suite runs once per backend."""
    backend: Bus
    if request.param == "memory":
        backend = InMemoryBus()
        yield backend
        await backend.close()
        return
    url: str = request.getfixturevalue("redis_url")
    backend = RedisBus(url)
    yield backend
    await backend.close()
    await _delete_prefix(url, prefix)


async def _delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
