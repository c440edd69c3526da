"""Bus fixtures: a private redis-server and nats-server for the session, and a `bus` fixture over
every backend.

Set REDIS_URL (NATS_URL) to run the Redis (NATS) part of the suite on another server instead; tests
only touch keys under a fresh prefix, and delete them afterwards, so a shared server keeps its data.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import nats
import pytest
from redis.asyncio import Redis

from bus import Bus, InMemoryBus, NatsBus, RedisBus
from bus.nats.names import CLAIMS_BUCKET, MAPS_BUCKET, workspace_subjects
from bus.redis.server import PrivateRedis, redis_server_binary
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
        await _delete_nats_prefix(server, prefix)
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


async def _delete_nats_prefix(url: str, prefix: str) -> None:
    """Delete the streams and KV keys of the test's workspace (`rt:{test-...}:` is the workspace)."""
    subjects = workspace_subjects(prefix.split("{")[1].split("}")[0])
    client = await nats.connect(url)
    try:
        names = await client.request("$JS.API.STREAM.NAMES", json.dumps({"subject": subjects}).encode())
        for name in json.loads(names.data).get("streams") or []:
            await client.request(f"$JS.API.STREAM.DELETE.{name}", b"")
        for bucket in (CLAIMS_BUCKET, MAPS_BUCKET):
            purge = json.dumps({"filter": f"$KV.{bucket}.{subjects}"}).encode()
            await client.request(f"$JS.API.STREAM.PURGE.KV_{bucket}", purge)
    finally:
        await client.close()
