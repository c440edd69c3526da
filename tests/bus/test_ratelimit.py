"""The moving-window rate limit, on a real Redis and in memory, with explicit times (no wall clock)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bus import InMemoryRateLimiter, RateDecision, RateLimiter, RedisRateLimiter
from engine.errors import BadRequest, BusUnavailable
from tests.servers import free_port

HOUR = 3600.0
T0 = 1_700_000_000.0

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def workspace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(redis_url: str, workspace: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield redis
    keys = [key async for key in redis.scan_iter(match=f"rt:{{{workspace}}}:*", count=500)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest, workspace: str) -> MakeLimiter:
    """Builds limiters of one backend; Redis ones share this test's server and workspace."""
    if request.param == "memory":
        return lambda **kwargs: InMemoryRateLimiter(**kwargs)
    redis: Redis = request.getfixturevalue("client")
    return lambda **kwargs: RedisRateLimiter(redis, workspace=workspace, **kwargs)


async def test_the_first_sessions_up_to_the_limit_are_admitted(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    decisions = [await limiter.check_and_record("alice", now=T0 + i) for i in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.recent for d in decisions] == [1, 2, 3]
    assert all(d.retry_after_s is None for d in decisions)
    assert decisions[0] == RateDecision(allowed=True, recent=1, limit=3, window_s=HOUR)


async def test_one_over_the_limit_is_refused_until_the_oldest_leaves_the_window(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter()
    for offset in (0.0, 600.0, 1200.0):
        assert (await limiter.check_and_record("alice", now=T0 + offset)).allowed
    refused = await limiter.check_and_record("alice", now=T0 + 1500.0)
    assert refused == RateDecision(
        allowed=False, retry_after_s=HOUR - 1500.0, recent=3, limit=3, window_s=HOUR
    )


async def test_the_window_moves_rather_than_resetting(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    for offset in (0.0, 600.0, 1200.0):
        await limiter.check_and_record("alice", now=T0 + offset)
    assert not (await limiter.check_and_record("alice", now=T0 + HOUR - 0.5)).allowed
    at_an_hour = await limiter.check_and_record("alice", now=T0 + HOUR)
    assert at_an_hour.allowed
    assert at_an_hour.recent == 3  # 600, 1200 and this one
    # The next chance is when the session at 600 s leaves the window.
    refused = await limiter.check_and_record("alice", now=T0 + HOUR + 1.0)
    assert refused.retry_after_s == pytest.approx(600.0 - 1.0)


async def test_refused_attempts_are_not_recorded(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(limit=1)
    await limiter.check_and_record("alice", now=T0)
    for offset in (10.0, 20.0, 30.0):
        assert not (await limiter.check_and_record("alice", now=T0 + offset)).allowed
    assert (await limiter.check_and_record("alice", now=T0 + HOUR)).allowed


async def test_users_are_limited_separately(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(limit=2)
    for offset in (0.0, 1.0):
        await limiter.check_and_record("alice", now=T0 + offset)
    assert not (await limiter.check_and_record("alice", now=T0 + 2.0)).allowed
    bob = await limiter.check_and_record("bob", now=T0 + 2.0)
    assert bob.allowed
    assert bob.recent == 1


async def test_sessions_started_in_the_same_instant_all_count(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(limit=2)
    assert (await limiter.check_and_record("alice", now=T0)).allowed
    assert (await limiter.check_and_record("alice", now=T0)).recent == 2
    assert not (await limiter.check_and_record("alice", now=T0)).allowed


async def test_limit_and_window_are_configurable(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(limit=5, window_s=60.0)
    assert (limiter.limit, limiter.window_s) == (5, 60.0)
    for offset in range(5):
        assert (await limiter.check_and_record("alice", now=T0 + offset)).allowed
    refused = await limiter.check_and_record("alice", now=T0 + 10.0)
    assert refused.retry_after_s == pytest.approx(50.0)
    assert (await limiter.check_and_record("alice", now=T0 + 60.0)).allowed


@pytest.mark.parametrize(("limit", "window_s"), [(0, HOUR), (3, 0.0), (3, -1.0), (3, float("nan"))])
def test_a_limit_or_window_that_is_not_positive_is_refused(limit: int, window_s: float) -> None:
    with pytest.raises(BadRequest):
        InMemoryRateLimiter(limit=limit, window_s=window_s)


async def test_the_redis_window_holds_across_limiter_instances(client: Redis, workspace: str) -> None:
    """A restart, or a second process, sees the sessions the first one recorded."""
    first = RedisRateLimiter(client, workspace=workspace)
    for offset in (0.0, 1.0, 2.0):
        await first.check_and_record("alice", now=T0 + offset)
    second = RedisRateLimiter(client, workspace=workspace)
    refused = await second.check_and_record("alice", now=T0 + 3.0)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(HOUR - 3.0)


async def test_a_lower_limit_after_a_restart_waits_for_enough_entries_to_leave(
    client: Redis, workspace: str
) -> None:
    generous = RedisRateLimiter(client, workspace=workspace, limit=3)
    for offset in (0.0, 100.0, 200.0):
        await generous.check_and_record("alice", now=T0 + offset)
    strict = RedisRateLimiter(client, workspace=workspace, limit=1)
    refused = await strict.check_and_record("alice", now=T0 + 300.0)
    assert refused.recent == 3
    assert refused.retry_after_s == pytest.approx(HOUR + 200.0 - 300.0)  # when only one is left


async def test_workspaces_do_not_share_a_window(client: Redis, workspace: str) -> None:
    mine = RedisRateLimiter(client, workspace=workspace, limit=1)
    other = RedisRateLimiter(client, workspace=workspace + "-other", limit=1)
    await mine.check_and_record("alice", now=T0)
    try:
        assert (await other.check_and_record("alice", now=T0)).allowed
    finally:
        await client.delete(other.key("alice"))


async def test_the_redis_key_expires_after_the_window(client: Redis, workspace: str) -> None:
    """Idle users cost nothing: the sorted set carries a TTL no longer than the window."""
    limiter = RedisRateLimiter(client, workspace=workspace, window_s=120.0)
    await limiter.check_and_record("alice", now=T0)
    ttl_ms = await client.pttl(limiter.key("alice"))
    assert 0 < ttl_ms <= 120_000
    assert limiter.key("alice") == f"rt:{{{workspace}}}:ratelimit:alice"


async def test_a_client_without_decoded_responses_works_too(redis_url: str, workspace: str) -> None:
    raw = Redis.from_url(redis_url)
    limiter = RedisRateLimiter(raw, workspace=workspace, limit=1)
    try:
        await limiter.check_and_record("alice", now=T0)
        refused = await limiter.check_and_record("alice", now=T0 + 5.0)
        assert refused.retry_after_s == pytest.approx(HOUR - 5.0)
    finally:
        await raw.delete(limiter.key("alice"))
        await raw.aclose()


async def test_an_unreachable_redis_is_reported_as_bus_unavailable() -> None:
    port = free_port()
    dead = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), retries=0))
    limiter = RedisRateLimiter(dead)
    try:
        with pytest.raises(BusUnavailable, match=f"redis at redis://127.0.0.1:{port}/0 failed"):
            await limiter.check_and_record("alice", now=T0)
    finally:
        await dead.aclose()


def test_a_workspace_that_cannot_name_a_key_is_refused_at_construction() -> None:
    with pytest.raises(BadRequest):
        RedisRateLimiter(Redis(), workspace="a{b}")
