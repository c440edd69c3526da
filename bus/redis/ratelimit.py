"""The moving-window session limit kept in Redis, shared by every process on the same server.

One sorted set per user (score = start time), decided in one Lua script, so the check and the record
are atomic across processes and the window survives a restart. See `bus.ratelimit` for the window.
"""

from __future__ import annotations

import math
import secrets
import time

from redis.asyncio import Redis

from bus.backend import stream_key
from bus.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S, RateDecision, check_limits, refused
from bus.redis.errors import RedisErrors, describe, text

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
        check_limits(limit, window_s)
        stream_key(workspace, "ratelimit")  # checks the workspace now, not at the first session
        self._client = client
        self._limit = limit
        self._window_s = float(window_s)
        self._workspace = workspace
        self._errors = RedisErrors(describe(client))
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
        return refused(int(recent), float(text(blocking)), at, self._limit, self._window_s)
