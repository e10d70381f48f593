"""Layout of the per-worker counter block, and how the parent reads a set of them.

Each worker writes its own block (one writer per u64 slot, so no locks); the parent only reads
and sums. The single parent-written slot, ``CONTROL``, asks the worker to drain.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

# Handler latency histogram bucket upper bounds, in seconds (Prometheus ``le`` labels).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
BUCKET_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS_S)  # upper bounds, ns

CONTROL = 0  # written by the parent: 1 = drain (finish what runs, run nothing new)
HEARTBEAT_NS = 1  # worker's last sign of life (monotonic ns)
BUSY_SINCE_NS = 2  # when the running sync handler started (monotonic ns), 0 when idle
BUSY_SLOT = 3  # the slot of the running sync handler
PID = 4
STARTED = 5  # handlers started
SUCCEEDED = 6
RETRIED = 7
REJECTED = 8
FAILED = 9
TIMED_OUT = 10
RELEASED = 11  # deliveries handed back unrun (draining)
HANDLER_NS_TOTAL = 12
HIST_BASE = 13  # one slot per bucket, then +Inf
COUNTER_SLOTS = HIST_BASE + len(LATENCY_BUCKETS_S) + 1

CONTROL_DRAIN = 1

#: Counters the parent sums across workers (name, slot) — monotonic, so a dead worker's final
#: values are folded into a retired total rather than lost.
SUMMED: tuple[tuple[str, int], ...] = (
    ("started", STARTED),
    ("succeeded", SUCCEEDED),
    ("retried", RETRIED),
    ("rejected", REJECTED),
    ("failed", FAILED),
    ("timed_out", TIMED_OUT),
    ("released_unrun", RELEASED),
)


def bucket_index(duration_ns: int) -> int:
    """The histogram slot offset for one handler duration (the last one is +Inf)."""
    return bisect.bisect_left(BUCKET_NS, duration_ns)


@dataclass(slots=True)
class WorkerTotals:
    """Counters summed over workers, histogram as per-bucket (non-cumulative) counts."""

    counts: dict[str, int]
    handler_ns_total: int
    histogram: list[int]

    @classmethod
    def zero(cls) -> WorkerTotals:
        return cls({name: 0 for name, _ in SUMMED}, 0, [0] * (len(LATENCY_BUCKETS_S) + 1))

    def add_block(self, block: Sequence[int]) -> None:
        for name, slot in SUMMED:
            self.counts[name] += block[slot]
        self.handler_ns_total += block[HANDLER_NS_TOTAL]
        for i in range(len(self.histogram)):
            self.histogram[i] += block[HIST_BASE + i]

    def add(self, other: WorkerTotals) -> None:
        for name in self.counts:
            self.counts[name] += other.counts[name]
        self.handler_ns_total += other.handler_ns_total
        for i, value in enumerate(other.histogram):
            self.histogram[i] += value

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for value in self.histogram:
            running += value
            out.append(running)
        return out


#: Bucket upper bounds of the dwell histogram (receive -> handler start), in seconds: finer than
#: the handler buckets at the low end, where an engine on loopback keeps its messages.
DWELL_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def histogram_quantile(bounds_s: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a histogram of per-bucket counts (``len(bounds_s) + 1`` of them, the
    last one +Inf), interpolated linearly inside its bucket as Prometheus' ``histogram_quantile``
    does; None when it is empty. A quantile in the +Inf bucket is the highest finite bound."""
    if len(counts) != len(bounds_s) + 1:
        raise ValueError(f"{len(counts)} counts for {len(bounds_s)} bounds (+Inf)")
    total = sum(counts)
    if total == 0:
        return None
    rank = min(max(q, 0.0), 1.0) * total
    below = 0
    for i, count in enumerate(counts):
        if count and below + count >= rank:
            if i == len(bounds_s):
                return bounds_s[-1]
            lo = bounds_s[i - 1] if i else 0.0
            return lo + (bounds_s[i] - lo) * (rank - below) / count
        below += count
    return bounds_s[-1]
