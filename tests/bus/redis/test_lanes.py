"""`RedisBus.receive` over many lanes: empty lanes are passed over, and nothing trimmed goes uncounted."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bus import AgentMessage, Claims, RedisBus


def note(n: int) -> AgentMessage:
    return AgentMessage(from_agent="engine", message_type="notification", content={"n": n})


async def test_a_lane_emptied_before_delivery_counts_its_entries_when_it_next_gets_one(
    redis_url: str, prefix: str
) -> None:
    high, low = prefix + "lane:p9", prefix + "lane:p0"
    raw = Redis.from_url(redis_url, decode_responses=True)
    bus = RedisBus(redis_url)
    try:
        await bus.publish_many([(low, note(n)) for n in range(3)])
        first = await bus.receive([high, low], "g", "c", count=1, block_ms=0)
        assert [d.message.content["n"] for d in first.deliveries if d.message] == [0]
        await raw.xtrim(low, maxlen=0)
        emptied = await bus.receive([high, low], "g", "c", block_ms=0)
        assert emptied.deliveries == []
        assert emptied.trimmed == {}
        await bus.publish(low, note(3))
        again = await bus.receive([high, low], "g", "c", block_ms=0)
        assert [d.message.content["n"] for d in again.deliveries if d.message] == [3]
        assert again.trimmed == {low: 2}
    finally:
        await bus.close()
        await raw.aclose()


async def test_a_blocked_receive_wakes_for_an_entry_in_a_lane_that_was_empty(
    redis_url: str, prefix: str
) -> None:
    lanes = [prefix + f"wake:p{p}" for p in reversed(range(10))]
    bus = RedisBus(redis_url)
    other = RedisBus(redis_url)
    try:
        assert (await bus.receive(lanes, "g", "c", block_ms=0)).deliveries == []
        waiting = asyncio.create_task(bus.receive(lanes, "g", "c", block_ms=5000))
        await asyncio.sleep(0.1)
        await other.publish(lanes[4], note(1))
        received = await waiting
        assert [d.stream for d in received.deliveries] == [lanes[4]]
    finally:
        await bus.close()
        await other.close()


async def test_a_claim_taken_by_one_consumer_is_busy_for_another(redis_url: str, prefix: str) -> None:
    lane = prefix + "claims:p5"
    bus = RedisBus(redis_url)
    try:
        sent = note(1)
        await bus.publish(lane, sent)
        await bus.publish(lane, sent)  # the same message twice, as a retried send leaves it
        mine = Claims(scope=prefix + "seen:", owner="c1", lease_ms=10_000)
        theirs = Claims(scope=prefix + "seen:", owner="c2", lease_ms=10_000)
        first = await bus.receive([lane], "g", "c1", count=1, block_ms=0, claims=mine)
        second = await bus.receive([lane], "g", "c2", count=1, block_ms=0, claims=theirs)
        assert [d.status for d in first.deliveries] == ["new"]
        assert [d.status for d in second.deliveries] == ["busy"]
    finally:
        await bus.close()
