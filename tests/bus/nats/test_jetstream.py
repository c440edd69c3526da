"""What the NATS backend does where JetStream differs from Redis, and how keys become NATS names.

The shared contract is in `test_contract.py`; the tests here pin the JetStream form of what it skips on
NATS (redelivery after ack_wait instead of `reclaim`), the server's dead-letter backstop, and failures.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from bus import AgentMessage, Claims, Delivery, NatsBus, Record, Retention, Settlement
from bus.nats.names import (
    DEAD_LETTER_STREAM,
    MAX_NAME,
    claim_key,
    consumer_name,
    kv_key,
    stream_name,
    subject,
)
from engine.errors import BusUnavailable, ConfigError
from tests.helpers import entry_ids, eventually
from tests.servers import NatsProcess

NewStream = Callable[..., str]


def make(**changes: Any) -> AgentMessage:
    fields: dict[str, Any] = {"from_agent": "engine", "to_agent": "analyst", "message_type": "request"}
    return AgentMessage(**(fields | changes))


async def answering(bus: NatsBus, within_s: float = 10) -> None:
    """Wait until the bus reaches its server again (calls in flight when it went away fail)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await bus.ping()
        except BusUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.fixture
async def nats_bus(nats_url: str, prefix: str) -> AsyncIterator[NatsBus]:
    bus = NatsBus(nats_url)
    yield bus
    await bus.close()


# --- names ------------------------------------------------------------------------------------------

TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("rt:{default}:inbox:analyst:p9", "rt.default.inbox.analyst.p9"),
        ("rt:{w}:topic:a.b/c", "rt.w.topic.a_2eb_2fc"),
        ("rt:{team one}:x", "rt.team_20one.x"),
        ("rt:{w}:a::b", "rt.w.a._.b"),
        ("rt:{w}:>", "rt.w._3e"),
        ("rt:{w}:*", "rt.w._2a"),
        ("rt:{w}:under_score", "rt.w.under_5fscore"),
        ("rt:{w}:café", "rt.w.caf_c3_a9"),
        ("rt:w:a", "rtx.rt.w.a"),
        ("s", "rtx.s"),
    ],
)
def test_keys_become_safe_subjects(key: str, expected: str) -> None:
    assert subject(key) == expected
    assert all(TOKEN.fullmatch(token) for token in subject(key).split("."))
    assert stream_name(key) == expected.replace(".", "~")
    assert kv_key(key) == expected


def test_different_keys_never_share_a_subject() -> None:
    keys = [
        "rt:{w}:a:b",
        "rt:{w}:a.b",
        "rt:{w}:a_2eb",
        "rt:{w}:a:b:",
        "rt:{w}:a::b",
        "rt:w:a:b",
        "rt:{w:a}:b",
    ]
    keys += ["rt:{w}:" + "x" * 300 + "1", "rt:{w}:" + "x" * 300 + "2"]
    assert len({subject(k) for k in keys}) == len(keys)
    assert len({stream_name(k) for k in keys}) == len(keys)
    assert all(len(stream_name(k)) <= MAX_NAME for k in keys)
    assert consumer_name("engine.v2") == "engine_2ev2"


@pytest.mark.parametrize(
    ("scope", "message_id"),
    [
        ("rt:{w}:seen:analyst:inbox:", "9f0c"),
        ("rt:{w}:seen:a.b:g:", "x:y.z"),
        ("p:seen", "m1"),
        ("rt:{w}:", ""),
    ],
)
def test_a_claim_key_is_the_kv_key_of_scope_and_id(scope: str, message_id: str) -> None:
    assert claim_key(scope, message_id) == kv_key(scope + message_id)


def test_a_url_that_is_not_nats_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("'redis://db:6379/0' is not a NATS URL; use nats://")):
        NatsBus("redis://db:6379/0")


# --- redelivery, the JetStream form of reclaim ------------------------------------------------------


async def test_an_unacknowledged_entry_comes_back_after_the_idle_time_with_its_count(
    nats_bus: NatsBus, new_stream: NewStream
) -> None:
    """`reclaim(min_idle_ms=...)` sets the group's ack_wait; the server then redelivers to any consumer."""
    stream = new_stream()
    await nats_bus.ensure_group(stream, "g")
    sent = make()
    entry_id = await nats_bus.publish(stream, sent)
    [first] = await nats_bus.consume(stream, "g", "crashed", block_ms=0)

    assert (await nats_bus.reclaim(stream, "g", "rescuer", min_idle_ms=300)).deliveries == []
    [again] = await eventually(lambda: nats_bus.consume(stream, "g", "rescuer", block_ms=500))

    assert first == Delivery(stream, entry_id, sent, None, 1)
    assert again == Delivery(stream, entry_id, sent, None, 2)
    assert await nats_bus.ack(stream, "g", [entry_id]) == 1
    assert await nats_bus.pending_count(stream, "g") == 0


async def test_settled_ids_are_skipped_and_released_ones_run_again_elsewhere(
    nats_bus: NatsBus, new_stream: NewStream, prefix: str
) -> None:
    """The part of the settle contract that needs redelivery, as JetStream does it."""
    stream, dlq = new_stream(), new_stream("dlq")
    handled, failed = make(), make()
    await nats_bus.publish_many([(stream, handled), (stream, failed)])
    await nats_bus.ensure_group(stream, "g")
    await nats_bus.reclaim(stream, "g", "a", min_idle_ms=300)
    mine = Claims(prefix + "seen:", "a", 60_000)
    got = (await nats_bus.receive([stream], "g", "a", block_ms=0, claims=mine)).deliveries
    await nats_bus.settle(
        Settlement(
            group="g",
            records=[Record(dlq, {"reason": "test"}, Retention(maxlen=10))],
            done=[handled.message_id],
            released=[failed.message_id],
            acks={stream: [got[0].entry_id]},
            claims=mine,
        )
    )
    other = Claims(prefix + "seen:", "b", 60_000)

    async def read_as_b() -> list[Delivery]:
        return (await nats_bus.receive([stream], "g", "b", block_ms=500, claims=other)).deliveries

    [retry] = await eventually(read_as_b)
    assert (retry.entry_id, retry.status, retry.deliveries) == (got[1].entry_id, "new", 2)
    await nats_bus.publish(stream, handled)
    [duplicate] = (await nats_bus.receive([stream], "g", "b", block_ms=0, claims=other)).deliveries
    assert duplicate.status == "done"
    assert [fields for _, fields in await nats_bus.entries(dlq)] == [{"reason": "test"}]


async def test_entries_the_server_gave_up_on_are_kept_on_the_dead_letter_subject(
    nats_url: str, new_stream: NewStream
) -> None:
    """After `max_deliver` deliveries JetStream stops, and its advisory names the entry: none is lost."""
    bus = NatsBus(nats_url, ack_wait_ms=200, max_deliver=2)
    stream = new_stream()
    try:
        entry_id = await bus.publish(stream, make())
        await bus.consume(stream, "g", "crashes", block_ms=0)
        [second] = await eventually(lambda: bus.consume(stream, "g", "crashes-again", block_ms=500))
        assert second.deliveries == 2
        # The server gives up when it would deliver the entry a third time, so someone must be reading.
        for _ in range(20):
            assert await bus.consume(stream, "g", "c", block_ms=300) == []
            advisory = await _advisory(nats_url, f"{stream_name(stream)}.{consumer_name('g')}")
            if advisory:
                break
        assert await bus.pending_count(stream, "g") == 0
    finally:
        await bus.close()
    assert advisory["stream"] == stream_name(stream)
    assert advisory["consumer"] == "g"
    assert (advisory["stream_seq"], advisory["deliveries"]) == (int(entry_id.split("-")[0]), 2)


async def _advisory(url: str, suffix: str) -> dict[str, Any]:
    """The last max-deliveries advisory of a stream's consumer in the dead-letter stream; {} if none."""
    client = await nats.connect(url)
    try:
        reply = await client.request(
            f"$JS.API.DIRECT.GET.{DEAD_LETTER_STREAM}",
            json.dumps({"last_by_subj": f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{suffix}"}).encode(),
        )
    finally:
        await client.close()
    advisory: dict[str, Any] = json.loads(reply.data) if reply.data else {}
    return advisory


# --- acknowledgements, reads and retention ---------------------------------------------------------


async def test_an_ack_counts_entries_another_bus_handed_out(
    nats_bus: NatsBus, nats_url: str, new_stream: NewStream
) -> None:
    stream = new_stream()
    await nats_bus.publish_many([(stream, make()) for _ in range(3)])
    got = await nats_bus.consume(stream, "g", "c", block_ms=0)
    other = NatsBus(nats_url, sync_acks=False)
    try:
        assert await other.ack(stream, "g", entry_ids(got)[:2]) == 2
        assert await other.ack(stream, "g", entry_ids(got)[:2]) == 0
    finally:
        await other.close()
    assert await nats_bus.pending_count(stream, "g") == 1


async def test_a_cancelled_read_over_several_lanes_leaves_entries_for_the_next(
    nats_bus: NatsBus, new_stream: NewStream
) -> None:
    high, low = new_stream("high"), new_stream("low")
    waiting = asyncio.create_task(nats_bus.receive([high, low], "g", "c", block_ms=10_000))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    entry_id = await nats_bus.publish(low, make())
    assert entry_ids((await nats_bus.receive([high, low], "g", "c", block_ms=0)).deliveries) == [entry_id]


async def test_retention_by_age_expires_older_entries(nats_bus: NatsBus, new_stream: NewStream) -> None:
    stream = new_stream()
    await nats_bus.publish_many([(stream, make()) for _ in range(20)], retention=Retention(max_age_ms=100))
    await asyncio.sleep(0.2)
    last = await nats_bus.publish(stream, make(), retention=Retention(max_age_ms=100))

    async def expired() -> bool:
        return await nats_bus.length(stream) <= 1

    await eventually(expired)
    assert [entry_id for entry_id, _ in await nats_bus.entries(stream)] in ([last], [])


async def test_a_table_survives_concurrent_writers(nats_bus: NatsBus, new_stream: NewStream) -> None:
    """Table changes are compare-and-set: concurrent writes to different fields all land."""
    table = new_stream("members")
    await asyncio.gather(*(nats_bus.map_set(table, {f"agent{i}": "host"}) for i in range(8)))
    assert await nats_bus.map_get(table) == {f"agent{i}": "host" for i in range(8)}


# --- failures ---------------------------------------------------------------------------------------


@pytest.mark.server  # starts its own nats-server
async def test_nats_that_went_away_raises_bus_unavailable_and_the_bus_recovers(tmp_path: Path) -> None:
    server = NatsProcess(tmp_path / "nats").start()
    bus = NatsBus(server.url)
    try:
        entry_id = await bus.publish("rt:{w}:s", make())
        waiting = asyncio.create_task(bus.consume("rt:{w}:other", "g", "c", block_ms=10_000))
        await asyncio.sleep(0.1)  # usually mid-read when the server dies; either way it must fail cleanly
        server.kill()

        with pytest.raises(BusUnavailable, match=f"nats at {server.url} failed"):
            await asyncio.wait_for(waiting, timeout=10)
        with pytest.raises(BusUnavailable, match=f"nats at {server.url} failed"):
            await bus.publish("rt:{w}:s", make())

        server.start()  # same port, same store: what JetStream had is back
        [delivery] = await bus.consume("rt:{w}:s", "g", "c", block_ms=0)
        assert delivery.entry_id == entry_id
    finally:
        await bus.close()
        server.kill()


@pytest.mark.server  # starts its own nats-server
async def test_a_server_without_jetstream_is_named(tmp_path: Path) -> None:
    server = NatsProcess(tmp_path / "nats", jetstream=False).start()
    bus = NatsBus(server.url)
    try:
        with pytest.raises(BusUnavailable, match=r"JetStream is not enabled .*start nats-server with -js"):
            await bus.ping()
    finally:
        await bus.close()
        server.kill()


async def test_nobody_listening_is_bus_unavailable() -> None:
    bus = NatsBus("nats://127.0.0.1:1")
    with pytest.raises(BusUnavailable, match=re.escape("nats at nats://127.0.0.1:1 failed")):
        await bus.ping()
    await bus.close()


async def test_operations_queued_behind_a_failed_connection_attempt_share_its_failure() -> None:
    """A dead server costs one attempt, not one per waiting operation (each would wait out the rest)."""
    attempts = 0

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    bus = NatsBus(f"nats://127.0.0.1:{port}")
    try:
        outcomes = await asyncio.gather(
            *(bus.length(f"rt:{{w}}:s{n}") for n in range(10)), return_exceptions=True
        )
        one_attempt = attempts
        assert all(isinstance(outcome, BusUnavailable) for outcome in outcomes)
        with pytest.raises(BusUnavailable):  # an operation that comes later tries again
            await bus.length("rt:{w}:s")
    finally:
        await bus.close()
        listener.close()
        await listener.wait_closed()
    assert 1 <= one_attempt < 10
    assert attempts > one_attempt


@pytest.mark.server  # starts its own nats-server
async def test_a_server_that_lost_its_store_is_made_whole_by_the_next_calls(tmp_path: Path) -> None:
    """With memory storage a restart loses streams, groups and buckets; the bus makes them again."""
    server = NatsProcess(tmp_path / "nats").start()
    bus = NatsBus(server.url, storage="memory")
    stream, table, mine = "rt:{w}:s", "rt:{w}:members", Claims("rt:{w}:seen:", "a", 60_000)
    try:
        await bus.publish(stream, make())
        assert len((await bus.receive([stream], "g", "a", block_ms=0, claims=mine)).deliveries) == 1
        await bus.map_set(table, {"analyst": "host"})
        server.kill()
        server.start()
        await answering(bus)

        sent = make()
        entry_id = await bus.publish(stream, sent)
        [delivery] = (await bus.receive([stream], "g", "a", block_ms=0, claims=mine)).deliveries
        assert (delivery.entry_id, delivery.message, delivery.status) == (entry_id, sent, "new")
        assert await bus.map_get(table) == {}
        await bus.map_set(table, {"analyst": "host"})
        assert await bus.map_get(table) == {"analyst": "host"}
    finally:
        await bus.close()
        server.kill()
