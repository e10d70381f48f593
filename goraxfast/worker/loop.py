"""A forked worker process: takes deliveries off its down ring, runs the handler, reports back.

The worker never sees a receipt handle and never talks to SQS: it gets ``(slot, body, facts)``
and answers ``(slot, outcome)``. It ends with ``os._exit`` (never ``sys.exit``: unwinding would
run the parent's inherited atexit/loop teardown in the child) and leaves on its own when its
parent goes away, so an orphan never keeps running handlers.

Signals. Shutdown is the engine's to decide: SIGTERM, SIGINT and SIGHUP sent to the whole process
group (systemd's ``KillMode=control-group``, dumb-init, GNU ``timeout``, Ctrl-C) do nothing here;
the engine drains a worker through its control word and ends it with SIGKILL when it must. Its
parent (the zygote) dying ends it: at once on Linux (``PR_SET_PDEATHSIG``: SIGKILL, even in the
middle of a handler), and elsewhere within :data:`IDLE_WAIT_S` of its next idle moment.

Failures. A handler that raises (anything but Retry and Reject) has its traceback logged,
within a budget (:mod:`goraxfast.core.ratelimit`: the first few in full, then one a minute and
one line counting the rest), so that a failing deploy cannot flood the log; the result's reason
is ``"Type: text"`` on one line. Nothing is logged for a success.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import faulthandler
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from goraxfast.core import counters as C
from goraxfast.core.exit_codes import (
    WORKER_EXIT_CRASHED,
    WORKER_EXIT_INIT_FAILED,
    WORKER_EXIT_OK,
)
from goraxfast.core.message import ExecutionMessage, decode_message, decode_trusted_message
from goraxfast.core.ratelimit import LogBudget, Suppressed
from goraxfast.core.records import DELIVERY_DECODER, RESULT_ENCODER, Delivery, Result
from goraxfast.core.retry import Outcome
from goraxfast.ipc.rings import Seat
from goraxfast.ops import tracing
from goraxfast.worker.current import RUNNING
from goraxfast.worker.handler import BoundHandler, DeliveryInfo, Reject, Retry, call_args

# exit codes: the table is goraxfast.core.exit_codes
EXIT_OK = WORKER_EXIT_OK
EXIT_CRASHED = WORKER_EXIT_CRASHED
EXIT_INIT_FAILED = WORKER_EXIT_INIT_FAILED
IDLE_WAIT_S = 0.25  # how often an idle worker checks for drain/orphaning
NOTIFY_EVERY_NS = 1_000_000  # a busy worker still wakes the parent at least every 1 ms
REASON_MAX_CHARS = 1000
#: Left to the parent: a process group's signal must not kill a child while the parent drains.
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Sent by the parent to a worker it is about to kill for QUEUE_PROCESS_TIMEOUT.
STACK_DUMP_SIGNAL = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("goraxfast.worker")  # a stable name for operators' filters


def run_worker(
    seat: Seat,
    bound: BoundHandler,
    index: int,
    *,
    parent_pid: int,
    process_timeout_s: float,
    worker_init: Callable[[int], None] | None = None,
) -> NoReturn:
    """Entry point in the child right after fork. Never returns."""
    code = EXIT_CRASHED
    try:
        _reset_inherited_state()
        if not die_with_parent(parent_pid):
            code = EXIT_OK  # orphaned before it could start
            return  # type: ignore[misc]  # the finally clause exits
        if worker_init is not None:
            try:
                worker_init(index)
            except BaseException:
                # through logging, not print_exc: in JSON mode it stays one line like the rest
                log.exception("worker %d: worker_init raised; the worker exits", index)
                code = EXIT_INIT_FAILED
                return  # type: ignore[misc]  # the finally clause exits
        runner = _AsyncWorker if bound.is_async else _SyncWorker
        worker = runner(seat, bound, index, parent_pid, process_timeout_s)
        code = worker.run()
        worker.log_suppressed(final=True)
    except SystemExit as exc:  # raised by the worker's own loop when it finds itself orphaned
        code = exc.code if isinstance(exc.code, int) else EXIT_CRASHED
    except BaseException:
        log.exception("worker %d crashed (its own machinery, not a handler)", index)
    finally:
        try:
            with contextlib.suppress(Exception):
                tracing.flush(timeout_s=2.0)  # os._exit runs no atexit hook: spans held go now
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reset_inherited_state() -> None:
    """Undo what the fork copied from the parent that would misfire here.

    An inherited ``signal.set_wakeup_fd`` would write this process's signal numbers into the
    parent's event loop (a SIGTERM here would stop the parent).
    """
    leave_shutdown_to_parent()
    asyncio.events._set_running_loop(None)
    # A handler over QUEUE_PROCESS_TIMEOUT gets this signal before SIGKILL (as gunicorn sends
    # SIGABRT first): faulthandler writes every thread's stack to stderr, from C, even while
    # the handler holds the GIL in a loop, so the log says where it was stuck.
    faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True)


def _shutdown_is_the_parents(signum: int, frame: FrameType | None) -> None:
    """SIGTERM, SIGINT, SIGHUP in a child: nothing to do (see :func:`leave_shutdown_to_parent`)."""


def leave_shutdown_to_parent() -> None:
    """Make SIGTERM, SIGINT and SIGHUP harmless in this (child) process; SIGCHLD default.

    A Python-level no-op handler, not ``SIG_IGN``: an ignored signal stays ignored across
    ``exec``, so a program a handler starts (``subprocess``) would ignore SIGTERM too, while a
    handler is reset to the default by ``exec``. ``siginterrupt(False)`` (SA_RESTART) keeps a
    handler's blocking calls in C libraries from seeing EINTR when a group signal arrives.
    """
    signal.set_wakeup_fd(-1)
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, _shutdown_is_the_parents)
        signal.siginterrupt(sig, False)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``).

    The kernel's notice covers what polling ``os.getppid()`` cannot: a sync handler that runs
    for minutes. It fires when the parent *thread* that forked us ends; a worker's parent is the
    single-threaded zygote, so that is the zygote's death. Elsewhere (macOS) this does nothing
    and the idle checks of ``os.getppid()`` remain. Returns False when the parent is already
    gone (it died between the fork and this call): the caller leaves at once.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return os.getppid() == parent_pid


_OUTCOME_COUNTER = {
    Outcome.SUCCESS: C.SUCCEEDED,
    Outcome.RETRY: C.RETRIED,
    Outcome.REJECT: C.REJECTED,
    Outcome.FAIL: C.FAILED,
    Outcome.TIMEOUT: C.TIMED_OUT,
    Outcome.CRASH: C.FAILED,
    Outcome.RELEASED: C.RELEASED,
}
# The same, indexed by the outcome's int value: building an Outcome per result costs 0.3 us.
_COUNTER_BY_VALUE = [0] * (max(int(o) for o in Outcome) + 1)
for _outcome, _slot in _OUTCOME_COUNTER.items():
    _COUNTER_BY_VALUE[int(_outcome)] = _slot
_RELEASED = int(Outcome.RELEASED)
_SUCCESS = int(Outcome.SUCCESS)


def _failure_reason(exc: BaseException) -> str:
    """``"ValueError: bad input"``: the exception's type and text on one line (the parent logs
    it and the DLQ copy carries it), bounded."""
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ raises must not take the worker down
        text = "<unprintable>"
    line = " ".join(f"{type(exc).__name__}: {text}".split()) if text else type(exc).__name__
    return line[:REASON_MAX_CHARS]


def outcome_of(exc: BaseException | None) -> tuple[Outcome, float, str]:
    """What a handler's ending means: (outcome, retry delay or -1, reason)."""
    if exc is None:
        return Outcome.SUCCESS, -1.0, ""
    if isinstance(exc, Retry):
        return Outcome.RETRY, exc.delay_s, exc.reason[:REASON_MAX_CHARS]
    if isinstance(exc, Reject):
        return Outcome.REJECT, -1.0, exc.reason[:REASON_MAX_CHARS]
    return Outcome.FAIL, -1.0, _failure_reason(exc)


class _WorkerBase:
    def __init__(
        self,
        seat: Seat,
        bound: BoundHandler,
        index: int,
        parent_pid: int,
        process_timeout_s: float,
    ) -> None:
        self.seat = seat
        self.bound = bound
        self.index = index
        self.parent_pid = parent_pid
        self.process_timeout_s = process_timeout_s
        self.counters = seat.counters
        self.down = seat.down.consumer()
        self.up = seat.up.producer()
        self.counters[C.PID] = os.getpid()
        self._last_notify_ns = 0
        self.tracebacks = LogBudget()

    def log_failure(
        self, d: Delivery, exc: BaseException, msg: ExecutionMessage | None = None
    ) -> None:
        """Log a failed handler's traceback, within the budget (Retry and Reject are outcomes
        the handler chose: not logged here; the parent logs every failed attempt in one line)."""
        if isinstance(exc, (Retry, Reject)):
            return
        admission = self.tracebacks.admit(time.monotonic())
        if admission.summary is not None:
            self._log_summary(admission.summary)
        if admission.full:
            tenant = f", tenant {msg.tenant_id}, execution {msg.execution_id}" if msg else ""
            log.error(
                "handler %s raised on message %s (receive count %d%s, worker %d)",
                self.bound.describe(),
                d.message_id,
                d.receive_count,
                tenant,
                self.index,
                exc_info=exc,
            )

    def log_suppressed(self, *, final: bool = False) -> None:
        """The count of tracebacks left out, once it is due (or, ``final``, whatever is left)."""
        now = time.monotonic()
        summary = self.tracebacks.flush(now) if final else self.tracebacks.due(now)
        if summary is not None:
            self._log_summary(summary)

    def _log_summary(self, summary: Suppressed) -> None:
        log.error(
            "%d more handler tracebacks suppressed in the last %.0f s (worker %d)",
            summary.count,
            summary.window_s,
            self.index,
        )

    def draining(self) -> bool:
        return bool(self.counters[C.CONTROL] == C.CONTROL_DRAIN)

    def orphaned(self) -> bool:
        return os.getppid() != self.parent_pid

    def info(self, d: Delivery) -> DeliveryInfo:
        return DeliveryInfo(
            d.message_id, d.receive_count, d.first_received_ms, d.sent_ms, self.index
        )

    def record(self, result: Result) -> None:
        """Count the outcome and put the result on the up ring (waiting if the ring is full)."""
        c = self.counters
        outcome = result.outcome
        c[_COUNTER_BY_VALUE[outcome]] += 1
        if outcome != _RELEASED:
            c[C.HANDLER_NS_TOTAL] += result.duration_ns
            c[C.HIST_BASE + C.bucket_index(result.duration_ns)] += 1
        payload = RESULT_ENCODER.encode(result)
        if not self.up.put(payload):
            self._put_when_room(payload)
        now = time.monotonic_ns()
        if now - self._last_notify_ns >= NOTIFY_EVERY_NS:
            self.notify(now)

    def _put_when_room(self, payload: bytes) -> None:
        """The parent is behind; wake it and give it a moment. Not a hot path: the up ring
        holds tens of thousands of results."""
        while not self.up.put(payload):
            self.up.notify()
            if self.orphaned():
                raise SystemExit(EXIT_OK)
            time.sleep(0.0005)

    def notify(self, now_ns: int | None = None) -> None:
        self.up.notify()
        self._last_notify_ns = time.monotonic_ns() if now_ns is None else now_ns

    def released(self, d: Delivery) -> Result:
        return Result(d.slot, int(Outcome.RELEASED))


class _SyncWorker(_WorkerBase):
    """Runs ``def`` handlers one at a time. Takes one record at a time off the ring, so that a
    delivery it has not started is still in the ring (and released, not failed) if it dies.

    The loop is written for a no-op handler's sake: with one, this loop *is* the worker's CPU
    per message, so a delivery is handled inline in it (constants bound to locals, the body
    decoded without the checks the parent already made); only an exception takes the longer
    road, through :meth:`failed`.
    """

    def run(self) -> int:
        c = self.counters
        down = self.down
        get = down.ring.get
        decode = DELIVERY_DECODER.decode
        decode_body = decode_trusted_message
        encode = RESULT_ENCODER.encode
        try_put = self.up.ring.try_put  # the channel's put, minus a call: refusals go below
        bound = self.bound
        func, wants_info = bound.func, bound.wants_info
        monotonic_ns, time_ns = time.monotonic_ns, time.time_ns
        bucket = functools.partial(bisect.bisect_left, C.BUCKET_NS)  # C.bucket_index, in C
        control, drain, heartbeat = C.CONTROL, C.CONTROL_DRAIN, C.HEARTBEAT_NS
        busy_slot, busy_since, started = C.BUSY_SLOT, C.BUSY_SINCE_NS, C.STARTED
        succeeded, ns_total, hist = C.SUCCEEDED, C.HANDLER_NS_TOTAL, C.HIST_BASE
        tracebacks = self.tracebacks
        set_running = RUNNING.set
        while True:
            c[heartbeat] = monotonic_ns()
            raw = get()
            if raw is None:
                self.notify()
                if tracebacks.suppressed:
                    self.log_suppressed()
                if c[control] == drain:
                    return EXIT_OK
                # Only a wait that timed out can mean the parent is gone (it rings otherwise);
                # os.getppid per empty ring would be a syscall on the hot path.
                if not down.wait(IDLE_WAIT_S) and self.orphaned():
                    return EXIT_OK
                continue
            d = decode(raw)
            if c[control] == drain:
                self.record(self.released(d))
                continue
            start = monotonic_ns()
            c[busy_slot] = d.slot
            c[busy_since] = start
            c[started] += 1
            msg = None
            try:
                msg = decode_body(d.body)
                set_running((d, msg))
                if wants_info:
                    func(msg, self.info(d))
                else:
                    func(msg)
            except BaseException as exc:  # any ending of a handler is an outcome, SystemExit too
                self.record(self.failed(d, exc, start))
                self.log_failure(d, exc, msg)
                set_running(None)
                continue
            set_running(None)
            c[busy_since] = 0
            end = monotonic_ns()
            duration_ns = end - start
            c[succeeded] += 1
            c[ns_total] += duration_ns
            c[hist + bucket(duration_ns)] += 1
            payload = encode(
                Result(d.slot, _SUCCESS, -1.0, "", duration_ns, time_ns() // 1_000_000, start)
            )
            if not try_put(payload):
                self._put_when_room(payload)
            if end - self._last_notify_ns >= NOTIFY_EVERY_NS:
                self.notify(end)

    def failed(self, d: Delivery, exc: BaseException, start_ns: int) -> Result:
        """The result of a handler that raised (any exception, SystemExit too)."""
        self.counters[C.BUSY_SINCE_NS] = 0
        outcome, delay, reason = outcome_of(exc)
        end = time.monotonic_ns()
        return Result(
            d.slot,
            int(outcome),
            delay,
            reason,
            end - start_ns,
            time.time_ns() // 1_000_000,
            start_ns,
        )


class _AsyncWorker(_WorkerBase):
    """Runs ``async def`` handlers concurrently on uvloop; the parent bounds how many it sends."""

    def run(self) -> int:
        import uvloop

        return int(uvloop.run(self.main()))

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        down = self.down

        def on_ring() -> None:
            down.clear()
            wake.set()

        loop.add_reader(down.fileno(), on_ring)
        tasks: set[asyncio.Task[Any]] = set()
        c = self.counters
        try:
            while True:
                c[C.HEARTBEAT_NS] = time.monotonic_ns()
                wake.clear()
                for raw in self.down.get_many():
                    d = DELIVERY_DECODER.decode(raw)
                    if self.draining():
                        self.record(self.released(d))
                        continue
                    task = loop.create_task(self.handle(d))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                self.notify()
                if self.tracebacks.suppressed:
                    self.log_suppressed()
                if (self.draining() and not tasks) or self.orphaned():
                    return EXIT_OK
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), IDLE_WAIT_S)
        finally:
            loop.remove_reader(down.fileno())

    async def handle(self, d: Delivery) -> None:
        c = self.counters
        start = time.monotonic_ns()
        c[C.STARTED] += 1
        deadline = asyncio.timeout(self.process_timeout_s)
        failure: BaseException | None = None
        msg = None
        try:
            msg = decode_message(d.body, validate=False)
            RUNNING.set((d, msg))  # this task's own context: concurrent handlers do not mix
            async with deadline:
                await self.bound.func(*call_args(self.bound, msg, self.info(d)))
        except asyncio.CancelledError:
            raise  # the worker's loop is ending: not the handler's outcome
        except BaseException as exc:  # any ending of a handler is an outcome, SystemExit too
            failure = exc
        outcome, delay, reason = outcome_of(failure)
        if isinstance(failure, TimeoutError) and deadline.expired():
            outcome = Outcome.TIMEOUT
            reason = f"over QUEUE_PROCESS_TIMEOUT={self.process_timeout_s:g}s"
        end = time.monotonic_ns()
        self.record(
            Result(
                d.slot,
                int(outcome),
                delay,
                reason,
                end - start,
                time.time_ns() // 1_000_000,
                start,
            )
        )
        if failure is not None and outcome is Outcome.FAIL:
            self.log_failure(d, failure, msg)
