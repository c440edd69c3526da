"""Bus fixtures: a private redis-server and nats-server for the session, and a `bus` fixture over
every backend.

Set REDIS_URL (NATS_URL) to run the Redis (NATS) part of the suite on another server instead; tests
only touch keys under a fresh prefix, and delete them afterwards, so a shared server keeps its data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bus import Bus, InMemoryBus, NatsBus, RedisBus
from bus.redis.server import PrivateRedis, redis_server_binary
from tests.helpers import delete_nats_prefix, delete_redis_prefix, workspace_of
from tests.servers import NatsProcess, nats_server_binary

BACKENDS = ["memory", "redis", "nats"]


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


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server with JetStream for the whole test session: NATS_URL, or a private nats-server."""
    configured = os.environ.get("NATS_URL")
    if configured:
        yield configured
        return
    if nats_server_binary() is None:
        message = "nats-server is not installed and NATS_URL is not set"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = NatsProcess(tmp_path_factory.mktemp("nats")).start()
    yield server.url
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"rt:{{test-{uuid.uuid4().hex[:12]}}}:"


@pytest.fixture
def workspace(prefix: str) -> str:
    """The workspace named by the test's prefix: its keys are deleted with the prefix's."""
    return workspace_of(prefix)


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
    if request.param == "nats":
        server: str = request.getfixturevalue("nats_url")
        backend = NatsBus(server)
        yield backend
        await backend.close()
        await delete_nats_prefix(server, prefix)
        return
    url: str = request.getfixturevalue("redis_url")
    backend = RedisBus(url)
    yield backend
    await backend.close()
    await delete_redis_prefix(url, prefix)
