"""Windowed counts and a robust quantile: the smoothed estimates the pipeline sizer reads.

:class:`~goraxfast.core.pipeline.PipelineSizer` sizes by rates over a short and a long window
and by a windowed p90 of the round trip, so that one slow answer or a short lull does not move
the pipeline. These estimators are kept apart from the sizing rule because they are generic
(counts over time, a quantile of recent samples) and each is small enough to check on its own.
Times are arguments, never read from a clock, and never decrease.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Quantile", "Rate", "Window"]


class Rate:
    """The same counts over a short and a long window."""

    __slots__ = ("long", "short")

    def __init__(self, short_s: float, long_s: float) -> None:
        self.short = Window(short_s)
        self.long = Window(max(short_s, long_s))

    def add(self, now: float, count: int) -> None:
        self.short.add(now, count)
        self.long.add(now, count)


@dataclass(slots=True)
class Window:
    """Counts over the last ``window_s`` seconds (times never decrease)."""

    window_s: float
    _events: deque[tuple[float, int]] = field(default_factory=deque)
    _sum: int = 0

    def add(self, now: float, count: int) -> None:
        self._events.append((now, count))
        self._sum += count

    def total(self, now: float) -> int:
        events, horizon = self._events, now - self.window_s
        while events and events[0][0] <= horizon:
            self._sum -= events.popleft()[1]
        return self._sum


class Quantile:
    """A quantile of the last ``size`` samples: robust to a few outliers, unlike a mean. Until
    there are enough samples for the quantile to be other than the largest, the median: the
    first receive also paid the connection's handshakes, and is no tail."""

    __slots__ = ("_cached", "_q", "_samples")

    def __init__(self, size: int, q: float) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._q = q
        self._cached: float | None = None

    def add(self, sample: float) -> None:
        self._samples.append(sample)
        self._cached = None

    def value(self) -> float | None:
        if self._cached is None and self._samples:
            ordered = sorted(self._samples)
            n = len(ordered)
            q = self._q if n * (1 - self._q) >= 1 else 0.5
            self._cached = ordered[max(0, math.ceil(q * n) - 1)]
        return self._cached
