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
import time
from collections import deque
from typing import Protocol

from pydantic import BaseModel, Field

from bus.backend import Bus
from engine.errors import BadRequest

#: At most this many sessions per user per window, unless configured otherwise.
DEFAULT_LIMIT = 3
DEFAULT_WINDOW_S = 3600.0


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


def check_limits(limit: int, window_s: float) -> None:
    if limit < 1:
        raise BadRequest(f"rate limit {limit} is not positive; allow at least 1 session per window")
    if not window_s > 0 or not math.isfinite(window_s):
        raise BadRequest(f"rate-limit window {window_s!r} s is not a positive number of seconds")


def refused(recent: int, blocking_start: float, now: float, limit: int, window_s: float) -> RateDecision:
    return RateDecision(
        allowed=False,
        retry_after_s=max(0.0, blocking_start + window_s - now),
        recent=recent,
        limit=limit,
        window_s=window_s,
    )


class InMemoryRateLimiter:
    """The same moving window for one process, beside the in-memory bus; forgotten on restart.

    Raises:
        BadRequest: `limit` or `window_s` is not positive.
    """

    def __init__(self, *, limit: int = DEFAULT_LIMIT, window_s: float = DEFAULT_WINDOW_S) -> None:
        check_limits(limit, window_s)
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
        return refused(len(starts), blocking, at, self._limit, self._window_s)


def rate_limiter_for(
    bus: Bus, *, limit: int = DEFAULT_LIMIT, window_s: float = DEFAULT_WINDOW_S, workspace: str = "default"
) -> RateLimiter:
    """The limiter that fits a bus: in its Redis, shared by every process, or in memory beside it."""
    from bus.redis.streams import RedisBus  # a NATS or memory deployment needs no redis-py here

    if isinstance(bus, RedisBus):
        from bus.redis.ratelimit import RedisRateLimiter

        return RedisRateLimiter(bus.client, limit=limit, window_s=window_s, workspace=workspace)
    return InMemoryRateLimiter(limit=limit, window_s=window_s)
