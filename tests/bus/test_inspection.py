"""Stream inspection for operators (bus/inspection.py): the same answers from Redis, in memory and on
NATS, except where JetStream cannot tell (consumer names, per-entry pending state: see
bus/nats/inspection.py), which NATS's own tests here pin down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from bus import AgentMessage, InMemoryBus, NatsBus, RedisBus
from bus.inspection import Inspectable, entry_id_before, entry_time, id_before_time
from tests.helpers import delete_nats_prefix, delete_redis_prefix

NewStream = Callable[..., str]
#: The backends that implement `Inspectable`.
Backend = RedisBus | InMemoryBus | NatsBus


@pytest.fixture(params=["memory", "redis", "nats"])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = InMemoryBus()
        yield memory
        await memory.close()
        return
    if request.param == "nats":
        server: str = request.getfixturevalue("nats_url")
        nats_bus = NatsBus(server)
        yield nats_bus
        await nats_bus.close()
        await delete_nats_prefix(server, prefix)
        return
    url: str = request.getfixturevalue("redis_url")
    redis = RedisBus(url)
    yield redis
    await redis.close()
    await delete_redis_prefix(url, prefix)


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
    if isinstance(bus, NatsBus):
        assert group.consumers == []  # JetStream knows no bus consumer names
    else:
        assert [(c.name, c.pending) for c in group.consumers] == [("c1", 1)]
    assert await bus.stream_info(new_stream("absent")) is None


async def test_pending_entry_tells_consumer_and_deliveries(bus: Backend, new_stream: NewStream) -> None:
    if isinstance(bus, NatsBus):
        pytest.skip(NatsBus.unsupported["reclaim"])
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
    assert at is not None
    assert at.isoformat() == "2023-11-14T22:13:20+00:00"
    assert entry_time("42-0") is None  # a NATS sequence number is not a time


async def test_reading_after_the_id_before_a_time_starts_at_the_first_entry_since(
    bus: Backend, new_stream: NewStream
) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    early = await bus.publish(stream, make(0))
    await asyncio.sleep(0.02)  # entries a few milliseconds apart, so that a time falls between them
    between = datetime.now(UTC)
    await asyncio.sleep(0.02)
    late = [await bus.publish(stream, make(n)) for n in (1, 2)]

    await asyncio.sleep(0.02)
    after_all = datetime.now(UTC)

    async def since(at: datetime) -> list[str]:
        return [i for i, _ in await bus.entries(stream, after=await id_before_time(bus, stream, at))]

    if isinstance(bus, NatsBus):  # an entry's sequence, not a made-up id just before a time
        assert await id_before_time(bus, stream, between) == early
    assert await since(between) == late
    assert await since(datetime(2000, 1, 1, tzinfo=UTC)) == [early, *late]
    assert await since(after_all) == []
    info = await bus.stream_info(stream)
    assert info is not None
    assert [g.name for g in info.groups] == ["g"]  # no trace of the seeking


async def test_nats_pending_entry_is_approximated_from_the_ack_floor(
    nats_url: str, new_stream: NewStream, prefix: str
) -> None:
    nats_bus = NatsBus(nats_url)
    try:
        stream = new_stream()
        ids = [await nats_bus.publish(stream, make(n)) for n in range(4)]
        await nats_bus.ensure_group(stream, "g")
        await nats_bus.consume(stream, "g", "c1", count=3, block_ms=0)
        await nats_bus.ack(stream, "g", [ids[0]])

        pending = await nats_bus.pending_entry(stream, "g", ids[1])

        assert pending is not None
        assert (pending.entry_id, pending.consumer, pending.deliveries) == (ids[1], None, None)
        assert await nats_bus.pending_entry(stream, "g", ids[0]) is None  # at the ack floor
        assert await nats_bus.pending_entry(stream, "g", ids[3]) is None  # never handed out
        assert await nats_bus.pending_entry(stream, "nogroup", ids[1]) is None
        await nats_bus.ack(stream, "g", ids[1:3])
        assert await nats_bus.pending_entry(stream, "g", ids[2]) is None
    finally:
        await nats_bus.close()
        await delete_nats_prefix(nats_url, prefix)


async def test_nats_lists_only_bus_streams_of_the_prefix(
    nats_url: str, new_stream: NewStream, prefix: str
) -> None:
    nats_bus = NatsBus(nats_url)
    try:
        await nats_bus.publish(new_stream("inbox:a:p5"), make())
        await nats_bus.publish(new_stream("inbox:ab:p5"), make())
        await nats_bus.publish("rt:{other-" + prefix[4:], make())  # another workspace
        await nats_bus.ensure_group(new_stream("inbox:a:p5"), "g")  # also makes the dead-letter stream

        assert await nats_bus.list_streams(prefix + "inbox:a") == [
            new_stream("inbox:a:p5"),
            new_stream("inbox:ab:p5"),
        ]
        assert await nats_bus.list_streams(prefix + "inbox:a:") == [new_stream("inbox:a:p5")]
    finally:
        await nats_bus.close()
        await delete_nats_prefix(nats_url, prefix)
        await delete_nats_prefix(nats_url, "rt:{other-" + prefix[4:])


def test_every_backend_is_inspectable() -> None:
    assert isinstance(InMemoryBus(), Inspectable)
    assert isinstance(RedisBus("redis://127.0.0.1:1/0"), Inspectable)
    assert isinstance(NatsBus("nats://127.0.0.1:1"), Inspectable)
