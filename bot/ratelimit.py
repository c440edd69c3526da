"""What a user is told when the rate limit refuses a session; the limiters themselves live in `bus`.

RateLimiter.check_and_record(user_id) -> RateDecision   (bus.ratelimit, Redis or in memory)
refusal_message(decision) -> str | None                  one line for the chat reply
"""

from __future__ import annotations

import math

from bus import RedisRateLimiter
from bus.ratelimit import (
    DEFAULT_LIMIT,
    DEFAULT_WINDOW_S,
    InMemoryRateLimiter,
    RateDecision,
    RateLimiter,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_WINDOW_S",
    "InMemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisRateLimiter",
    "describe_duration",
    "describe_window",
    "refusal_message",
]

_UNITS = (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1))


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def describe_duration(seconds: float) -> str:
    """A wait in words, rounded up so the user is never told to come back too early.

    Under a minute in seconds, under an hour in minutes, else hours and minutes: `45 seconds`,
    `12 minutes`, `1 hour 5 minutes`.
    """
    total = max(1, math.ceil(seconds))
    if total < 60:
        return _plural(total, "second")
    minutes = math.ceil(total / 60)
    if minutes < 60:
        return _plural(minutes, "minute")
    hours, rest = divmod(minutes, 60)
    return _plural(hours, "hour") + (f" {_plural(rest, 'minute')}" if rest else "")


def describe_window(window_s: float) -> str:
    """The window in words, as in `in the last <window>`: `hour`, `day`, `30 minutes`."""
    for unit, size in _UNITS:
        count = window_s / size
        if count >= 1 and count == int(count):
            return unit if count == 1 else _plural(int(count), unit)
    return describe_duration(window_s)


def refusal_message(decision: RateDecision) -> str | None:
    """The one-line reply for a refused session, or None when the session was admitted.

    Example: `you have started 3 sessions in the last hour; try again in 12 minutes`.
    """
    if decision.allowed:
        return None
    started = _plural(decision.recent, "session")
    wait = describe_duration(decision.retry_after_s or 0.0)
    return f"you have started {started} in the last {describe_window(decision.window_s)}; try again in {wait}"
