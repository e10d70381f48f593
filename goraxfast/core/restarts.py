"""When a dead worker is replaced, and when the engine gives up instead.

A worker that dies while running handlers (a crash, a ``kill -9``, a timeout kill) is replaced
at once. A worker that cannot even start would be replaced forever by a naive supervisor; here a
seat that fails to come up ``max_start_failures`` times in a row stops the engine with an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    RESPAWN = "respawn"
    GIVE_UP = "give_up"


@dataclass(slots=True)
class RestartPolicy:
    """A worker "failed to start" when it exits before it was ready (past ``worker_init``), or
    within ``min_uptime_s`` having started nothing."""

    min_uptime_s: float = 1.0
    max_start_failures: int = 3
    _spawned_at: dict[int, float] = field(default_factory=dict)
    _start_failures: dict[int, int] = field(default_factory=dict)

    def spawned(self, seat: int, now: float) -> None:
        self._spawned_at[seat] = now

    def exited(self, seat: int, now: float, *, started_any: bool, ready: bool = True) -> Verdict:
        """``ready``: the worker got past its ``worker_init``. One that did not failed to start
        however long it tried (an init that fails after a minute must not respawn forever)."""
        uptime = now - self._spawned_at.get(seat, now)
        if started_any or (ready and uptime >= self.min_uptime_s):
            self._start_failures[seat] = 0
            return Verdict.RESPAWN
        failures = self._start_failures.get(seat, 0) + 1
        self._start_failures[seat] = failures
        return Verdict.GIVE_UP if failures >= self.max_start_failures else Verdict.RESPAWN

    def spawned_at(self, seat: int) -> float:
        return self._spawned_at.get(seat, 0.0)

    def start_failures(self, seat: int) -> int:
        return self._start_failures.get(seat, 0)
