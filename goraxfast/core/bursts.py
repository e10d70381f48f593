"""How many deliveries to hand one worker in a row before looking at the others.

Dealing deliveries out one by one keeps workers evenly loaded, which is what long handlers need:
four one-minute jobs on two idle workers must run two and two, not four on one. But every run of
deliveries costs a wake-up of a sleeping worker and, later, one of the parent: ~17 us each on the
two-core machines measured here, more than a no-op handler itself. So a worker gets a run as long
as the handlers it would take about ``burst_ns`` to finish, judged from the recent handler
durations. Short handlers get whole receive batches (one wake-up per batch); handlers of a
millisecond or more are dealt one at a time. Until a duration has been seen, runs are 1: the
cautious choice for handlers that may be long.
"""

from __future__ import annotations

__all__ = ["BurstSizer"]


class BurstSizer:
    """An exponentially weighted mean of handler durations, and the run length it implies."""

    def __init__(self, *, burst_ns: int = 1_000_000, weight: float = 0.05) -> None:
        if burst_ns <= 0:
            raise ValueError(f"burst_ns must be positive, got {burst_ns}")
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.burst_ns = burst_ns
        self.weight = weight
        self.mean_ns: float | None = None

    def observe(self, duration_ns: int) -> None:
        """One handler's duration (from its result)."""
        mean = self.mean_ns
        self.mean_ns = (
            float(duration_ns) if mean is None else mean + self.weight * (duration_ns - mean)
        )

    def run_length(self) -> int:
        """Deliveries one worker may take in a row now (at least 1)."""
        mean = self.mean_ns
        if mean is None:
            return 1
        return max(1, int(self.burst_ns // max(mean, 1.0)))
