"""A clock that moves only when a test moves it, so deadlines are tested without waiting."""

from __future__ import annotations


class ManualClock:
    """Monotonic seconds, standing still until `advance` is called.

    Pass it as `Deliberation(clock=...)`: the engine reads the session's elapsed time and deadline
    from it. The per-turn timeout still waits in real time, on the value the engine computes.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back; got {seconds}")
        self.now += seconds
