"""The receive pipeline: as many long polls in flight, and as much room for messages, as the
round trip and the handlers call for (the rule is :mod:`goraxfast.core.pipeline`).

On loopback two pollers keep any handler busy; through a 15–40 ms round trip an engine needs
tens of receives in flight, or it is bound by Little's law far below what its CPU allows. So
this task observes what the pollers and handlers do, asks the sizer for a plan every
:data:`PLAN_INTERVAL_S`, and applies it: the credits' capacity and the room a poller waits for,
new pollers when the plan grows, and, when it shrinks, pollers told to stop after the receive
they are in (a long poll is never abandoned: SQS would hide what it brings for the visibility
timeout). Everything here is I/O and bookkeeping; every decision is the sizer's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from goraxfast.core.pipeline import PipelinePlan, PipelineSizer
from goraxfast.core.retry import Outcome
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.poller import Credits, Poller

log = logging.getLogger("goraxfast.engine")

#: How often the plan is made again (the sizer's windows are a quarter second and longer; a
#: probe's step waits out two round trips, so at 15 ms a tick of 25 ms, not 50, is what keeps
#: each step to one tick). A plan costs ~10 µs: 40 a second are ~0.04 % of a core.
PLAN_INTERVAL_S = 0.025


@dataclass(slots=True)
class PipelineCounters:
    """What the pipeline chose, for the engine's stats: now, and the most during the run."""

    pollers: int = 0
    prefetch: int = 0
    pollers_max: int = 0
    prefetch_max: int = 0
    reason: str = ""


class ReceivePipeline:
    """Keeps ``plan.pollers`` pollers receiving and the credits sized to ``plan.capacity``."""

    def __init__(
        self,
        sizer: PipelineSizer,
        credits: Credits,
        dispatcher: Dispatcher,
        make_poller: Callable[[], Poller],
        *,
        slots: int,
        workers_at_once: int,
        handler_s: Callable[[], float | None],
        clock: Callable[[], float],
        on_poller_failed: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        self.sizer = sizer
        self.credits = credits
        self.dispatcher = dispatcher
        self.make_poller = make_poller
        self.slots = slots  # QUEUE_CONCURRENT_WORKERS: the credits' capacity is slots + prefetch
        self.workers_at_once = workers_at_once
        self.handler_s = handler_s
        self.clock = clock
        self.on_poller_failed = on_poller_failed
        self.counters = PipelineCounters()
        self.plan: PipelinePlan | None = None
        self.stopping = False
        self._active: list[tuple[Poller, asyncio.Task[None]]] = []
        self._retiring: list[tuple[Poller, asyncio.Task[None]]] = []
        self._retired: set[asyncio.Task[None]] = set()
        self._completed_seen = 0
        self._reason = ""

    # --- what the pollers and handlers report --------------------------------------------------

    def observe_receive(
        self, now_s: float, rtt_s: float, count: int, wait_s: float, asked: int
    ) -> None:
        self.sizer.observe_receive(now_s, rtt_s, count, wait_s, asked)

    # --- running ---------------------------------------------------------------------------

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for _, task in (*self._active, *self._retiring)]

    def start(self) -> None:
        """The first plan (nothing measured yet: the sizer's minimum, or the fixed values)."""
        self._apply(self._plan())

    async def run(self) -> None:
        while not self._stopped():
            await asyncio.sleep(PLAN_INTERVAL_S)
            if self._stopped():
                return
            self._apply(self._plan())

    def _stopped(self) -> bool:
        return self.stopping  # a call: mypy would take the flag as fixed across awaits

    def stop(self) -> list[asyncio.Task[None]]:
        """No new receive from now on: cancel the pollers that are not in one, and return the
        tasks of those that are (their long polls are let finish)."""
        self.stopping = True
        in_flight = []
        for poller, task in (*self._active, *self._retiring):
            if poller.stop() and not task.done():
                in_flight.append(task)
            else:
                task.cancel()
        return in_flight

    # --- internals -------------------------------------------------------------------------

    def _plan(self) -> PipelinePlan:
        now = self.clock()
        completed = self.dispatcher.counters.completed
        done = sum(completed.values()) - completed[Outcome.RELEASED]
        self.sizer.observe_completions(now, done - self._completed_seen)
        self._completed_seen = done
        held = len(self.dispatcher.held)
        ready = len(self.dispatcher.ready)
        waiting = self.dispatcher.limiter.waiting_total()
        return self.sizer.plan(
            now,
            workers=self.workers_at_once,
            running=max(0, held - ready - waiting),
            ready=ready,
            handler_s=self.handler_s(),
            pollers_waiting=self.credits.waiting,
        )

    def _apply(self, plan: PipelinePlan) -> None:
        self.plan = plan
        c = self.counters
        c.pollers, c.prefetch = plan.pollers, plan.prefetch
        c.pollers_max = max(c.pollers_max, plan.pollers)
        c.prefetch_max = max(c.prefetch_max, plan.prefetch)
        if plan.reason.value != self._reason:
            log.debug(
                "pipeline: %d receives in flight, prefetch %d (%s; rtt %s, %.0f msg/s)",
                plan.pollers,
                plan.prefetch,
                plan.reason.value,
                "n/a" if plan.rtt_s is None else f"{plan.rtt_s * 1000:.1f} ms",
                plan.rate_per_s,
            )
            self._reason = c.reason = plan.reason.value
        self.credits.resize(self.slots + plan.prefetch, plan.receive_at_least)
        self._retiring = [(p, t) for p, t in self._retiring if not t.done()]
        while len(self._active) < plan.pollers and not self.stopping:
            self._spawn()
        while len(self._active) > plan.pollers:
            # The newest first: it is the likeliest to be waiting for room, not receiving.
            poller, task = self._active.pop()
            poller.stop()
            self._retiring.append((poller, task))
            self._retired.add(task)  # until its done-callback has run (pruning may come first)

    def _spawn(self) -> None:
        poller = self.make_poller()
        index = len(self._active) + len(self._retiring)
        task = asyncio.get_running_loop().create_task(
            poller.run(), name=f"goraxfast-poller-{index}"
        )
        task.add_done_callback(self._poller_done)
        self._active.append((poller, task))

    def _poller_done(self, task: asyncio.Task[None]) -> None:
        """A poller told to stop ends quietly; any other end is the engine's business."""
        if task.cancelled():
            return
        if task.exception() is None and (task in self._retired or self.stopping):
            self._retired.discard(task)
            return
        self.on_poller_failed(task)
