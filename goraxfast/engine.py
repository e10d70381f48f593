"""The engine: the parent process's lifecycle around pollers, workers, acks and leases.

Order matters at both ends (DESIGN.md). At start: shared memory, then the worker zygote, then
the event loop and its clients, so nothing is forked from a process with threads. At stop:
stop receiving, release what no worker has, let workers drain within the grace period, flush
every ack, then close. Nothing processed is left undeleted; nothing unprocessed is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from goraxfast.acker import Acker
from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.acks import AckBatcher
from goraxfast.core.health import HealthStatus
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.restarts import Verdict
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import SQS_DEFAULT_MAX_MESSAGE_BYTES, SQS_LEGACY_MAX_MESSAGE_BYTES
from goraxfast.dataplane import ClosableDataPlane, open_data_plane
from goraxfast.dispatch import Dispatcher
from goraxfast.engine_metrics import EngineStats, engine_families, snapshot
from goraxfast.errors import EngineError, GoraxfastError
from goraxfast.handler import Handler, bind_handler
from goraxfast.http import HealthServer
from goraxfast.metrics import MetricsCollector
from goraxfast.poller import Credits, PollCounters, Poller
from goraxfast.prometheus import queue_families, render
from goraxfast.sqs import DataPlane, SQSClient
from goraxfast.supervisor import EVT_SPAWNED, WorkerEvent
from goraxfast.workforce import Workforce, split_capacity

log = logging.getLogger("goraxfast.engine")

EXIT_OK = 0
EXIT_FAILED = 1
SUPERVISE_INTERVAL_S = 0.1
FINAL_ACK_FLUSH_S = 15.0


class State(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


def seat_depth(config: Config, is_async: bool) -> int:
    """How many deliveries all workers together may hold (running or waiting in their rings).

    An ``async def`` worker runs everything it holds at once, so its share of
    QUEUE_CONCURRENT_WORKERS is a real concurrency cap. A ``def`` worker runs one handler at a
    time, so what it holds beyond that is queue: while handlers are short the prefetched
    messages wait in its ring rather than in the parent, and a receive of ten reaches one worker
    with one wake-up instead of two half-batches with two (measured on fauxqs: worker CPU 11.4
    -> 7.9 us per message). While handlers are long, the dispatcher keeps to the shallow share
    of QUEUE_CONCURRENT_WORKERS (see :meth:`Dispatcher.pump`).
    """
    if is_async:
        return config.concurrent_workers
    return config.concurrent_workers + config.prefetch


def poller_count(config: Config) -> int:
    """QUEUE_POLLERS, or when it is 0 one long poll per receive batch of capacity (at most 8).

    Measured on LocalStack: doubling it gained nothing, the server pays per request and the
    credits already keep receives full.
    """
    if config.pollers:
        return config.pollers
    capacity = config.concurrent_workers + config.prefetch
    return max(1, min(8, -(-capacity // config.max_messages)))


class Engine:
    """Drain ``config.queue_url`` with ``handler`` in forked worker processes.

    ``run()`` blocks (CLI, services); embedding apps use ``async with Engine(...)`` or
    ``await engine.start()`` / ``await engine.stop()``.
    """

    def __init__(
        self,
        config: Config,
        handler: Handler | str,
        *,
        data_plane: DataPlane | None = None,
        serve_http: bool = True,
        worker_init: Callable[[int], None] | None = None,
    ) -> None:
        config.require_queue()
        self.config = config
        self.bound = bind_handler(handler)
        self.workers = max(1, min(config.worker_processes, config.concurrent_workers))
        self._workforce = Workforce(
            config,
            self.bound,
            split_capacity(seat_depth(config, self.bound.is_async), self.workers),
            worker_init,
            shallow_caps=split_capacity(config.concurrent_workers, self.workers),
        )
        self._data_plane = data_plane
        self._serve_http = serve_http
        self.state = State.CREATED
        self.exit_code = EXIT_OK
        self.fatal_error: BaseException | None = None
        self.started_at = 0.0
        self._client: SQSClient | None = None
        self._owned_dp: ClosableDataPlane | None = None
        self._dp: DataPlane | None = None
        self._poll_counters = PollCounters()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pollers: list[asyncio.Task[Any]] = []
        self._stopped: asyncio.Event | None = None
        self._all_exited: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._forced = False
        self._signals_installed: list[int] = []
        self.metrics: MetricsCollector | None = None
        self.http: HealthServer | None = None
        self.dispatcher: Dispatcher | None = None
        self.acker: Acker | None = None
        self.credits: Credits | None = None

    # --- public lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        """Fork the workers, then run until SIGTERM/SIGINT (twice: force). Returns the exit code."""
        import uvloop

        self._workforce.fork()
        return int(uvloop.run(self._run_main()))

    async def start(self, *, handle_signals: bool = False) -> None:
        """Fork the workers (first, before this engine creates any client or thread), then run.

        Embedded in a running application, the fork happens inside its event loop: if the app
        already runs threads of its own, a worker can inherit a lock one of them held (DESIGN.md,
        Forking). Create the engine before starting such threads, or use ``run()``.
        """
        if self.state is not State.CREATED:
            raise EngineError(f"engine already {self.state.value}")
        if self._workforce.zygote is None:
            self._workforce.fork()
        try:
            await self._start_io(handle_signals=handle_signals)
        except BaseException:
            await self._teardown()
            raise

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain gracefully (idempotent); returns once everything is closed."""
        if self.state in (State.CREATED, State.STOPPED):
            return
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(grace_s))
        await asyncio.shield(self._stop_task)

    def force_stop(self) -> None:
        """Second signal: kill the workers now; their messages return via visibility timeout."""
        self._forced = True
        if self._force is not None:
            self._force.set()
        self._workforce.kill_all()

    async def wait(self) -> None:
        """Until the engine has stopped (by a signal, ``stop()``, or a fatal error)."""
        if self._stopped is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- observation ---------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        return snapshot(self)

    @property
    def worker_restarts(self) -> int:
        """Workers replaced after dying (at start or while running)."""
        return self._workforce.replaced

    def worker_totals(self) -> C.WorkerTotals:
        return self._workforce.totals()

    def worker_pids(self) -> list[int]:
        return self._workforce.pids()

    def health_status(self) -> HealthStatus:
        assert self.metrics is not None
        return self.metrics.health_status(self.config.max_queue_depth)

    def readiness(self) -> tuple[bool, str]:
        if self.state is not State.RUNNING:
            return False, self.state.value
        if self.credits is not None and self.credits.free() <= 0:
            return False, "at capacity"
        return True, "ready"

    def prometheus_text(self) -> str:
        families = engine_families(self)
        if self.metrics is not None:
            families += queue_families(self.metrics.latest, self.health_status())
        return render(families)

    @property
    def health_port(self) -> int:
        return self.http.port if self.http is not None else 0

    # --- start ---------------------------------------------------------------------------------

    async def _start_io(self, *, handle_signals: bool) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.state = State.STARTING
        self.started_at = time.time()
        self._stopped = asyncio.Event()
        self._all_exited = asyncio.Event()
        self._force = asyncio.Event()
        if self._data_plane is not None:
            self._dp = self._data_plane  # injected (tests, custom transports): not ours to close
        else:
            # The control plane (queue attributes for metrics and the DLQ size) stays on
            # aiobotocore; the hot calls go to the client GORAXFAST_SQS_CLIENT names.
            self._client = await SQSClient(cfg).start()
            if cfg.sqs_client == "botocore":
                self._dp = self._client
            else:
                self._owned_dp = await open_data_plane(cfg)
                self._dp = self._owned_dp
        clock = time.monotonic
        self.acker = Acker(
            AckBatcher(max_batch=10, max_age_s=cfg.ack_flush_ms / 1000.0),
            self._dp,
            queue_url=cfg.queue_url,
            dlq_url=cfg.dlq_url,
            clock=clock,
            max_message_bytes=await self._dlq_max_message_bytes(),
        )
        capacity = cfg.concurrent_workers + cfg.prefetch
        limiter: TenantLimiter[int] = TenantLimiter(
            cfg.max_concurrency_per_tenant,
            cfg.tenant_limits,
            max_waiting_per_tenant=max(1, cfg.prefetch),
            max_waiting_total=max(1, cfg.prefetch),
        )
        self.dispatcher = Dispatcher(
            seats=self._workforce.states,
            acker=self.acker,
            leases=LeaseBook(cfg.visibility_timeout_s),
            limiter=limiter,
            policy=RetryPolicy(
                cfg.max_retries,
                cfg.retry_base_s,
                cfg.retry_max_s,
                cfg.delete_after_process,
                has_dlq=bool(cfg.dlq_url),
            ),
            clock=clock,
            queue_url=cfg.queue_url,
            throttle_release_delay_s=cfg.throttle_release_delay_s,
        )
        dispatcher = self.dispatcher
        self.credits = Credits(capacity, lambda: len(dispatcher.held))
        dispatcher.on_room = self.credits.changed
        assert self._workforce.zygote is not None
        loop.add_reader(self._workforce.zygote.events_fd, self._guarded, self._on_zygote_events)
        for seat in self._workforce.states:
            loop.add_reader(seat.consumer.fileno(), self._guarded, dispatcher.on_results, seat)
        source = self._client
        if source is not None:
            self.metrics = MetricsCollector(
                source,
                queue_url=cfg.queue_url,
                dlq_url=cfg.dlq_url,
                interval_s=cfg.metrics_interval_s,
            )
            await self.metrics.start()
        if self._serve_http:
            self.http = HealthServer(
                cfg.health_host,
                cfg.health_port,
                metrics_text=self.prometheus_text,
                health=self.health_status,
                ready=self.readiness,
            )
            await self.http.start()
        self._tasks = [
            loop.create_task(self.acker.run(), name="goraxfast-acker"),
            loop.create_task(self._keep_leases(), name="goraxfast-leases"),
            loop.create_task(self._supervise(), name="goraxfast-supervise"),
        ]
        self._pollers = [
            loop.create_task(self._poller().run(), name=f"goraxfast-poller-{i}")
            for i in range(self._poller_count())
        ]
        for task in (*self._tasks, *self._pollers):
            task.add_done_callback(self._on_task_done)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._signals_installed.append(sig)
        self.state = State.RUNNING
        log.info(
            "engine running: %d workers (%s handler %s), %d handlers at once, %d pollers, queue %s",
            self.workers,
            "async" if self.bound.is_async else "sync",
            self.bound.describe(),
            cfg.concurrent_workers,
            len(self._pollers),
            cfg.queue_url,
        )
        if self.fatal_error is not None:
            # Something failed while the engine was starting (a worker that cannot start, say):
            # _fail() could only record it then; act on it now.
            self._stop_task = loop.create_task(self._shutdown(None))

    async def _dlq_max_message_bytes(self) -> int:
        """The DLQ's own MaximumMessageSize, so that every letter is fitted to it.

        Read, never assumed: SQS's default is 1 MiB since 2025, but a DLQ may have been created
        earlier with 256 KiB, or set smaller than its source queue. When it cannot be read the
        older default is the safe guess: a letter fitted to it fits either.
        """
        if self._client is None or not self.config.dlq_url:
            return SQS_DEFAULT_MAX_MESSAGE_BYTES
        try:
            attrs = await self._client.queue_attributes(self.config.dlq_url)
        except GoraxfastError as exc:
            fallback = SQS_LEGACY_MAX_MESSAGE_BYTES
            log.warning("cannot read the DLQ's attributes (%s); assuming %d bytes", exc, fallback)
            return fallback
        return attrs.maximum_message_size or SQS_DEFAULT_MAX_MESSAGE_BYTES

    def _poller_count(self) -> int:
        return poller_count(self.config)

    def _poller(self) -> Poller:
        cfg = self.config
        assert self._dp is not None and self.credits is not None and self.dispatcher is not None
        return Poller(
            self._dp,
            self.credits,
            self.dispatcher.on_received,
            max_messages=cfg.max_messages,
            wait_time_s=cfg.wait_time_s,
            visibility_timeout_s=cfg.visibility_timeout_s,
            poll_interval_s=cfg.poll_interval_s,
            counters=self._poll_counters,
            queue_url=cfg.queue_url,
            on_intake_error=self.dispatcher.recover_intake,
        )

    async def _run_main(self) -> int:
        await self.start(handle_signals=True)
        await self.wait()
        return self.exit_code

    # --- running -------------------------------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        if self.state is State.DRAINING or self._stop_task is not None:
            log.warning("second %s: forcing exit", signal.Signals(sig).name)
            self.force_stop()
            return
        log.info("%s: draining (send again to force)", signal.Signals(sig).name)
        self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(None))

    async def _keep_leases(self) -> None:
        assert self.dispatcher is not None and self.acker is not None
        leases = self.dispatcher.leases
        cap_s = max(0.05, min(1.0, self.config.visibility_timeout_s / 4))
        while True:
            now = time.monotonic()
            if self.dispatcher.renew_leases(now):
                self.acker.wake()
            deadline = leases.next_deadline()
            sleep_s = cap_s if deadline is None else min(cap_s, max(0.01, deadline - now))
            await asyncio.sleep(sleep_s)

    async def _supervise(self) -> None:
        """Timeouts (kill the worker), throttled messages waiting too long, and nothing else."""
        cfg = self.config
        assert self.dispatcher is not None
        workforce = self._workforce
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            self.dispatcher.expire_throttled(time.monotonic(), cfg.throttle_max_wait_s)
            for seat, slot, why in list(workforce.overdue(time.monotonic_ns())):
                workforce.kill_for_timeout(seat, slot, why)

    def _on_zygote_events(self) -> None:
        workforce = self._workforce
        assert workforce.zygote is not None
        try:
            events = workforce.zygote.read_events()
        except EngineError as exc:
            self._fail(exc)
            return
        for ev in events:
            if ev.kind == EVT_SPAWNED:
                workforce.spawned(ev)
                if self.dispatcher is not None:
                    self.dispatcher.pump()
            elif 0 <= ev.seat < len(workforce.states):
                self._on_worker_exit(ev)

    def _on_worker_exit(self, ev: WorkerEvent) -> None:
        workforce = self._workforce
        seat = workforce.states[ev.seat]
        started_any, ready = workforce.exited(ev)
        how = f"worker {ev.seat} (pid {ev.pid}) {ev.describe_exit()}"
        assert self.dispatcher is not None
        lost = len(seat.slots)
        self.dispatcher.worker_lost(seat, how=how, forced=self._forced)
        workforce.retire(seat)
        if self.state in (State.DRAINING, State.STOPPED):
            if not workforce.any_alive() and self._all_exited is not None:
                self._all_exited.set()
            return
        log.warning("%s with %d deliveries in hand; replacing it", how, lost)
        if workforce.verdict(ev, started_any=started_any, ready=ready) is Verdict.GIVE_UP:
            self._fail(EngineError(workforce.give_up_message(ev)))
            return
        workforce.replace(ev.seat)

    def _guarded(self, callback: Callable[..., object], *args: object) -> None:
        """Run an event-loop reader callback; an exception in it is a bug that stops the engine.

        asyncio would only log it and go on: results read off a ring but not settled would then
        hold their capacity (and have their visibility extended) for good.
        """
        try:
            callback(*args)
        except Exception as exc:
            log.error("%s failed", getattr(callback, "__qualname__", callback), exc_info=exc)
            self._fail(
                EngineError(f"{getattr(callback, '__qualname__', callback)} failed: {exc!r}")
            )

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        """A core task must only end by cancellation: anything else is a bug that would
        otherwise leave the engine running but stalled (a poller gone, acks no longer sent)."""
        if task.cancelled():
            return
        if self.state is not State.RUNNING:
            if task.exception() is not None:  # not the cause of the stop, but never silent
                log.error("%s failed while stopping", task.get_name(), exc_info=task.exception())
            return
        exc = task.exception()
        if exc is None:
            exc = EngineError(f"{task.get_name()} ended unexpectedly")
        else:
            log.error("%s failed", task.get_name(), exc_info=exc)
            exc = EngineError(f"{task.get_name()} failed: {exc!r}")
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log.error("fatal: %s", exc)
        self.fatal_error = exc
        self.exit_code = EXIT_FAILED
        if self._stop_task is None and self.state is State.RUNNING:
            self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(None))

    # --- stop ----------------------------------------------------------------------------------

    async def _shutdown(self, grace_s: float | None) -> None:
        cfg = self.config
        grace = cfg.shutdown_grace_s if grace_s is None else grace_s
        self.state = State.DRAINING
        assert self.dispatcher is not None and self.acker is not None
        assert self._all_exited is not None and self._force is not None
        # 1. stop receiving: cancel long polls in flight
        for task in self._pollers:
            task.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        # 2. release what no worker has yet, at once
        released = self.dispatcher.release_undispatched()
        self.acker.wake()
        # 3. workers finish what they run, hand back what they have not started, and exit
        self._workforce.ask_to_drain()
        log.info("draining: %d released unstarted, waiting up to %g s for workers", released, grace)
        if self._workforce.any_alive():
            force = asyncio.ensure_future(self._force.wait())
            exited = asyncio.ensure_future(self._all_exited.wait())
            await asyncio.wait({force, exited}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not self._all_exited.is_set():
                if not self._forced:
                    log.warning("grace period over: killing workers still running")
                self._forced = True
                self._workforce.kill_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exited, 10.0)
            exited.cancel()
        # 4./5. flush every ack, then close
        flushed = await self.acker.flush(2.0 if self._forced else FINAL_ACK_FLUSH_S)
        if not flushed:
            log.warning("%d acknowledgements could not be sent before exit", self.acker.pending)
        await self._teardown()
        log.info("stopped: %s", self.stats().summary())

    async def _teardown(self) -> None:
        loop = asyncio.get_running_loop()
        for task in self._pollers + self._tasks:
            task.cancel()
        await asyncio.gather(*self._pollers, *self._tasks, return_exceptions=True)
        if self.acker is not None:
            self.acker.cancel_retries()
        for sig in self._signals_installed:
            loop.remove_signal_handler(sig)
        self._signals_installed.clear()
        workforce = self._workforce
        if workforce.zygote is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(workforce.zygote.events_fd)
            for seat in workforce.states:
                with contextlib.suppress(Exception):
                    loop.remove_reader(seat.consumer.fileno())
            workforce.stop()
        if self.http is not None:
            await self.http.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self._owned_dp is not None:
            await self._owned_dp.close()
        if self._client is not None:
            await self._client.close()
        workforce.close()
        self.state = State.STOPPED
        if self._stopped is not None:
            self._stopped.set()
