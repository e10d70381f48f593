"""Recycling workers as the parent carries it out: budgets, memory readings, the drain word.

The rules are :mod:`goraxfast.core.recycling`'s. The steps here, and who takes each:

1. a worker is forked: :meth:`Recycler.fresh` gives its seat a message budget; once it is
   past its ``worker_init`` and before its first message, :meth:`Recycler.ready` reads its
   size when fresh;
2. the dispatcher hands a seat at most its budget, then nothing more (``SeatState.budget``);
   :meth:`watch_memory` sets the budget to 0 when the worker grew past the memory limit;
3. once a seat has run its budget and holds nothing, :meth:`spend` sets its drain word, and it
   exits 0 at once; one past the memory limit gets the drain word at once: it finishes the
   handler it runs and hands back what it has not started, which the dispatcher gives to
   another worker (not to SQS);
4. the workforce sees that exit, asks :meth:`recycled`, and forks a successor without counting
   a restart.

Memory is the worker's resident set (``/proc/<pid>/statm``, what ``ps`` and ``top`` call RSS),
read once a second per worker in the parent, never on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
from collections.abc import Callable

from goraxfast.core import counters as C
from goraxfast.core.recycling import (
    MIB,
    MemoryVerdict,
    memory_verdict,
    message_budget,
    reason_kind,
    recycle_reason,
)
from goraxfast.engine.seats import SeatState

__all__ = ["MEMORY_CHECK_INTERVAL_S", "Recycler", "resident_bytes"]

log = logging.getLogger("goraxfast.engine")

#: How often each worker's resident memory is read when WORKER_MAX_MEMORY_MB is set.
MEMORY_CHECK_INTERVAL_S = 1.0
PAGE_BYTES = resource.getpagesize()


def resident_bytes(pid: int) -> int | None:
    """A process's resident set in bytes (``statm``'s second field), None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


class Recycler:
    """The parent's side of ``WORKER_MAX_MESSAGES`` and ``WORKER_MAX_MEMORY_MB``."""

    def __init__(
        self,
        max_messages: int,
        max_memory_mb: int,
        *,
        rand: Callable[[], float] = random.random,
        read_rss: Callable[[int], int | None] = resident_bytes,
    ) -> None:
        self.max_messages = max_messages
        self.limit_bytes = max_memory_mb * MIB
        self.rand = rand
        self.read_rss = read_rss
        #: workers recycled, by which limit: "messages" or "memory"
        self.counts = {"messages": 0, "memory": 0}
        self._fresh_rss: dict[int, int] = {}  # pid -> resident bytes when first read
        self._reported_low_limit = False

    @property
    def watches_memory(self) -> bool:
        return self.limit_bytes > 0

    def fresh(self, seat: SeatState) -> None:
        """A worker was just forked into ``seat``: its budget, and nothing decided yet."""
        seat.budget = message_budget(self.max_messages, self.rand())
        seat.recycling = seat.recycling_reason = ""

    def ready(self, seat: SeatState) -> None:
        """A worker past its worker_init, before its first message: its size when fresh."""
        rss = self.read_rss(seat.pid)
        if rss is not None:
            self._fresh_rss[seat.pid] = rss

    def spend(self, seat: SeatState) -> None:
        """A seat that ran its message budget and holds nothing more: tell its worker to exit."""
        if seat.recycling or not seat.alive or seat.slots:
            return
        if not seat.recycling_reason:
            seat.recycling_reason = recycle_reason(
                messages=seat.seat.counters[C.STARTED], max_messages=self.max_messages
            )
        self._drain(seat)

    @staticmethod
    def _drain(seat: SeatState) -> None:
        """The drain word: the worker finishes the handler it runs, hands back what it has not
        started (the dispatcher gives those to another worker) and exits 0."""
        seat.recycling = seat.recycling_reason
        seat.seat.counters[C.CONTROL] = C.CONTROL_DRAIN
        seat.producer.notify()

    def recycled(self, seat: SeatState, pid: int, clean_exit: bool) -> str:
        """The reason a worker that just exited was recycled, "" if it was not (it died)."""
        reason = seat.recycling if clean_exit else ""
        self._fresh_rss.pop(pid, None)
        seat.recycling = seat.recycling_reason = ""
        if reason:
            self.counts[reason_kind(reason)] += 1
        return reason

    def check_memory(self, seats: list[SeatState]) -> None:
        """Read each live, ready worker's memory once; one over the limit gets no more work."""
        for seat in seats:
            if not (seat.alive and seat.ready and seat.pid) or seat.budget == 0:
                continue
            rss = self.read_rss(seat.pid)
            if rss is None:
                continue
            fresh = self._fresh_rss.setdefault(seat.pid, rss)
            verdict = memory_verdict(rss, fresh, self.limit_bytes)
            if verdict is MemoryVerdict.LIMIT_BELOW_FRESH:
                if not self._reported_low_limit:
                    self._reported_low_limit = True
                    log.warning(
                        "WORKER_MAX_MEMORY_MB=%d is below what a fresh worker holds (worker %d: "
                        "%.0f MiB resident once started): not applied, or every worker would "
                        "be replaced as soon as it starts",
                        self.limit_bytes // MIB,
                        seat.index,
                        fresh / MIB,
                    )
                continue
            if verdict is MemoryVerdict.RECYCLE:
                seat.budget = 0
                seat.recycling_reason = recycle_reason(
                    messages=seat.seat.counters[C.STARTED],
                    max_messages=self.max_messages,
                    rss_bytes=rss,
                    limit_bytes=self.limit_bytes,
                )
                self._drain(seat)  # now: a worker that grew must not run its whole ring first

    async def watch_memory(self, seats: list[SeatState]) -> None:
        while True:
            await asyncio.sleep(MEMORY_CHECK_INTERVAL_S)
            self.check_memory(seats)
