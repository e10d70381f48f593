"""Queue health rules (the README's "Health and metrics") as one pure function.

gorax computed its boolean ``IsHealthy`` and its detailed status separately, and they disagreed
before the first collection; its staleness was a fixed 5 minutes whatever the collection
interval. Here :func:`evaluate` is the only place the rules live: ``healthy`` is *defined* as
"no issues", so a yes/no check and the detailed status cannot disagree. Time is an argument.

Invariants:
- issues come in gorax's order: DLQ, depth, staleness;
- no metrics yet counts as stale (we cannot vouch for a queue we have never looked at);
- metrics are stale when older than ``2 * interval_s + STALE_SLACK_S``: one missed collection is
  tolerated (an SQS call may be slow or fail once), two are not; the slack covers the duration of
  a collection itself, so a short interval does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Seconds added to the staleness bound to absorb the time a collection takes.
STALE_SLACK_S = 5.0
#: Collections that may be missed before metrics count as stale.
STALE_INTERVALS = 2


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """One snapshot of the queue, as SQS's approximate counters reported it at ``updated_at``."""

    visible: int
    in_flight: int
    delayed: int
    dlq_depth: int | None  # None: no DLQ configured, or it could not be read
    updated_at: float  # epoch seconds

    @property
    def total(self) -> int:
        """The queue depth: every message SQS holds for the queue, whatever its state."""
        return self.visible + self.in_flight + self.delayed

    def to_dict(self) -> dict[str, Any]:
        return {
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "total": self.total,
            "dlq_depth": self.dlq_depth,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """The verdict and its reasons; ``healthy`` is true exactly when ``issues`` is empty."""

    healthy: bool
    issues: tuple[str, ...]
    checked_at: float
    metrics: QueueMetrics | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``/health``."""
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "healthy": self.healthy,
            "issues": list(self.issues),
            "checked_at": self.checked_at,
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
        }


def stale_after_s(interval_s: float) -> float:
    """Age beyond which metrics collected every ``interval_s`` seconds no longer count."""
    return STALE_INTERVALS * interval_s + STALE_SLACK_S


def evaluate(
    metrics: QueueMetrics | None, *, now: float, interval_s: float, max_depth: int
) -> HealthStatus:
    """Apply the three rules; ``max_depth`` 0 disables the depth rule."""
    issues: list[str] = []
    if metrics is not None and metrics.dlq_depth:
        issues.append(f"DLQ contains {metrics.dlq_depth} messages")
    if metrics is not None and max_depth > 0 and metrics.total > max_depth:
        issues.append(f"Queue depth {metrics.total} exceeds threshold {max_depth}")
    if metrics is None or now - metrics.updated_at > stale_after_s(interval_s):
        issues.append("Metrics are stale")
    return HealthStatus(healthy=not issues, issues=tuple(issues), checked_at=now, metrics=metrics)
