"""How often a repeated log event is written in full: a token bucket with a summary of the rest.

A failing deploy makes every handler raise; a worker that logged each traceback would write
thousands of lines a second. The rule, per worker: the first ``burst`` events are written in full;
after that one more every ``refill_s`` seconds. The events refused in between are counted and
reported as one line ("N more ... suppressed in the last M s") the next time one is written in
full, when the worker is idle once a token is back (:meth:`LogBudget.due`), or when the worker
leaves (:meth:`LogBudget.flush`).

Time is an argument (seconds on any monotonic clock); nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Admission", "LogBudget", "Suppressed"]

DEFAULT_BURST = 5
DEFAULT_REFILL_S = 60.0


@dataclass(frozen=True, slots=True)
class Suppressed:
    """``count`` events were not written in full during the last ``window_s`` seconds."""

    count: int
    window_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    """Write this event in full (``full``), after the summary of those suppressed before it."""

    full: bool
    summary: Suppressed | None = None


_REFUSED = Admission(False)
_ADMITTED = Admission(True)


class LogBudget:
    """A token bucket of ``burst`` tokens, one token back every ``refill_s`` seconds."""

    __slots__ = ("_first_suppressed", "_stamp", "_tokens", "burst", "refill_s", "suppressed")

    def __init__(self, burst: int = DEFAULT_BURST, refill_s: float = DEFAULT_REFILL_S) -> None:
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if not refill_s > 0:
            raise ValueError(f"refill_s must be > 0, got {refill_s}")
        self.burst = burst
        self.refill_s = refill_s
        self._tokens = float(burst)
        self._stamp: float | None = None
        #: Events refused since the last summary (0: nothing to report).
        self.suppressed = 0
        self._first_suppressed = 0.0

    def admit(self, now: float) -> Admission:
        """One event happened at ``now``: is it written in full, and is a summary due first?"""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            summary = self._take(now)
            return _ADMITTED if summary is None else Admission(True, summary)
        if self.suppressed == 0:
            self._first_suppressed = now
        self.suppressed += 1
        return _REFUSED

    def due(self, now: float) -> Suppressed | None:
        """The summary to write while nothing happens: once a full event would be allowed
        again, the ones refused until then are reported without waiting for another event."""
        if self.suppressed == 0:
            return None
        self._refill(now)
        return self._take(now) if self._tokens >= 1.0 else None

    def flush(self, now: float) -> Suppressed | None:
        """The summary of whatever is still unreported (the worker is leaving)."""
        return self._take(now)

    def _refill(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._stamp) / self.refill_s
            )
        if self._stamp is None or now > self._stamp:
            self._stamp = now

    def _take(self, now: float) -> Suppressed | None:
        if self.suppressed == 0:
            return None
        summary = Suppressed(self.suppressed, max(0.0, now - self._first_suppressed))
        self.suppressed = 0
        return summary
