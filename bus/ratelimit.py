"""How many sessions a user may start: a moving window, in Redis or in memory.

The window moves: a session started at time t counts against its user until `t + window_s`, so a
user who started three sessions at 12:00, 12:10 and 12:20 may start the next one at 13:00, not at the
top of some fixed hour. Only admitted sessions are recorded; a refused attempt does not push the
user's next chance further away.

The Redis limiter keeps one sorted set per user (score = start time) and decides in one Lua script,
so the check and the record are atomic across processes, and the window survives a restart. Times
are wall-clock seconds (`time.time()`), the one clock that processes and restarts share.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from typing import Protocol

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from bus.backend import Bus, stream_key
from bus.redis_streams import RedisBus, _describe, _RedisErrors, _text
from engine.errors import BadRequest

#: At most this many sessions per user per window, unless configured otherwise.
DEFAULT_LIMIT = 3
DEFAULT_WINDOW_S = 3600.0

# Drops the entries that left the window, then admits and records (when under the limit) or reports
# the start time of the entry whose leaving admits the next session. Scores come back as strings: a
# Lua number returned to Redis is truncated to an integer.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[3])
if count < limit then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, count + 1, ''}
end
local blocking = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, count, blocking[2]}
"""


class RateDecision(BaseModel):
    """Whether a user may start a session now, and if not, when they may.

    `recent` counts the user's sessions in the window, including this one when it was admitted.
    """

    allowed: bool
    retry_after_s: float | None = Field(default=None, ge=0)
    recent: int = Field(ge=0)
    limit: int = Field(ge=1)
    window_s: float = Field(gt=0)


class RateLimiter(Protocol):
    """Admits at most `limit` sessions per user in any `window_s` seconds."""

    @property
    def limit(self) -> int: ...

    @property
    def window_s(self) -> float: ...

    async def check_and_record(self, user_id: str, *, now: float | None = None) -> RateDecision:
        """Admit and record a session for `user_id` at `now`, or refuse with the time to wait.

        Args:
            user_id: the platform's user id, qualified by the caller when ids may clash across platforms.
            now: wall-clock seconds; `time.time()` when omitted. Tests pass it explicitly.

        Raises:
            BusUnavailable: the Redis limiter cannot reach its server.
        """
        ...


def _check_limits(limit: int, window_s: float) -> None:
    if limit < 1:
        raise BadRequest(f"rate limit {limit} is not positive; allow at least 1 session per window")
    if not window_s > 0 or not math.isfinite(window_s):
        raise BadRequest(f"rate-limit window {window_s!r} s is not a positive number of seconds")


def _refused(recent: int, blocking_start: float, now: float, limit: int, window_s: float) -> RateDecision:
    return RateDecision(
        allowed=False,
        retry_after_s=max(0.0, blocking_start + window_s - now),
        recent=recent,
        limit=limit,
        window_s=window_s,
    )


class RedisRateLimiter:
    """The moving-window limit kept in Redis, shared by every process on the same server.

    Args:
        client: a `redis.asyncio.Redis` client (either `decode_responses` setting); it stays the
            caller's to close.
        limit: sessions allowed per user per window.
        window_s: length of the window in seconds.
        workspace: the bus workspace; keys are `rt:{workspace}:ratelimit:<user id>`.

    Raises:
        BadRequest: `limit` or `window_s` is not positive, or the workspace cannot name a key.
    """

    def __init__(
        self,
        client: Redis,
        *,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        workspace: str = "default",
    ) -> None:
        _check_limits(limit, window_s)
        stream_key(workspace, "ratelimit")  # checks the workspace now, not at the first session
        self._client = client
        self._limit = limit
        self._window_s = float(window_s)
        self._workspace = workspace
        self._errors = _RedisErrors(_describe(client))
        self._admit = client.register_script(_ADMIT)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window_s(self) -> float:
        return self._window_s

    def key(self, user_id: str) -> str:
        """The sorted set that holds `user_id`'s recent session start times."""
        return stream_key(self._workspace, "ratelimit", user_id)

    async def check_and_record(self, user_id: str, *, now: float | None = None) -> RateDecision:
        at = time.time() if now is None else float(now)
        # The member is unique, so two sessions started in the same instant both count.
        member = f"{at!r}:{secrets.token_hex(4)}"
        ttl_ms = math.ceil(self._window_s * 1000)
        args: list[str | int] = [repr(at), repr(at - self._window_s), self._limit, member, ttl_ms]
        with self._errors:
            admitted, recent, blocking = await self._admit(
                keys=[self.key(user_id)], args=args, client=self._client
            )
        if int(admitted):
            return RateDecision(allowed=True, recent=int(recent), limit=self._limit, window_s=self._window_s)
        return _refused(int(recent), float(_text(blocking)), at, self._limit, self._window_s)


class InMemoryRateLimiter:
    """The same moving window for one process, beside the in-memory bus; forgotten on restart.

    Raises:
        BadRequest: `limit` or `window_s` is not positive.
    """

    def __init__(self, *, limit: int = DEFAULT_LIMIT, window_s: float = DEFAULT_WINDOW_S) -> None:
        _check_limits(limit, window_s)
        self._limit = limit
        self._window_s = float(window_s)
        self._starts: dict[str, deque[float]] = {}

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window_s(self) -> float:
        return self._window_s

    async def check_and_record(self, user_id: str, *, now: float | None = None) -> RateDecision:
        at = time.time() if now is None else float(now)
        # No await below: the check and the record are one step for every other task.
        starts = self._starts.setdefault(user_id, deque())
        cutoff = at - self._window_s
        while starts and starts[0] <= cutoff:
            starts.popleft()
        if len(starts) < self._limit:
            starts.append(at)
            if len(starts) > 1 and starts[-2] > at:  # a caller's clock went back; keep the order
                self._starts[user_id] = deque(sorted(starts))
            return RateDecision(allowed=True, recent=len(starts), limit=self._limit, window_s=self._window_s)
        blocking = starts[len(starts) - self._limit]
        return _refused(len(starts), blocking, at, self._limit, self._window_s)


def rate_limiter_for(
    bus: Bus, *, limit: int = DEFAULT_LIMIT, window_s: float = DEFAULT_WINDOW_S, workspace: str = "default"
) -> RateLimiter:
    """The limiter that fits a bus: in its Redis, shared by every process, or in memory beside it."""
    if isinstance(bus, RedisBus):
        return RedisRateLimiter(bus._client, limit=limit, window_s=window_s, workspace=workspace)
    return InMemoryRateLimiter(limit=limit, window_s=window_s)
