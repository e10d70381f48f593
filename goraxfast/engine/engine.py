"""The engine: the parent process's lifecycle around pollers, workers, acks and leases.

This module is the lifecycle only: the order of start, the signals, the fatal path, the order of
stop. The parts are built in :mod:`.build`, checked against SQS in :mod:`.preflight`, supervised
in :mod:`.workforce`, and clocked in :mod:`.timers`; the clients are opened in :mod:`.clients`,
the background tasks started in :mod:`.background`, the start line told in :mod:`.startline`, and
each step of the stop bounded in :mod:`.stopping`.

Order matters at both ends. At start: shared memory, then the worker zygote, then the event loop
and its clients, so nothing is forked from a process with threads. At stop: stop receiving,
release what no worker has, let workers drain within the grace period, flush every ack, then
close. Nothing processed is left undeleted; nothing unprocessed is deleted.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.exit_codes import (
    EXIT_ACKS_ABANDONED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_FORCED,
    EXIT_OK,
)
from goraxfast.core.health import HealthStatus
from goraxfast.core.outage import Outage
from goraxfast.core.probes import HandlerMean, readiness
from goraxfast.core.sqs_model import queue_name_of
from goraxfast.engine.acker import Acker
from goraxfast.engine.background import start_background
from goraxfast.engine.build import (
    Parts,
    build_parts,
    build_pipeline,
    build_workforce,
    handlers_at_once,
)
from goraxfast.engine.clients import Clients
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.pipeline import ReceivePipeline
from goraxfast.engine.poller import Credits, PollCounters
from goraxfast.engine.preflight import check_queues, dlq_max_message_bytes
from goraxfast.engine.seats import SeatState
from goraxfast.engine.startline import log_start, start_facts
from goraxfast.engine.stats import EngineStats, StatsSources, engine_families, snapshot
from goraxfast.engine.stopping import FINAL_ACK_FLUSH_S as FINAL_ACK_FLUSH_S
from goraxfast.engine.stopping import FORCED_ACK_FLUSH_S as FORCED_ACK_FLUSH_S
from goraxfast.engine.stopping import KILLED_REAP_WAIT_S as KILLED_REAP_WAIT_S
from goraxfast.engine.stopping import POLL_STOP_MARGIN_S as POLL_STOP_MARGIN_S
from goraxfast.engine.stopping import await_polls, close_all, flush_acks, wait_for_workers
from goraxfast.errors import EngineError
from goraxfast.ops.http import HealthServer
from goraxfast.ops.prometheus import queue_families, render
from goraxfast.ops.queue_metrics import MetricsCollector
from goraxfast.ops.sdnotify import Notifier, watchdog
from goraxfast.worker.handler import Handler, bind_handler

__all__ = [
    "EXIT_ACKS_ABANDONED",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_FORCED",
    "EXIT_OK",
    "STOP_SIGNALS",
    "Engine",
    "State",
]

log = logging.getLogger("goraxfast.engine")

#: Signals that drain the engine gracefully, sent to the parent or to the whole process group
#: (systemd, Kubernetes, dumb-init, GNU timeout, a terminal's Ctrl-C or hang-up).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class State(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


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
        self._workforce = build_workforce(config, self.bound, worker_init)
        self.workers = len(self._workforce.caps)
        self._serve_http = serve_http
        self.state = State.CREATED
        self.exit_code = EXIT_OK
        self.fatal_error: BaseException | None = None
        self.started_at = 0.0
        self._clients = Clients(data_plane)
        self._parts: Parts | None = None
        self._poll_counters = PollCounters()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pipeline: ReceivePipeline | None = None
        self._handler_mean = HandlerMean()
        self.receive_outage = Outage("SQS ReceiveMessage")
        self._stopped: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._forced = False
        self._signals_installed: list[int] = []
        #: ``run()``'s start-up, so that a stop signal during it can cancel it (its name: which)
        self._starting: asyncio.Task[None] | None = None
        self._stopped_starting = ""
        #: systemd's Type=notify: only ``run()`` speaks for the process (an application that
        #: embeds the engine says READY=1 itself, when all of it is ready)
        self._notifier = Notifier({})
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
        already runs threads of its own, a worker can inherit a lock one of them held (README,
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

    def _sources(self) -> StatsSources:
        return StatsSources(
            self.state.value,
            self.dispatcher,
            self.acker,
            self._poll_counters,
            self._workforce,
            self._pipeline.counters if self._pipeline is not None else None,
        )

    def stats(self) -> EngineStats:
        return snapshot(self._sources())

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
        """Kubernetes readiness: started, not draining, and SQS answering recently (never "not
        ready" merely because every slot is busy: :func:`~goraxfast.core.probes.readiness`)."""
        if self.state is not State.RUNNING:
            return False, self.state.value
        outages = (self.receive_outage, self.acker.outage if self.acker else None)
        return readiness(outages, asyncio.get_running_loop().time())

    def liveness(self) -> tuple[bool, str]:
        """Kubernetes liveness: this loop answers (it serves the probe) and its workers are
        supervised (the zygote that replaces them is there)."""
        if self.state in (State.RUNNING, State.DRAINING, State.STARTING) and (
            self._workforce.zygote_gone
        ):
            return False, "the worker zygote has gone away"
        return True, "alive"

    def prometheus_text(self) -> str:
        families = engine_families(self._sources())
        if self.metrics is not None:
            families += queue_families(self.metrics.latest, self.health_status())
        return render(families)

    @property
    def health_port(self) -> int:
        return self.http.port if self.http is not None else 0

    # --- start ---------------------------------------------------------------------------------

    async def _start_io(self, *, handle_signals: bool) -> None:
        """Clients, preflight, parts, readers, operators' endpoints, tasks, then signals."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.state = State.STARTING
        self.started_at = time.time()
        self._stopped = asyncio.Event()
        self._force = asyncio.Event()
        clients = self._clients
        await clients.open(cfg)
        if clients.client is not None:  # an injected data plane (tests): nothing to ask
            await check_queues(clients.client, cfg)
        assert clients.dp is not None
        parts = build_parts(
            cfg,
            self._workforce,
            clients.dp,
            dlq_max_message_bytes=await dlq_max_message_bytes(clients.client, cfg),
        )
        self._parts = parts
        self.acker, self.dispatcher, self.credits = parts.acker, parts.dispatcher, parts.credits
        self.receive_outage, self._poll_counters = parts.receive_outage, parts.polls
        dispatcher = parts.dispatcher
        self._workforce.watch(
            loop,
            guard=self._guarded,
            on_spawned=lambda _seat: dispatcher.pump(),
            on_lost=self._on_worker_lost,
            on_fatal=self._fail,
        )
        for seat in self._workforce.states:
            loop.add_reader(seat.consumer.fileno(), self._guarded, dispatcher.on_results, seat)
        await self._start_operators_face()
        self._tasks = start_background(loop, cfg, parts, self._workforce)
        if self._notifier.watchdog_interval_s is not None:
            self._tasks.append(
                loop.create_task(watchdog(self._notifier, self.liveness), name="goraxfast-watchdog")
            )
        pipeline = self._pipeline = build_pipeline(
            cfg,
            clients.dp,
            parts,
            handlers_at_once=handlers_at_once(cfg, self.bound, self.workers),
            handler_s=self._mean_handler_s,
            on_poller_failed=self._on_task_done,
        )
        self._tasks.append(loop.create_task(pipeline.run(), name="goraxfast-pipeline"))
        for task in self._tasks:
            task.add_done_callback(self._on_task_done)
        pipeline.start()
        if handle_signals and not self._signals_installed:
            self._install_signals(loop)
        self.state = State.RUNNING
        health_port = self.health_port if self.http is not None else None
        facts = start_facts(
            cfg,
            parts,
            workers=self.workers,
            bound=self.bound,
            client=clients.in_use(),
            health_port=health_port,
        )
        log_start(cfg, facts)  # the start line: what an operator checks first
        self._notifier.ready(
            f"receiving from {queue_name_of(cfg.queue_url)} with {self.workers} workers"
        )
        if self.fatal_error is not None:
            # Something failed while the engine was starting (a worker that cannot start, say):
            # _fail() could only record it then; act on it now.
            self._stop_task = loop.create_task(self._shutdown(None))

    async def _start_operators_face(self) -> None:
        cfg = self.config
        if self._clients.client is not None:
            self.metrics = MetricsCollector(
                self._clients.client,
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
                live=self.liveness,
            )
            await self.http.start()

    def _mean_handler_s(self) -> float | None:
        """The mean handler time since the last call (the last mean while none finished)."""
        totals = self._workforce.totals()
        return self._handler_mean.update(sum(totals.histogram), totals.handler_ns_total)

    async def _run_main(self) -> int:
        loop = asyncio.get_running_loop()
        # Signals first: the start-up checks ask SQS and may take seconds (retries, a slow
        # network), and a SIGTERM then must stop the engine cleanly, not kill it mid-way.
        self._install_signals(loop)
        self._notifier = Notifier()
        self._starting = loop.create_task(self.start(handle_signals=True))
        try:
            await self._starting
        except asyncio.CancelledError:
            if not self._stopped_starting:
                raise
            if self.state is not State.STOPPED:  # cancelled before start() began
                await self._teardown()
            log.info(
                "%s during start-up: stopped before receiving anything (exit %d)",
                self._stopped_starting,
                self.exit_code,
            )
            return self.exit_code
        finally:
            self._starting = None
        await self.wait()
        return self.exit_code

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
            self._signals_installed.append(sig)

    # --- running -------------------------------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        starting = self._starting
        if starting is not None and not starting.done():
            # Nothing received yet: cancelling the start-up tears down what it opened and
            # forked; a second signal (a process group's, or an impatient operator's) adds
            # nothing to that.
            if not self._stopped_starting:
                self._stopped_starting = name
                starting.cancel()
            return
        if self.state is State.DRAINING or self._stop_task is not None:
            if self._forced:
                return  # a group signal reaches us once per sender; one force is enough
            log.warning("second %s: forcing exit (code %d)", name, EXIT_FORCED)
            self.exit_code = max(self.exit_code, EXIT_FORCED)
            self.force_stop()
            return
        log.info("%s: draining (send again to force)", name)
        self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(None))

    def _on_worker_lost(self, seat: SeatState, how: str) -> None:
        assert self.dispatcher is not None
        self.dispatcher.worker_lost(seat, how=how, forced=self._forced)

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
        if self.fatal_error is not None:
            return  # the first fatal condition is the one reported: logged once, not in a loop
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
        self._notifier.stopping("draining")
        assert self.dispatcher is not None and self.acker is not None
        assert self._force is not None
        # 1. stop receiving. A long poll in flight is not abandoned (SQS would complete it for
        # nobody and hide what it brings for the visibility timeout): each one finishes, and
        # the dispatcher, no longer accepting, releases its messages at once.
        polls = list(self._pipeline.stop()) if self._pipeline is not None else []
        # 2. release what no worker has yet, at once
        released = self.dispatcher.release_undispatched()
        self.acker.wake()
        # 3. workers finish what they run, hand back what they have not started, and exit
        self._workforce.ask_to_drain()
        log.info(
            "draining: %d released unstarted, %d long polls to finish, waiting up to %g s for "
            "workers",
            released,
            len(polls),
            grace,
        )
        if polls:
            polls_done = asyncio.ensure_future(
                await_polls(polls, self.config.wait_time_s, self._force)
            )
        await wait_for_workers(
            self._workforce, self._force, grace, forced=lambda: self._forced, kill=self._kill_now
        )
        if polls:
            await polls_done
        # 4./5. flush every ack, then close
        if not await flush_acks(self.acker, forced=self._forced):
            self.exit_code = max(self.exit_code, EXIT_ACKS_ABANDONED)
        await self._teardown()
        log.info("stopped: %s", self.stats().summary())

    def _kill_now(self) -> None:
        """The grace period is over: what finishes from now on was forced."""
        self._forced = True
        self._workforce.kill_all()

    async def _teardown(self) -> None:
        self._notifier.close()
        await close_all(
            asyncio.get_running_loop(),
            pipeline=self._pipeline,
            tasks=self._tasks,
            acker=self.acker,
            signals=self._signals_installed,
            workforce=self._workforce,
            http=self.http,
            metrics=self.metrics,
            clients=self._clients,
        )
        self.state = State.STOPPED
        if self._stopped is not None:
            self._stopped.set()
