"""Whether SQS answers, for how long it has not, how long to wait, and what is worth a log line.

In a long outage every poller fails every few seconds; logging each failure filled 21 MB in 26
minutes (issue 11). Here the calls of one kind (receives, or acks) share one :class:`Outage`:

- **backoff**: equal-jitter exponential from ``base_s`` up to ``cap_s`` by consecutive failures,
  shared by every poller, so a fleet of pollers backs off together;
- **log lines**: one when the state changes (the first failure, a different error, the
  recovery), and while it lasts one summary every ``summary_every_s`` ("SQS unreachable for
  2m10s, 37 attempts"), never a line per attempt;
- **health**: failing for longer than ``unhealthy_after_s`` makes the engine not ready; a single
  lost call does not.

Time and randomness are arguments; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Failure", "Outage", "format_duration"]


@dataclass(frozen=True, slots=True)
class Failure:
    """What one failed call tells the operator: ``delay_s`` to wait before the next one, and
    ``line`` to log (None: nothing new to say)."""

    delay_s: float
    line: str | None


class Outage:
    """The state of one kind of SQS call: answering, or failing since some time with some error."""

    def __init__(
        self,
        what: str,
        *,
        base_s: float = 0.1,
        cap_s: float = 20.0,
        summary_every_s: float = 60.0,
        unhealthy_after_s: float = 5.0,
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {base_s} and {cap_s}")
        self.what = what
        self.base_s, self.cap_s = base_s, cap_s
        self.summary_every_s = summary_every_s
        self.unhealthy_after_s = unhealthy_after_s
        self.failing_since: float | None = None
        self.attempts = 0  # failed calls since failing_since
        self.error = ""  # the kind of error last seen (its code or type)
        self.detail = ""  # its full text
        self._last_line_at = 0.0
        self.outages = 0  # how many times the state went from answering to failing

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, now: float, error: str, detail: str, rand: float) -> Failure:
        """A call failed with ``error`` (a code or exception type; what makes a state change)."""
        first = self.failing_since is None
        changed = not first and error != self.error
        if first:
            self.failing_since = now
            self.attempts = 0
            self.outages += 1
        self.attempts += 1
        self.error, self.detail = error, detail
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.attempts - 1, 60))
        delay = ceiling / 2 + ceiling / 2 * rand
        line: str | None = None
        if first:
            line = f"{self.what} failing: {detail}; retrying with backoff up to {self.cap_s:g} s"
        elif changed:
            line = f"{self.what} now failing with another error: {detail}"
        elif now - self._last_line_at >= self.summary_every_s:
            line = (
                f"{self.what} failing for {format_duration(now - self._since())}, "
                f"{self.attempts} attempts; last error: {detail}"
            )
        if line is not None:
            self._last_line_at = now
        return Failure(delay, line)

    def succeeded(self, now: float) -> str | None:
        """A call succeeded; the recovery line if it had been failing."""
        if self.failing_since is None:
            return None
        line = (
            f"{self.what} answering again after {format_duration(now - self.failing_since)} "
            f"and {self.attempts} failed attempts"
        )
        self.failing_since = None
        self.attempts = 0
        self.error = self.detail = ""
        return line

    def healthy(self, now: float) -> bool:
        return self.failing_since is None or now - self.failing_since < self.unhealthy_after_s

    def _since(self) -> float:
        assert self.failing_since is not None
        return self.failing_since


def format_duration(seconds: float) -> str:
    """``2m10s``, ``1h03m``, ``4.2s``: short enough for a log line, exact enough to act on."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
