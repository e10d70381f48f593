"""What the engine answers to Kubernetes' readiness probe, and the mean handler time it sizes by.

Both are decisions made from a few numbers, kept apart from the engine's I/O so they can be
tested without one: readiness is "running and SQS answering recently", never "not ready" merely
because every slot is busy (a busy engine is doing its job, and a pod taken out of rotation for
it counts as unavailable in rollouts); the mean handler time is taken over what finished since it
was last asked, so it follows a handler that slows down. Time comes as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable

from goraxfast.core.outage import Outage, format_duration

__all__ = ["HandlerMean", "readiness"]


def readiness(outages: Iterable[Outage | None], now: float) -> tuple[bool, str]:
    """A running engine is ready unless an outage has lasted past its threshold (then: why)."""
    for outage in outages:
        if outage is not None and not outage.healthy(now):
            failing_s = now - (outage.failing_since or now)
            return (
                False,
                f"{outage.what} failing for {format_duration(failing_s)}: {outage.detail}",
            )
    return True, "ready"


class HandlerMean:
    """The mean handler time since the last call (the last mean while none finished)."""

    def __init__(self) -> None:
        self._seen = (0, 0)  # (handlers finished, their ns), at the last mean taken
        self._mean_s: float | None = None

    def update(self, finished: int, ns: int) -> float | None:
        """``finished`` handlers so far, ``ns`` their total time: the mean of the new ones."""
        seen_finished, seen_ns = self._seen
        if finished > seen_finished:
            self._mean_s = (ns - seen_ns) / (finished - seen_finished) / 1e9
            self._seen = (finished, ns)
        return self._mean_s
