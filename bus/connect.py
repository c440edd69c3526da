"""Choosing the bus: the configured Redis or NATS, else a private redis-server, else (warning) memory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bus.backend import Bus
from bus.memory import InMemoryBus
from bus.redis_server import PrivateRedis, redis_server_binary
from bus.redis_streams import RedisBus, redact_url
from engine.errors import BusUnavailable

log = logging.getLogger("roundtable.bus")

#: A Redis URL that asks for the in-memory bus on purpose (one process, nothing survives it).
MEMORY_URL = "memory://"
#: URL schemes that choose the NATS JetStream bus.
NATS_SCHEMES = ("nats://", "tls://")
IN_MEMORY_WARNING = "no Redis found; using the in-memory bus, so agents must run in this process"


async def connect_bus(redis_url: str | None, data_dir: Path) -> tuple[Bus, str, PrivateRedis | None]:
    """The bus to use, a description of it for people, and the private server to stop at shutdown.

    Args:
        redis_url: the configured Redis; when set it must answer, since silently falling back would
            split agents that were meant to share it. `memory://` chooses the in-memory bus, and
            `nats://host:4222` (or `tls://`) the NATS JetStream bus.
        data_dir: where a private redis-server keeps its socket, pid file and log.

    Raises:
        BusUnavailable: `redis_url` does not answer, or the private server does not start.
        ConfigError: `redis_url` is not a Redis URL.
    """
    if redis_url == MEMORY_URL:
        return InMemoryBus(), "in-memory bus (chosen)", None
    if redis_url and redis_url.startswith(NATS_SCHEMES):
        return await _connect_nats(redis_url), f"nats jetstream at {redact_url(redis_url)}", None
    if redis_url:
        bus = RedisBus(redis_url)
        try:
            await bus.ping()
        except BusUnavailable as exc:
            await bus.close()
            reason = exc.__cause__ or exc
            raise BusUnavailable(
                f"Redis at {bus.url} does not answer ({' '.join(str(reason).split())}); "
                "start it there, or unset the Redis URL to use a private redis-server"
            ) from exc
        return bus, f"redis at {bus.url}", None
    if redis_server_binary() is not None:
        server = PrivateRedis(data_dir)
        await asyncio.to_thread(server.start)
        private = RedisBus(server.url)
        try:
            await private.ping()
        except BusUnavailable:
            await private.close()
            await asyncio.to_thread(server.stop)
            raise
        how = "reused" if server.reused else "started"
        return private, f"private redis-server at {server.url} ({how})", server
    log.warning("roundtable.bus_in_memory %s", IN_MEMORY_WARNING)
    return InMemoryBus(), "in-memory bus", None


async def _connect_nats(url: str) -> Bus:
    from bus.nats_jetstream import NatsBus  # only deployments that chose NATS pay for importing nats-py

    bus = NatsBus(url)
    try:
        await bus.ping()
    except BusUnavailable as exc:
        await bus.close()
        reason = exc.__cause__ or exc
        raise BusUnavailable(
            f"NATS at {bus.url} does not answer ({' '.join(str(reason).split())}); start it there with "
            "JetStream on (nats-server -js), or unset the bus URL to use a private redis-server"
        ) from exc
    return bus
