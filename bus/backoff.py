"""Waiting between retries when the bus is away: exponential, capped, jittered.

Jitter spreads the retries of many agents that lost the same server at the same moment, so they do not
all knock at once when it comes back ("equal jitter": half the delay fixed, half random, so a retry is
never immediate).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays for successive failures: about `base_s`, doubling each time, never above `cap_s`."""

    base_s: float = 0.1
    cap_s: float = 5.0
    #: Failures since the last success.
    failures: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """The delay before the next retry, counting one more failure."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    async def wait(self) -> None:
        """Sleep for the next delay."""
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        """The last attempt succeeded: the next failure starts from `base_s` again."""
        self.failures = 0
