"""Stream inspection for operators (bus/inspection.py): the same answers from Redis and in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bus.inspection import Inspectable, entry_id_before, entry_time, inspector
from bus.memory import InMemoryBus
from bus.message import AgentMessage
from bus.nats_jetstream import NatsBus
from bus.redis_streams import RedisBus
from engine.errors import ConfigError
from tests.bus.conftest import _delete_prefix

NewStream = Callable[..., str]
#: The backends that implement `Inspectable`.
Backend = RedisBus | InMemoryBus


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = InMemoryBus()
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = RedisBus(url)
    yield redis
    await redis.close()
    await _delete_prefix(url, prefix)


def make(n: int = 0) -> AgentMessage:
    return AgentMessage(from_agent="a", to_agent="b", message_type="notification", content={"n": n})


async def test_list_streams_finds_streams_under_a_prefix_only(
    bus: Backend, new_stream: NewStream, prefix: str
) -> None:
    await bus.publish(new_stream("x:1"), make())
    await bus.publish(new_stream("x:2"), make())
    await bus.publish(new_stream("y"), make())
    await bus.map_set(new_stream("table"), {"k": "v"})  # a table is not a stream

    assert await bus.list_streams(prefix + "x:") == [new_stream("x:1"), new_stream("x:2")]
    assert await bus.list_streams(prefix) == [new_stream("x:1"), new_stream("x:2"), new_stream("y")]


async def test_stream_info_tells_length_pending_lag_and_consumers(
    bus: Backend, new_stream: NewStream
) -> None:
    stream = new_stream()
    ids = [await bus.publish(stream, make(n)) for n in range(5)]
    await bus.ensure_group(stream, "g")
    await bus.consume(stream, "g", "c1", count=2, block_ms=0)
    await bus.ack(stream, "g", [ids[0]])

    info = await bus.stream_info(stream)

    assert info is not None
    assert (info.length, info.first_id, info.last_id) == (5, ids[0], ids[-1])
    [group] = info.groups
    assert (group.name, group.pending, group.lag, group.last_delivered_id) == ("g", 1, 3, ids[1])
    assert [(c.name, c.pending) for c in group.consumers] == [("c1", 1)]
    assert await bus.stream_info(new_stream("absent")) is None


async def test_pending_entry_tells_consumer_and_deliveries(bus: Backend, new_stream: NewStream) -> None:
    stream = new_stream()
    first = await bus.publish(stream, make())
    second = await bus.publish(stream, make())
    await bus.ensure_group(stream, "g")
    await bus.consume(stream, "g", "c1", count=1, block_ms=0)
    await bus.reclaim(stream, "g", "c2", min_idle_ms=0)

    pending = await bus.pending_entry(stream, "g", first)

    assert pending is not None
    assert (pending.entry_id, pending.consumer, pending.deliveries) == (first, "c2", 2)
    assert await bus.pending_entry(stream, "g", second) is None  # never read
    assert await bus.pending_entry(stream, "nogroup", first) is None


async def test_reading_after_the_id_before_an_entry_starts_at_that_entry(
    bus: Backend, new_stream: NewStream
) -> None:
    stream = new_stream()
    ids = [await bus.publish(stream, make(n)) for n in range(3)]
    assert [i for i, _ in await bus.entries(stream, after=entry_id_before(ids[1]))] == ids[1:]


def test_entry_id_before_and_entry_time() -> None:
    assert entry_id_before("5-3") == "5-2"
    assert entry_id_before("5-0") == f"4-{2**64 - 1}"
    assert entry_id_before("0-0") is None
    at = entry_time("1700000000000-4")
    assert at is not None and at.isoformat() == "2023-11-14T22:13:20+00:00"
    assert entry_time("42-0") is None  # a NATS sequence number is not a time


def test_redis_and_memory_are_inspectable() -> None:
    assert isinstance(InMemoryBus(), Inspectable)
    assert isinstance(RedisBus("redis://127.0.0.1:1/0"), Inspectable)


async def test_nats_is_refused_in_one_line_naming_the_fix(nats_url: str) -> None:
    nats_bus = NatsBus(nats_url)
    try:
        with pytest.raises(ConfigError, match=r"bus stats needs stream inspection.*nats.*redis://"):
            inspector(nats_bus, what="bus stats")
    finally:
        await nats_bus.close()
