"""Choosing the bus. `open_bus(url)` is the one place where a URL picks a backend; `connect_bus` adds the
embedded default: the configured bus must answer, else a private redis-server, else (warning) memory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bus.backend import Bus
from bus.memory import InMemoryBus
from bus.urls import redact_url
from engine.errors import BusUnavailable

if TYPE_CHECKING:
    from bus.redis.server import PrivateRedis

log = logging.getLogger("roundtable.bus")

#: A Redis URL that asks for the in-memory bus on purpose (one process, nothing survives it).
MEMORY_URL = "memory://"
#: URL schemes that choose the NATS JetStream bus.
NATS_SCHEMES = ("nats://", "tls://")
IN_MEMORY_WARNING = "no Redis found; using the in-memory bus, so agents must run in this process"


def open_bus(url: str) -> Bus:
    """The backend a bus URL names, not yet connected.

    `memory://` is the in-memory bus, `nats://` or `tls://` NATS JetStream, anything else Redis
    (`redis://`, `rediss://`, `unix://`).

    Raises:
        ConfigError: the URL is not one of these.
    """
    if url == MEMORY_URL:
        return InMemoryBus()
    if url.startswith(NATS_SCHEMES):
        from bus.nats.jetstream import NatsBus  # only deployments that chose NATS pay for importing nats-py

        return NatsBus(url)
    from bus.redis.streams import RedisBus

    return RedisBus(url)


async def connect_bus(url: str | None, data_dir: Path) -> tuple[Bus, str, PrivateRedis | None]:
    """The bus to use, a description of it for people, and the private server to stop at shutdown.

    Args:
        url: the configured bus; when set it must answer, since silently falling back would
            split agents that were meant to share it. `memory://` chooses the in-memory bus, and
            `nats://host:4222` (or `tls://`) the NATS JetStream bus.
        data_dir: where a private redis-server keeps its socket, pid file and log.

    Raises:
        BusUnavailable: `url` does not answer, or the private server does not start.
        ConfigError: `url` is not a bus URL.
    """
    if url == MEMORY_URL:
        return InMemoryBus(), "in-memory bus (chosen)", None
    if url:
        bus = open_bus(url)
        try:
            await bus.ping()
        except BusUnavailable as exc:
            await bus.close()
            raise BusUnavailable(_unreachable(url, exc)) from exc
        return bus, _describe(url), None
    from bus.redis.server import PrivateRedis, redis_server_binary
    from bus.redis.streams import RedisBus

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


def _describe(url: str) -> str:
    if url.startswith(NATS_SCHEMES):
        return f"nats jetstream at {redact_url(url)}"
    return f"redis at {redact_url(url)}"


def _unreachable(url: str, exc: BusUnavailable) -> str:
    reason = " ".join(str(exc.__cause__ or exc).split())
    if url.startswith(NATS_SCHEMES):
        return (
            f"NATS at {redact_url(url)} does not answer ({reason}); start it there with JetStream on "
            "(nats-server -js), or unset the bus URL to use a private redis-server"
        )
    return (
        f"Redis at {redact_url(url)} does not answer ({reason}); "
        "start it there, or unset the Redis URL to use a private redis-server"
    )
