"""The worker processes as the parent sees them: their seats, the zygote, replacing and killing.

The engine decides *when* (start, shutdown); this module knows *how*: seats are made before any
fork, a worker is ready once past its ``worker_init``, the zygote's events are read here (a
worker spawned, a worker exited) and a worker's death is handled in one place
(:meth:`Workforce._on_exit`: what it held goes to the dispatcher's ``on_lost``, its counters are
folded into the totals, it is replaced until the restart policy gives up), and a handler over
QUEUE_PROCESS_TIMEOUT is ended by killing its worker (a sync handler cannot be interrupted),
after asking it for its stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator

from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.restarts import RestartPolicy, Verdict
from goraxfast.engine.recycler import Recycler
from goraxfast.engine.seats import ALL_SLOTS, NOT_TIMED_OUT, SeatState
from goraxfast.errors import EngineError
from goraxfast.ipc.rings import Seat, create_seats
from goraxfast.worker.handler import BoundHandler
from goraxfast.worker.loop import STACK_DUMP_SIGNAL
from goraxfast.worker.zygote import EVT_SPAWNED, WorkerEvent, Zygote

log = logging.getLogger("goraxfast.engine")

#: How long a timed-out worker has to write its stack before SIGKILL.
STACK_DUMP_GRACE_S = 0.25

START_TIMEOUT_S = 30.0
#: How often running handlers are checked against QUEUE_PROCESS_TIMEOUT.
SUPERVISE_INTERVAL_S = 0.1
ASYNC_HEARTBEAT_SLACK_S = 2.0


def split_capacity(total: int, workers: int) -> list[int]:
    """Share a number of deliveries among worker processes as evenly as integers allow."""
    base, extra = divmod(total, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


class Workforce:
    """Every worker seat, the zygote that forks into them, and their replacement rules."""

    def __init__(
        self,
        config: Config,
        bound: BoundHandler,
        caps: list[int],
        worker_init: Callable[[int], None] | None,
        shallow_caps: list[int] | None = None,
    ) -> None:
        self.config = config
        self.bound = bound
        self.caps = caps
        self.shallow_caps = shallow_caps or caps
        self.worker_init = worker_init
        self.seats: list[Seat] = []
        self.states: list[SeatState] = []
        self.zygote: Zygote | None = None
        self.restarts = RestartPolicy()
        self.recycler = Recycler(config.worker_max_messages, config.worker_max_memory_mb)
        self.retired = C.WorkerTotals.zero()  # counters of workers gone, so totals never drop
        self.replaced = 0
        self.stopping = False  # draining: dead workers are not replaced
        self.zygote_gone = False
        self.all_exited = asyncio.Event()
        self._on_spawned: Callable[[SeatState], None] = _ignore
        self._on_lost: Callable[[SeatState, str], None] = _ignore_loss
        self._on_fatal: Callable[[BaseException], None] = _ignore

    # --- start ---------------------------------------------------------------------------------

    def fork(self) -> None:
        """Seats and the zygote, then the first workers; returns once each is ready or settled.

        Ready is past ``worker_init`` (a worker writes its pid into its block only then), or up
        for as long as the restart policy takes to call it started: a slow init (loading a
        model) must not hold start() up, while an init that fails at once is reported here.
        A worker gone before the engine runs is treated as at run time: replaced until it fails
        to start too often in a row.
        """
        cfg = self.config
        n = len(self.caps)
        self.seats = create_seats(n, _ring_bytes(cfg.ring_bytes), C.COUNTER_SLOTS)
        self.states = [
            SeatState.of(i, s, self.caps[i], self.shallow_caps[i]) for i, s in enumerate(self.seats)
        ]
        self.zygote = Zygote(
            self.seats,
            self.bound,
            process_timeout_s=cfg.process_timeout_s,
            worker_init=self.worker_init,
        )
        self.zygote.start()
        for i in range(n):
            self._spawn(i)
        waiting = set(range(n))
        deadline = time.monotonic() + START_TIMEOUT_S
        while waiting and time.monotonic() < deadline:
            for ev in self.zygote.wait_events(0.05):
                if ev.kind == EVT_SPAWNED:
                    self.spawned(ev)
                    continue
                started_any, ready = self.exited(ev)
                self.retire(self.states[ev.seat])
                if self.verdict(ev, started_any=started_any, ready=ready) is Verdict.GIVE_UP:
                    message = self.give_up_message(ev)
                    self._abandon()
                    raise EngineError(message)
                self.replace(ev.seat)
                waiting.add(ev.seat)
            now = time.monotonic()
            for i in list(waiting):
                st = self.states[i]
                settled = now - self.restarts.spawned_at(i) >= self.restarts.min_uptime_s
                if st.alive and (st.seat.counters[C.PID] == st.pid or settled):
                    waiting.discard(i)
        if waiting:
            self._abandon()
            raise EngineError(
                f"workers {sorted(waiting)} did not start within {START_TIMEOUT_S:g} s"
            )

    def _abandon(self) -> None:
        """A start that failed: nothing forked or mapped is left, and a new start begins anew."""
        self.stop()
        self.close()
        self.zygote = None
        self.seats, self.states = [], []

    # --- events from the zygote ----------------------------------------------------------------

    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        guard: Callable[..., None],
        on_spawned: Callable[[SeatState], None],
        on_lost: Callable[[SeatState, str], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        """Read the zygote's events on ``loop`` (each callback run through ``guard``, which turns an
        exception into a fatal error). ``on_lost(seat, how)`` settles what a dead worker held;
        ``on_fatal`` gets the conditions the engine cannot run on from."""
        assert self.zygote is not None
        self._on_spawned, self._on_lost, self._on_fatal = on_spawned, on_lost, on_fatal
        self.all_exited = asyncio.Event()
        loop.add_reader(self.zygote.events_fd, guard, self._on_zygote_events)

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.zygote is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.zygote.events_fd)

    def _on_zygote_events(self) -> None:
        assert self.zygote is not None
        try:
            events = self.zygote.read_events()
        except EngineError as exc:
            # Its pipe is at EOF and stays readable: stop watching it, or this runs (and logs)
            # in a tight loop until the process ends.
            self.zygote_gone = True
            self.unwatch(asyncio.get_running_loop())
            if self.stopping:
                log.warning("%s while stopping; its workers' exits can no longer be seen", exc)
                self.all_exited.set()
                return
            self._on_fatal(exc)
            return
        for ev in events:
            if ev.kind == EVT_SPAWNED:
                self._on_spawned(self.spawned(ev))
            elif 0 <= ev.seat < len(self.states):
                self._on_exit(ev)

    def _on_exit(self, ev: WorkerEvent) -> None:
        """A worker died: what it held is settled, its counters kept, and it is replaced (or,
        when the seat keeps failing to start, the engine is stopped)."""
        seat = self.states[ev.seat]
        started_any, ready = self.exited(ev)
        how = f"worker {ev.seat} (pid {ev.pid}) {ev.describe_exit()}"
        lost = len(seat.slots)
        self._on_lost(seat, how)  # what a recycled worker handed back is still taken back
        recycled = self.recycler.recycled(seat, ev.pid, clean_exit=ev.clean())
        self.retire(seat)
        if self.stopping:
            if not self.any_alive():
                self.all_exited.set()
            return
        if recycled:
            log.info(
                "worker %d (pid %d) recycled: %s; forking a fresh one", ev.seat, ev.pid, recycled
            )
            self.restarts.exited(ev.seat, time.monotonic(), started_any=True)
            self._spawn(ev.seat)
            return
        log.warning("%s with %d deliveries in hand; replacing it", how, lost)
        if self.verdict(ev, started_any=started_any, ready=ready) is Verdict.GIVE_UP:
            self._on_fatal(EngineError(self.give_up_message(ev)))
            return
        self.replace(ev.seat)

    def spawned(self, ev: WorkerEvent) -> SeatState:
        seat = self.states[ev.seat]
        seat.pid, seat.alive, seat.ready = ev.pid, True, False
        self.recycler.fresh(seat)
        return seat

    def exited(self, ev: WorkerEvent) -> tuple[bool, bool]:
        """Mark the seat dead; (it started any handler, it got past worker_init)."""
        seat = self.states[ev.seat]
        counters = seat.seat.counters
        started_any = counters[C.STARTED] > 0
        ready = counters[C.PID] == ev.pid
        seat.alive, seat.pid, seat.ready = False, 0, False
        return started_any, ready

    def retire(self, seat: SeatState) -> None:
        """Fold a dead worker's counters into the totals and zero its seat for a successor."""
        self.retired.add_block(seat.seat.counters)
        seat.seat.reset()

    def verdict(self, ev: WorkerEvent, *, started_any: bool, ready: bool) -> Verdict:
        return self.restarts.exited(ev.seat, time.monotonic(), started_any=started_any, ready=ready)

    def give_up_message(self, ev: WorkerEvent) -> str:
        return (
            f"worker {ev.seat} failed to start {self.restarts.start_failures(ev.seat)} times in "
            f"a row (last: {ev.describe_exit()}); stopping"
        )

    def replace(self, index: int) -> None:
        """Fork a successor into a retired seat."""
        self.replaced += 1
        self._spawn(index)

    def _spawn(self, index: int) -> None:
        assert self.zygote is not None
        self.restarts.spawned(index, time.monotonic())
        self.zygote.spawn(index)

    # --- supervision ---------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Kill the workers whose handler overran QUEUE_PROCESS_TIMEOUT, every tick (the
        workers write when their handler started; nothing tells the parent, so it looks)."""
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            for seat, slot, why in list(self.overdue(time.monotonic_ns())):
                self.kill_for_timeout(seat, slot, why)

    def overdue(self, now_ns: int) -> Iterator[tuple[SeatState, int, str]]:
        """Workers running a handler past QUEUE_PROCESS_TIMEOUT: (seat, slot or ALL_SLOTS, why).

        A sync worker reports its running slot and since when; an async one is overdue only
        when its event loop stopped beating (a handler blocking the loop): per-task timeouts
        are enforced inside the worker.
        """
        timeout_s = self.config.process_timeout_s
        timeout_ns = int(timeout_s * 1e9)
        for seat in self.states:
            if not seat.alive or seat.timed_out_slot != NOT_TIMED_OUT:
                continue
            c = seat.seat.counters
            if self.bound.is_async:
                beat = c[C.HEARTBEAT_NS]
                if (
                    seat.slots
                    and beat
                    and now_ns - beat > timeout_ns + ASYNC_HEARTBEAT_SLACK_S * 1e9
                ):
                    yield seat, ALL_SLOTS, "its event loop was blocked"
                continue
            slot = c[C.BUSY_SLOT]
            since = c[C.BUSY_SINCE_NS]
            if since and now_ns - since > timeout_ns and c[C.BUSY_SLOT] == slot:
                yield seat, slot, f"handler over {timeout_s:g} s"

    def kill_for_timeout(self, seat: SeatState, slot: int, why: str) -> None:
        """Ask the worker for its stack (it writes it to stderr), then SIGKILL it shortly after."""
        log.warning(
            "killing worker %d (pid %d): %s (QUEUE_PROCESS_TIMEOUT); its stack follows",
            seat.index,
            seat.pid,
            why,
        )
        seat.timed_out_slot = slot
        pid = seat.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, STACK_DUMP_SIGNAL)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._kill(seat, pid)
        else:
            loop.call_later(STACK_DUMP_GRACE_S, self._kill, seat, pid)

    @staticmethod
    def _kill(seat: SeatState, pid: int) -> None:
        if seat.pid == pid:  # not replaced meanwhile (a pid is never reused while unreaped)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- observation and the end ---------------------------------------------------------------

    def totals(self) -> C.WorkerTotals:
        totals = C.WorkerTotals.zero()
        totals.add(self.retired)
        for seat in self.seats:
            totals.add_block(seat.counters)
        return totals

    def pids(self) -> list[int]:
        return [s.pid for s in self.states if s.alive]

    def any_alive(self) -> bool:
        return any(s.alive for s in self.states)

    def ask_to_drain(self) -> None:
        """Workers finish what they run, hand back what they have not started, and exit."""
        self.stopping = True
        if not self.any_alive():
            self.all_exited.set()
        for seat in self.states:
            seat.seat.counters[C.CONTROL] = C.CONTROL_DRAIN
            seat.producer.notify()

    def kill_all(self) -> None:
        for seat in self.states:
            if seat.alive and seat.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(seat.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill what is left and stop the zygote."""
        if self.zygote is not None:
            self.kill_all()
            self.zygote.stop()

    def close(self) -> None:
        """Unmap the seats (in this process): last, once nothing reads them any more."""
        for shared in self.seats:
            with contextlib.suppress(Exception):
                shared.close()


def _ignore(_: object) -> None:
    pass


def _ignore_loss(_seat: SeatState, _how: str) -> None:
    pass


def _ring_bytes(configured: int) -> int:
    return configured - configured % 8
