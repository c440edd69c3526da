"""The private redis-server launcher, and how `connect_bus` picks a backend."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from bus import IN_MEMORY_WARNING, InMemoryBus, RedisBus, connect_bus
from bus.redis.server import SOCKET_PATH_LIMIT, PrivateRedis, redis_server_binary, socket_path_for
from engine.errors import BusUnavailable, ConfigError
from tests.servers import free_port

needs_redis_server = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")


@needs_redis_server
@pytest.mark.server  # starts a redis-server
def test_private_redis_starts_is_reused_and_stops(tmp_path: Path) -> None:
    first = PrivateRedis(tmp_path)
    second = PrivateRedis(tmp_path)
    try:
        first.start()
        assert first.answers()
        assert first.started
        assert not first.reused
        assert first.url == f"unix://{tmp_path.resolve()}/redis.sock"
        assert stat.S_IMODE(first.socket_path.stat().st_mode) == 0o700
        assert (tmp_path / "redis.pid").read_text().strip().isdigit()

        second.start()
        assert second.reused
        assert not second.started
        assert second.url == first.url

        second.stop()  # a reused server is not this instance's to stop
        assert first.answers()
        first.stop()
        assert not first.answers()
        assert not first.socket_path.exists()
    finally:
        first.stop()
        second.stop()


@needs_redis_server
@pytest.mark.server  # starts a redis-server
def test_private_redis_restarts_after_a_stop(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path) as server:
        assert server.answers()
    assert not server.answers()
    with PrivateRedis(tmp_path) as again:
        assert again.answers()
        assert not again.reused


@needs_redis_server
@pytest.mark.server  # starts a redis-server
def test_private_redis_in_a_deep_folder_puts_its_socket_in_tmp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = socket_path_for(deep)
    assert len(os.fsencode(path)) <= SOCKET_PATH_LIMIT
    assert path.name == "redis.sock"
    assert deep.resolve() not in path.parents
    assert socket_path_for(deep) == path  # stable, so a later process finds the same server

    with PrivateRedis(deep) as server:
        assert server.answers()
        assert (deep / "redis.log").exists()
    assert not path.exists()


def test_private_redis_without_the_binary_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="redis-server is not installed"):
        PrivateRedis(tmp_path).start()


@pytest.mark.server  # starts a process
def test_private_redis_that_exits_at_start_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text('#!/bin/sh\necho \'FATAL: cannot start\' > "$(dirname "$0")/redis.log"\nexit 3\n')
    fake.chmod(0o755)
    with pytest.raises(BusUnavailable, match="exited with code 3 at start: FATAL: cannot start"):
        PrivateRedis(tmp_path, binary=str(fake)).start()


async def test_connect_bus_with_a_url_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BusUnavailable, match=f"Redis at {url} does not answer.*unset the Redis URL"):
        await connect_bus(url, tmp_path)


async def test_connect_bus_with_a_bad_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a Redis URL"):
        await connect_bus("localhost:6379", tmp_path)


async def test_connect_bus_uses_the_configured_redis(redis_url: str, tmp_path: Path) -> None:
    bus, description, server = await connect_bus(redis_url, tmp_path)
    try:
        assert isinstance(bus, RedisBus)
        assert server is None
        assert description.startswith("redis at ")
        await bus.ping()
    finally:
        await bus.close()
    assert not (tmp_path / "redis.sock").exists()


@needs_redis_server
@pytest.mark.server  # starts a redis-server
async def test_connect_bus_without_a_url_starts_a_private_server(tmp_path: Path) -> None:
    bus, description, server = await connect_bus(None, tmp_path)
    assert server is not None
    try:
        assert isinstance(bus, RedisBus)
        assert description == f"private redis-server at {server.url} (started)"
        await bus.ping()
        again, described, reused = await connect_bus("", tmp_path)
        assert described.endswith("(reused)")
        assert reused is not None
        await again.close()
        reused.stop()
        await bus.ping()
    finally:
        await bus.close()
        server.stop()


async def test_connect_bus_falls_back_to_memory_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to be found
    with caplog.at_level(logging.WARNING, logger="roundtable.bus"):
        bus, description, server = await connect_bus(None, tmp_path)
    assert isinstance(bus, InMemoryBus)
    assert server is None
    assert description == "in-memory bus"
    assert IN_MEMORY_WARNING in caplog.text
    await bus.close()
