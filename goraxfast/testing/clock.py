"""The clocks of the in-memory queue: a manual one for tests that step time, and SQS's wall clock.

Visibility timeouts and delays run on a monotonic clock given to the queue, so a test can make
a message visible again without waiting for it; SQS's own timestamps (sent, first received) are
milliseconds since the epoch, read from a second clock so they too can be fixed in a test.
"""

from __future__ import annotations

import time

__all__ = ["ManualClock", "wall_clock_ms"]


class ManualClock:
    """A clock that moves only when told: ``InMemoryQueue(clock=clock)``, then ``clock.advance``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch: SQS's timestamps."""
    return time.time_ns() // 1_000_000
