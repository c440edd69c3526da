"""The contract every bus backend keeps, run once per backend (see the `bus` fixture).

A backend is interchangeable with Redis when it passes this suite; the message protocol's own tests
(wire form, expiry, refusal of invalid messages) sit at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bus import AgentMessage, MalformedMessage, RedisBus, redact_url
from bus.backend import (
    Bus,
    Claims,
    Delivery,
    Received,
    Record,
    Retention,
    Settlement,
    parse_entry_id,
    stream_key,
)
from bus.redis.server import PrivateRedis, redis_server_binary
from engine.errors import BadRequest, BusUnavailable, ConfigError
from tests.helpers import entry_ids, need

NewStream = Callable[..., str]


def make(**changes: Any) -> AgentMessage:
    fields: dict[str, Any] = {
        "from_agent": "engine",
        "to_agent": "analyst",
        "message_type": "request",
        "content": {"question": "ship it?", "n": 3, "nested": {"ok": [1, 2.5, None]}},
    }
    return AgentMessage(**(fields | changes))


# --- the contract, once per backend ----------------------------------------------------------------


async def test_bus_satisfies_the_protocol(bus: Bus) -> None:
    assert isinstance(bus, Bus)
    assert bus.name in ("memory", "redis", "nats")
    await bus.ping()


async def test_round_trip_preserves_the_message(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    sent = make(priority=8, ttl=30.5, metadata={"reply_to": "x"}, correlation_id="c1", topic="t")
    entry_id = await bus.publish(stream, sent)

    [delivery] = await bus.consume(stream, "g", "c1", block_ms=0)

    assert delivery == Delivery(stream, entry_id, sent, None, 1)
    assert parse_entry_id(entry_id) > (0, 0)


async def test_entry_ids_grow_in_publish_order(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    entry_ids = [await bus.publish(stream, make()) for _ in range(5)]
    assert sorted(entry_ids, key=parse_entry_id) == entry_ids
    assert len(set(entry_ids)) == 5


async def test_ensure_group_creates_the_stream_and_is_idempotent(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    await bus.publish(stream, make())
    await bus.ensure_group(stream, "g")  # does not reset the group
    assert await bus.length(stream) == 1
    assert len(await bus.consume(stream, "g", "c", block_ms=0)) == 1
    await bus.ensure_group(stream, "g")
    assert await bus.consume(stream, "g", "c", block_ms=0) == []


async def test_group_started_at_dollar_skips_earlier_entries(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.publish(stream, make(content={"n": 1}))
    await bus.ensure_group(stream, "late", start="$")
    await bus.ensure_group(stream, "all", start="0")
    later = await bus.publish(stream, make(content={"n": 2}))

    assert entry_ids(await bus.consume(stream, "late", "c", block_ms=0)) == [later]
    assert len(await bus.consume(stream, "all", "c", block_ms=0)) == 2


async def test_ensure_group_refuses_a_bad_start_id(bus: Bus, new_stream: NewStream) -> None:
    with pytest.raises(BadRequest, match="'latest' is not a stream id"):
        await bus.ensure_group(new_stream(), "g", start="latest")


async def test_consume_creates_a_missing_group_from_the_start(bus: Bus, new_stream: NewStream) -> None:
    """A worker whose stream was deleted heals by itself: nothing published meanwhile is lost."""
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    await bus.delete(stream)
    first = await bus.publish(stream, make())
    assert entry_ids(await bus.consume(stream, "g", "c", block_ms=0)) == [first]


async def test_consumers_of_a_group_split_the_entries(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    published = [await bus.publish(stream, make(content={"i": i})) for i in range(7)]

    first = await bus.consume(stream, "g", "c1", count=3, block_ms=0)
    second = await bus.consume(stream, "g", "c2", count=10, block_ms=0)

    assert len(first) == 3
    assert sorted([*entry_ids(first), *entry_ids(second)], key=parse_entry_id) == published
    assert await bus.consume(stream, "g", "c1", block_ms=0) == []


async def test_every_group_sees_every_entry(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "audit")
    await bus.ensure_group(stream, "workers")
    published = [await bus.publish(stream, make()) for _ in range(3)]
    assert entry_ids(await bus.consume(stream, "audit", "a", block_ms=0)) == published
    assert entry_ids(await bus.consume(stream, "workers", "w", block_ms=0)) == published


async def test_ack_removes_entries_from_pending(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    for _ in range(3):
        await bus.publish(stream, make())
    got = await bus.consume(stream, "g", "c", block_ms=0)
    assert await bus.pending_count(stream, "g") == 3

    assert await bus.ack(stream, "g", entry_ids(got)[:2]) == 2
    assert await bus.pending_count(stream, "g") == 1
    assert await bus.ack(stream, "g", entry_ids(got)[:2]) == 0  # already acknowledged
    assert await bus.ack(stream, "g", []) == 0


async def test_ack_and_pending_on_a_missing_group_find_nothing(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    assert await bus.ack(stream, "nobody", ["1-0"]) == 0
    assert await bus.pending_count(stream, "nobody") == 0
    assert await bus.reclaim(stream, "nobody", "c", min_idle_ms=0) == Received()


async def test_ack_refuses_a_malformed_entry_id(bus: Bus, new_stream: NewStream) -> None:
    with pytest.raises(BadRequest, match="'first' is not a stream id"):
        await bus.ack(new_stream(), "g", ["first"])


async def test_unacked_entries_are_reclaimed_by_another_consumer(bus: Bus, new_stream: NewStream) -> None:
    need(bus, "reclaim")
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    sent = make()
    entry_id = await bus.publish(stream, sent)
    await bus.consume(stream, "g", "crashed", block_ms=0)

    assert await bus.reclaim(stream, "g", "rescuer", min_idle_ms=3_600_000) == Received()  # not idle enough
    [taken] = (await bus.reclaim(stream, "g", "rescuer", min_idle_ms=0)).deliveries
    assert taken == Delivery(stream, entry_id, sent, None, 2)
    [again] = (await bus.reclaim(stream, "g", "third", min_idle_ms=0)).deliveries
    assert again.deliveries == 3

    assert await bus.consume(stream, "g", "crashed", block_ms=0) == []  # reclaim is not a new delivery
    assert await bus.pending_count(stream, "g") == 1
    assert await bus.ack(stream, "g", [entry_id]) == 1
    assert await bus.reclaim(stream, "g", "rescuer", min_idle_ms=0) == Received()


async def test_reclaim_takes_at_most_count_oldest_first(bus: Bus, new_stream: NewStream) -> None:
    need(bus, "reclaim")
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    published = [await bus.publish(stream, make()) for _ in range(5)]
    await bus.consume(stream, "g", "c", block_ms=0)

    assert (
        entry_ids((await bus.reclaim(stream, "g", "r", min_idle_ms=0, count=2)).deliveries) == published[:2]
    )


async def test_reclaim_drops_and_counts_pending_entries_that_were_trimmed(
    bus: Bus, new_stream: NewStream
) -> None:
    need(bus, "reclaim")
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    await bus.publish(stream, make())
    [lost] = await bus.consume(stream, "g", "c", block_ms=0)
    for _ in range(300):
        await bus.publish(stream, make(), retention=Retention(maxlen=10))

    reclaimed = await bus.reclaim(stream, "g", "r", min_idle_ms=0, count=1000)

    assert lost.entry_id not in entry_ids(reclaimed.deliveries)
    assert reclaimed.trimmed == {stream: 1}
    assert await bus.pending_count(stream, "g") == 0


async def test_consume_returns_nothing_when_the_wait_runs_out(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    assert await bus.consume(stream, "g", "c", block_ms=30) == []
    assert await bus.consume(stream, "g", "c", block_ms=0) == []


async def test_consume_wakes_when_a_message_is_published(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    waiting = asyncio.create_task(bus.consume(stream, "g", "c", block_ms=10_000))
    await asyncio.sleep(0.05)  # let the consumer start waiting; the outcome is the same if it has not
    entry_id = await bus.publish(stream, make())

    assert entry_ids(await asyncio.wait_for(waiting, timeout=10)) == [entry_id]


async def test_a_cancelled_consume_leaves_the_bus_usable(bus: Bus, new_stream: NewStream) -> None:
    """Readers are cancelled at shutdown; that must not lose entries or break the connection pool."""
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    waiting = asyncio.create_task(bus.consume(stream, "g", "c", block_ms=10_000))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    entry_id = await bus.publish(stream, make())
    assert entry_ids(await bus.consume(stream, "g", "c", block_ms=0)) == [entry_id]


async def test_maxlen_trims_the_oldest_entries(bus: Bus, new_stream: NewStream) -> None:
    """Redis trims approximately (whole nodes), so only the bounds are pinned: at least maxlen remain."""
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    published = [await bus.publish(stream, make(), retention=Retention(maxlen=20)) for _ in range(300)]

    assert 20 <= await bus.length(stream) < 300
    remaining = await bus.consume(stream, "g", "c", count=1000, block_ms=0)
    assert entry_ids(remaining) == published[-len(remaining) :]


async def test_malformed_entries_come_back_as_errors(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    good = make()
    bad_json = {"v": "1", "id": "x", "type": "request", "msg": "{not json"}
    # `append` writes fields as they are, as a program in another language could: the bus must cope.
    await bus.append(stream, {"foo": "bar"})
    await bus.append(stream, bad_json)
    await bus.append(stream, {"v": "9", "msg": "{}"})
    await bus.append(stream, good.to_fields() | {"id": "someone-else"})
    await bus.publish(stream, good)

    *bad, ok = await bus.consume(stream, "g", "c", block_ms=0)

    assert [d.message for d in bad] == [None] * 4
    errors = [d.error or "" for d in bad]
    assert "no 'v' field" in errors[0]
    assert "not a valid AgentMessage" in errors[1]
    assert "unsupported wire version '9'" in errors[2]
    assert "differs from its message_id" in errors[3]
    assert ok.message == good
    assert ok.error is None
    assert await bus.ack(stream, "g", entry_ids(bad)) == 4


async def test_expired_messages_are_still_delivered(bus: Bus, new_stream: NewStream) -> None:
    """Expiry is the receiver's call: the bus carries the message and `is_expired` tells."""
    stream = new_stream()
    old = make(timestamp=datetime.now(UTC) - timedelta(minutes=5), ttl=1)
    await bus.publish(stream, old)
    [delivery] = await bus.consume(stream, "g", "c", block_ms=0)
    assert delivery.message is not None
    assert delivery.message.is_expired()


async def test_publish_refuses_an_invalid_message(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    bumped = make().model_copy(update={"priority": 12})  # model_copy skips validation
    with pytest.raises(BadRequest, match=r"priority: .*less than or equal to 9, got 12"):
        await bus.publish(stream, bumped)
    shout: dict[str, Any] = {"from_agent": "x", "message_type": "shout"}
    built = AgentMessage.model_construct(**shout)
    with pytest.raises(
        BadRequest, match=r"message_type: .*'request', 'response', 'notification' or 'command'"
    ):
        await bus.publish(stream, built)
    with pytest.raises(BadRequest, match="not JSON-serializable"):
        await bus.publish(stream, make(content={"when": object()}))
    assert await bus.length(stream) == 0


async def test_bad_arguments_are_refused(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    with pytest.raises(BadRequest, match="count must be 1 or more, got 0"):
        await bus.consume(stream, "g", "c", count=0)
    with pytest.raises(BadRequest, match="block_ms must be 0 or more, got -1"):
        await bus.consume(stream, "g", "c", block_ms=-1)
    with pytest.raises(BadRequest, match="min_idle_ms must be 0 or more"):
        await bus.reclaim(stream, "g", "c", min_idle_ms=-5)
    with pytest.raises(BadRequest, match="maxlen must be 0 or more"):
        Retention(maxlen=-1)
    with pytest.raises(BadRequest, match="by length or by age, not both"):
        Retention(maxlen=10, max_age_ms=1000)


async def test_delete_removes_streams_and_ignores_missing_ones(bus: Bus, new_stream: NewStream) -> None:
    one, two = new_stream("one"), new_stream("two")
    await bus.publish(one, make())
    await bus.publish(two, make())
    await bus.delete(one, two, new_stream("never"))
    await bus.delete()
    assert await bus.length(one) == 0
    assert await bus.length(two) == 0


async def test_a_closed_bus_refuses_work(bus: Bus, new_stream: NewStream) -> None:
    await bus.close()
    await bus.close()  # idempotent
    with pytest.raises(BusUnavailable, match="closed"):
        await bus.publish(new_stream(), make())
    with pytest.raises(BusUnavailable, match="closed"):
        await bus.consume(new_stream(), "g", "c", block_ms=0)


# --- batch operations the delivery layer builds on -------------------------------------------------


def claims(prefix: str, owner: str, lease_ms: int = 60_000) -> Claims:
    return Claims(prefix + "seen:", owner, lease_ms)


async def test_publish_many_appends_in_order(bus: Bus, new_stream: NewStream) -> None:
    one, two = new_stream("one"), new_stream("two")
    sent = [make(content={"i": i}) for i in range(4)]
    entry_ids = await bus.publish_many([(one, sent[0]), (two, sent[1]), (one, sent[2]), (two, sent[3])])

    assert len(entry_ids) == 4
    assert [d.message for d in await bus.consume(one, "g", "c", block_ms=0)] == [sent[0], sent[2]]
    assert [d.message for d in await bus.consume(two, "g", "c", block_ms=0)] == [sent[1], sent[3]]
    assert await bus.publish_many([]) == []


async def test_publish_many_sends_nothing_when_one_message_is_invalid(
    bus: Bus, new_stream: NewStream
) -> None:
    stream = new_stream()
    bad = make().model_copy(update={"priority": 12})
    with pytest.raises(BadRequest, match="priority"):
        await bus.publish_many([(stream, make()), (stream, bad)])
    assert await bus.length(stream) == 0


async def test_append_and_entries_keep_raw_records(bus: Bus, new_stream: NewStream) -> None:
    stream = new_stream()
    first = await bus.append(stream, {"reason": "expired", "n": "1"})
    second = await bus.append(stream, {"reason": "malformed", "n": "2"})
    third = await bus.append(stream, {"reason": "expired", "n": "3"})

    assert await bus.entries(stream) == [
        (first, {"reason": "expired", "n": "1"}),
        (second, {"reason": "malformed", "n": "2"}),
        (third, {"reason": "expired", "n": "3"}),
    ]
    assert [e for e, _ in await bus.entries(stream, after=first, count=1)] == [second]
    assert await bus.entries(stream, after=third) == []
    assert await bus.entries(new_stream("none")) == []


async def test_receive_reads_streams_in_the_order_given(bus: Bus, new_stream: NewStream) -> None:
    """A later stream (a lower priority lane) is read only when the earlier ones have nothing left."""
    high, low = new_stream("high"), new_stream("low")
    low_ids = [await bus.publish(low, make(content={"lane": "low"})) for _ in range(3)]
    high_ids = [await bus.publish(high, make(content={"lane": "high"})) for _ in range(2)]

    first = await bus.receive([high, low], "g", "c", count=3, block_ms=0)
    second = await bus.receive([high, low], "g", "c", count=3, block_ms=0)

    assert entry_ids(first.deliveries) == [*high_ids, low_ids[0]]
    assert entry_ids(second.deliveries) == low_ids[1:]
    assert [d.stream for d in first.deliveries] == [high, high, low]
    assert all(d.deliveries == 1 and d.status == "new" for d in first.deliveries)
    assert first.trimmed == {}
    assert second.trimmed == {}
    assert (await bus.receive([high, low], "g", "c", block_ms=0)).deliveries == []
    assert await bus.pending_count(high, "g") == 2
    assert await bus.pending_count(low, "g") == 3


async def test_receive_waits_for_an_entry_on_any_stream(bus: Bus, new_stream: NewStream) -> None:
    high, low = new_stream("high"), new_stream("low")
    await bus.receive([high, low], "g", "c", block_ms=0)  # creates the groups
    waiting = asyncio.create_task(bus.receive([high, low], "g", "c", block_ms=10_000))
    await asyncio.sleep(0.05)  # let it start waiting; the outcome is the same if it has not
    entry_id = await bus.publish(low, make())

    received = await asyncio.wait_for(waiting, timeout=10)
    assert entry_ids(received.deliveries) == [entry_id]


async def test_receive_claims_message_ids(bus: Bus, new_stream: NewStream, prefix: str) -> None:
    """A message id claimed by one consumer is busy for another, and new again for its holder."""
    stream = new_stream()
    sent = make()
    await bus.publish(stream, sent)
    await bus.publish(stream, sent)  # the same message twice, as a retrying sender would

    [mine] = (
        await bus.receive([stream], "g", "a", count=1, block_ms=0, claims=claims(prefix, "a"))
    ).deliveries
    [theirs] = (
        await bus.receive([stream], "g", "b", count=1, block_ms=0, claims=claims(prefix, "b"))
    ).deliveries

    assert (mine.status, theirs.status) == ("new", "busy")
    need(bus, "reclaim")
    [again] = (
        await bus.reclaim(stream, "g", "a", min_idle_ms=0, count=1, claims=claims(prefix, "a"))
    ).deliveries
    assert again.entry_id == mine.entry_id
    assert again.status == "new"


async def test_settle_marks_done_releases_appends_and_acks(
    bus: Bus, new_stream: NewStream, prefix: str
) -> None:
    stream, dlq = new_stream(), new_stream("dlq")
    handled, failed = make(), make()
    await bus.publish_many([(stream, handled), (stream, failed)])
    mine = claims(prefix, "a")
    got = (await bus.receive([stream], "g", "a", block_ms=0, claims=mine)).deliveries

    await bus.settle(
        Settlement(
            group="g",
            records=[Record(dlq, {"reason": "test"})],
            done=[handled.message_id],
            released=[failed.message_id],
            acks={stream: [got[0].entry_id]},
            claims=mine,
        )
    )

    assert [fields for _, fields in await bus.entries(dlq)] == [{"reason": "test"}]
    assert await bus.pending_count(stream, "g") == 1
    need(bus, "reclaim")
    # The failed one is free to run again, for another consumer; a duplicate of the handled one is done.
    other = claims(prefix, "b")
    [retry] = (await bus.reclaim(stream, "g", "b", min_idle_ms=0, claims=other)).deliveries
    assert (retry.entry_id, retry.status, retry.deliveries) == (got[1].entry_id, "new", 2)
    await bus.publish(stream, handled)
    [duplicate] = (await bus.receive([stream], "g", "b", block_ms=0, claims=other)).deliveries
    assert duplicate.status == "done"


async def test_settle_releases_only_the_owners_claims(bus: Bus, new_stream: NewStream, prefix: str) -> None:
    stream = new_stream()
    sent = make()
    await bus.publish_many([(stream, sent), (stream, sent)])
    await bus.receive([stream], "g", "a", count=1, block_ms=0, claims=claims(prefix, "a"))

    await bus.settle(Settlement(group="g", released=[sent.message_id], claims=claims(prefix, "b")))

    [second] = (await bus.receive([stream], "g", "b", block_ms=0, claims=claims(prefix, "b"))).deliveries
    assert second.status == "busy"


async def test_settle_refuses_marks_without_claims() -> None:
    with pytest.raises(BadRequest, match="needs its claims"):
        Settlement(group="g", done=["m1"])
    assert Settlement(group="g", acks={"s": []}).is_empty()


async def test_receive_counts_entries_trimmed_before_delivery(bus: Bus, new_stream: NewStream) -> None:
    """Every entry is either handed out or counted as trimmed: none is lost silently."""
    stream = new_stream()
    await bus.ensure_group(stream, "g")
    first = await bus.receive([stream], "g", "c", block_ms=0)
    await bus.publish_many([(stream, make()) for _ in range(3)])
    read = len((await bus.receive([stream], "g", "c", count=1, block_ms=0)).deliveries)
    await bus.publish_many([(stream, make()) for _ in range(500)], retention=Retention(maxlen=50))

    received = await bus.receive([stream], "g", "c", count=1000, block_ms=0)

    assert first.trimmed == {}
    assert read == 1
    kept = await bus.length(stream)
    assert 50 <= kept < 503
    assert len(received.deliveries) == kept
    assert received.trimmed == {stream: 503 - read - kept}
    # Counted once: the next read finds nothing more, and nothing new trimmed.
    assert await bus.receive([stream], "g", "c", block_ms=0) == Received()


async def test_retention_by_age_trims_older_entries(bus: Bus, new_stream: NewStream) -> None:
    need(bus, "age_retention_under_100ms")
    stream = new_stream()
    await bus.publish_many([(stream, make()) for _ in range(300)])
    await asyncio.sleep(0.05)
    last = await bus.publish(stream, make(), retention=Retention(max_age_ms=20))

    kept = await bus.length(stream)
    assert 1 <= kept <= 101  # Redis keeps whole internal nodes of up to 100 entries
    assert (await bus.entries(stream, after=None, count=1000))[-1][0] == last


async def test_touch_restarts_idle_time_without_counting_a_delivery(
    bus: Bus, new_stream: NewStream, prefix: str
) -> None:
    need(bus, "reclaim")
    stream = new_stream()
    await bus.publish_many([(stream, make()), (stream, make())])
    kept, left = (await bus.receive([stream], "g", "c", block_ms=0)).deliveries
    await asyncio.sleep(0.5)

    await bus.touch(stream, "g", "c", [kept.entry_id])

    # Only the untouched entry has been idle for 400 ms.
    assert entry_ids((await bus.reclaim(stream, "g", "r", min_idle_ms=400)).deliveries) == [left.entry_id]
    [again] = (await bus.reclaim(stream, "g", "r", min_idle_ms=0, count=1)).deliveries
    assert (again.entry_id, again.deliveries) == (kept.entry_id, 2)


async def test_touch_never_shortens_a_done_mark(bus: Bus, new_stream: NewStream, prefix: str) -> None:
    """A heartbeat racing a settlement must not cut the done mark down to a lease."""
    stream = new_stream()
    sent = make()
    await bus.publish(stream, sent)
    mine = claims(prefix, "a", lease_ms=1)
    [got] = (await bus.receive([stream], "g", "a", block_ms=0, claims=mine)).deliveries
    await bus.settle(
        Settlement(group="g", done=[sent.message_id], acks={stream: [got.entry_id]}, claims=mine)
    )

    await bus.touch(stream, "g", "a", [got.entry_id], claims=mine, message_ids=[sent.message_id])
    await asyncio.sleep(0.05)  # far past the 1 ms lease

    await bus.publish(stream, sent)
    [again] = (await bus.receive([stream], "g", "b", block_ms=0, claims=claims(prefix, "b"))).deliveries
    assert again.status == "done"


async def test_maps_hold_small_tables(bus: Bus, new_stream: NewStream) -> None:
    table = new_stream("members")
    assert await bus.map_get(table) == {}
    await bus.map_set(table, {"analyst": "host", "skeptic": "sb-1"})
    await bus.map_set(table, {"skeptic": "sb-2"})
    await bus.map_set(table, {})
    assert await bus.map_get(table) == {"analyst": "host", "skeptic": "sb-2"}
    await bus.map_remove(table, "analyst", "nobody")
    assert await bus.map_get(table) == {"skeptic": "sb-2"}
    await bus.delete(table)
    assert await bus.map_get(table) == {}


async def test_batch_operations_refuse_bad_arguments(bus: Bus, new_stream: NewStream, prefix: str) -> None:
    stream = new_stream()
    with pytest.raises(BadRequest, match="must be one or more non-empty names"):
        await bus.receive([], "g", "c")
    with pytest.raises(BadRequest, match="name a stream twice"):
        await bus.receive([stream, stream], "g", "c")
    with pytest.raises(BadRequest, match="must be the reading consumer"):
        await bus.receive([stream], "g", "c", claims=claims(prefix, "someone-else"))
    with pytest.raises(BadRequest, match="'x' is not a stream id"):
        await bus.entries(stream, after="x")
    with pytest.raises(BadRequest, match="lease_ms must be 1 or more"):
        Claims("p:", "c", 0)


# --- Redis only ------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> PrivateRedis:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    return PrivateRedis(tmp_path)


@pytest.mark.server  # starts its own redis-server
async def test_redis_that_went_away_raises_bus_unavailable(own_redis: PrivateRedis) -> None:
    own_redis.start()
    bus = RedisBus(own_redis.url)
    try:
        await bus.ensure_group("s", "g")
        waiting = asyncio.create_task(bus.consume("s", "g", "c", block_ms=10_000))
        await asyncio.sleep(0.05)  # usually mid-read when the server stops; either way it must fail cleanly
        own_redis.stop()

        with pytest.raises(BusUnavailable, match=f"redis at {own_redis.url} failed"):
            await asyncio.wait_for(waiting, timeout=10)
        with pytest.raises(BusUnavailable, match=f"redis at {own_redis.url} failed"):
            await bus.publish("s", make())
        with pytest.raises(BusUnavailable, match=f"redis at {own_redis.url} failed"):
            await bus.consume("s", "g", "c", block_ms=0)
    finally:
        await bus.close()
        own_redis.stop()


async def test_redis_bus_takes_a_callers_client_in_either_protocol(redis_url: str, prefix: str) -> None:
    """A client passed in is read in RESP2 or RESP3 shape, and stays open after the bus closes."""
    from redis.asyncio import Redis

    for protocol in (2, 3):
        client = Redis.from_url(redis_url, decode_responses=True, protocol=protocol)
        bus = RedisBus(client)
        stream = f"{prefix}resp{protocol}"
        try:
            sent = make()
            entry_id = await bus.publish(stream, sent)
            assert await bus.consume(stream, "g", "c", block_ms=0) == [
                Delivery(stream, entry_id, sent, None, 1)
            ]
            await bus.close()
            assert await client.ping()
        finally:
            await client.delete(stream)
            await client.aclose()


async def test_redis_bus_refuses_a_url_that_is_not_redis() -> None:
    with pytest.raises(ConfigError, match=re.escape("'http://example.invalid/' is not a Redis URL")):
        RedisBus("http://example.invalid/")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@db:6379/0", "redis://:***@db:6379/0"),
        ("redis://bot:hunter2@db:6379/0", "redis://bot:***@db:6379/0"),
        ("redis://bot@db:6379", "redis://bot@db:6379"),
        ("unix:///run/redis.sock?password=hunter2&db=1", "unix:///run/redis.sock"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- the message protocol and keys ------------------------------------------------------------------


def test_wire_fields_are_flat_strings_and_round_trip() -> None:
    message = make(metadata={"a": "b"})
    fields = message.to_fields()
    assert set(fields) == {"v", "id", "type", "msg"}
    assert fields["v"] == "1"
    assert fields["id"] == message.message_id
    assert fields["type"] == "request"
    assert AgentMessage.from_fields(fields) == message


def test_message_defaults() -> None:
    message = AgentMessage(from_agent="engine", message_type="notification")
    assert len(message.message_id) == 32
    assert (message.to_sandbox, message.to_agent, message.from_sandbox) == ("broadcast", "any", "host")
    assert message.priority == 5
    assert message.version == 1
    assert message.workspace_id == "default"
    assert message.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    ("age_s", "ttl", "expired"),
    [
        (10, None, False),
        (10, 60, False),
        (10, 5, True),
        (10, 10.5, False),
    ],
)
def test_is_expired_when_timestamp_plus_ttl_is_past(age_s: float, ttl: float | None, expired: bool) -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    message = make(timestamp=now - timedelta(seconds=age_s), ttl=ttl)
    assert message.is_expired(now) is expired


def test_naive_times_are_taken_as_utc() -> None:
    message = make(timestamp=datetime(2025, 1, 1, 12, 0, 0), ttl=60)
    assert message.timestamp.tzinfo is UTC
    assert message.is_expired(datetime(2025, 1, 1, 12, 2, 0))
    assert not message.is_expired(datetime(2025, 1, 1, 12, 0, 30))


def test_invalid_construction_and_assignment_raise_validation_errors() -> None:
    with pytest.raises(ValidationError):
        make(priority=12)
    message = make()
    with pytest.raises(ValidationError):
        message.priority = -1


def test_from_fields_names_what_is_wrong() -> None:
    with pytest.raises(MalformedMessage, match=r"no 'v' field.*\(fields: a, b\)"):
        AgentMessage.from_fields({"b": "1", "a": "2"})
    with pytest.raises(MalformedMessage, match="no 'msg' field"):
        AgentMessage.from_fields({"v": "1"})
    body = make().model_dump(mode="json") | {"priority": 99}
    with pytest.raises(MalformedMessage, match=r"priority: .*got 99"):
        AgentMessage.from_fields({"v": "1", "msg": json.dumps(body)})


def test_malformed_message_is_a_bad_request() -> None:
    assert issubclass(MalformedMessage, BadRequest)


def test_unknown_fields_from_a_later_build_are_ignored() -> None:
    fields = make().to_fields()
    fields["msg"] = fields["msg"][:-1] + ', "added_later": 1}'
    assert AgentMessage.from_fields(fields).message_id == fields["id"]


def test_stream_key_hash_tags_the_workspace() -> None:
    assert stream_key("default", "agent", "analyst") == "rt:{default}:agent:analyst"
    with pytest.raises(BadRequest, match=re.escape("workspace 'a{b' cannot name a stream")):
        stream_key("a{b", "agent")
    with pytest.raises(BadRequest, match="must be one or more non-empty strings"):
        stream_key("w")
    with pytest.raises(BadRequest, match="must be one or more non-empty strings"):
        stream_key("w", "agent", "")


@pytest.mark.parametrize(
    ("text", "parsed"), [("0", (0, 0)), ("0-0", (0, 0)), ("1700000000000-12", (1700000000000, 12))]
)
def test_parse_entry_id(text: str, parsed: tuple[int, int]) -> None:
    assert parse_entry_id(text) == parsed


@pytest.mark.parametrize("text", ["", "-", "1-", "-1", "a-1", "1-b", "1-2-3", "$", ">", "١-0"])
def test_parse_entry_id_refuses_non_ids(text: str) -> None:
    with pytest.raises(BadRequest, match="is not a stream id"):
        parse_entry_id(text)
