"""The engine: the parent process's lifecycle around pollers, workers, acks and leases.

This module is the lifecycle only: the order of start, the signals, the fatal path, the order of
stop. The parts are built in :mod:`.build`, checked against SQS in :mod:`.preflight`, supervised
in :mod:`.workforce`, and clocked in :mod:`.timers`.

Order matters at both ends. At start: shared memory, then the worker zygote, then the event loop
and its clients, so nothing is forked from a process with threads. At stop: stop receiving,
release what no worker has, let workers drain within the grace period, flush every ack, then
close. Nothing processed is left undeleted; nothing unprocessed is deleted.
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

from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.dataplane import ClosableDataPlane, DataPlane
from goraxfast.core.exit_codes import (
    EXIT_ACKS_ABANDONED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_FORCED,
    EXIT_OK,
)
from goraxfast.core.health import HealthStatus
from goraxfast.core.outage import Outage, format_duration
from goraxfast.engine.acker import Acker
from goraxfast.engine.build import (
    Parts,
    build_parts,
    build_pipeline,
    build_workforce,
    handlers_at_once,
)
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.pipeline import ReceivePipeline
from goraxfast.engine.poller import Credits, PollCounters
from goraxfast.engine.preflight import check_queues, dlq_max_message_bytes
from goraxfast.engine.seats import SeatState
from goraxfast.engine.stats import EngineStats, StatsSources, engine_families, snapshot
from goraxfast.engine.timers import expire_throttled, keep_leases
from goraxfast.errors import EngineError
from goraxfast.ops.http import HealthServer
from goraxfast.ops.logs import package_version
from goraxfast.ops.prometheus import queue_families, render
from goraxfast.ops.queue_metrics import MetricsCollector
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.choice import open_data_plane
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
#: How long a stopping engine waits for its long polls in flight past their wait time.
POLL_STOP_MARGIN_S = 5.0
FINAL_ACK_FLUSH_S = 15.0
#: How long a forced stop still tries to send the acks of what finished.
FORCED_ACK_FLUSH_S = 2.0
#: How long killed workers may take to be reaped once the grace period is over.
KILLED_REAP_WAIT_S = 10.0


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
        self._data_plane = data_plane
        self._serve_http = serve_http
        self.state = State.CREATED
        self.exit_code = EXIT_OK
        self.fatal_error: BaseException | None = None
        self.started_at = 0.0
        self._client: SQSClient | None = None
        self._owned_dp: ClosableDataPlane | None = None
        self._dp: DataPlane | None = None
        self._parts: Parts | None = None
        self._poll_counters = PollCounters()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pipeline: ReceivePipeline | None = None
        self._handler_seen = (0, 0)  # (handlers finished, their ns), at the last mean taken
        self._handler_mean_s: float | None = None
        self.receive_outage = Outage("SQS ReceiveMessage")
        self._stopped: asyncio.Event | None = None
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
        """Kubernetes readiness: started, not draining, and SQS answering recently. Never
        "not ready" merely because every slot is busy: a busy engine is doing its job, and a
        pod taken out of rotation for it counts as unavailable in rollouts."""
        if self.state is not State.RUNNING:
            return False, self.state.value
        now = asyncio.get_running_loop().time()
        for outage in (self.receive_outage, self.acker.outage if self.acker else None):
            if outage is not None and not outage.healthy(now):
                failing_s = now - (outage.failing_since or now)
                return (
                    False,
                    f"{outage.what} failing for {format_duration(failing_s)}: {outage.detail}",
                )
        return True, "ready"

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
        await self._open_clients()
        if self._client is not None:  # an injected data plane (tests): nothing to ask
            await check_queues(self._client, cfg)
        assert self._dp is not None
        parts = build_parts(
            cfg,
            self._workforce,
            self._dp,
            dlq_max_message_bytes=await dlq_max_message_bytes(self._client, cfg),
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
        self._tasks = [
            loop.create_task(parts.acker.run(), name="goraxfast-acker"),
            loop.create_task(
                keep_leases(
                    dispatcher,
                    parts.acker,
                    visibility_timeout_s=cfg.visibility_timeout_s,
                    clock=time.monotonic,
                    sleep=asyncio.sleep,
                ),
                name="goraxfast-leases",
            ),
            loop.create_task(
                expire_throttled(
                    dispatcher,
                    max_wait_s=cfg.throttle_max_wait_s,
                    clock=time.monotonic,
                    waiting=parts.throttle_waiting,
                ),
                name="goraxfast-throttle",
            ),
            loop.create_task(self._workforce.supervise(), name="goraxfast-supervise"),
        ]
        pipeline = self._pipeline = build_pipeline(
            cfg,
            self._dp,
            parts,
            handlers_at_once=handlers_at_once(cfg, self.bound, self.workers),
            handler_s=self._mean_handler_s,
            on_poller_failed=self._on_task_done,
        )
        self._tasks.append(loop.create_task(pipeline.run(), name="goraxfast-pipeline"))
        for task in self._tasks:
            task.add_done_callback(self._on_task_done)
        pipeline.start()
        if handle_signals:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._signals_installed.append(sig)
        self.state = State.RUNNING
        self._log_start(parts)
        if self.fatal_error is not None:
            # Something failed while the engine was starting (a worker that cannot start, say):
            # _fail() could only record it then; act on it now.
            self._stop_task = loop.create_task(self._shutdown(None))

    def _client_in_use(self) -> str:
        """The data plane actually used: ``fast`` falls back to ``botocore`` behind a proxy."""
        if self._data_plane is not None:
            return f"injected ({type(self._data_plane).__name__})"
        if self._owned_dp is None or isinstance(self._owned_dp, SQSClient):
            return "botocore"
        return "fast"

    def _log_start(self, parts: Parts) -> None:
        """One line with everything an operator checks first when a deploy misbehaves: the
        version, the client, where it reads from and dead-letters to, how it retries, and the
        whole effective configuration (credentials masked), as ``config`` (a JSON object, or
        ``KEY=value`` pairs in the text format)."""
        cfg = self.config
        limits = parts.limits
        fifo = parts.dispatcher.order is not None
        client = self._client_in_use()
        pipeline = (
            f"fixed ({limits.fixed_pollers} in flight, prefetch {limits.fixed_prefetch})"
            if limits.fixed_pollers is not None
            else f"auto ({limits.min_pollers}-{limits.max_pollers} in flight, prefetch up to "
            f"{limits.max_prefetch})"
        )
        engine = {
            "version": package_version(),
            "client": client,
            "region": cfg.aws_region,
            "endpoint": cfg.aws_endpoint or None,
            "queue_url": cfg.queue_url,
            "dlq_url": cfg.dlq_url or None,
            "fifo": fifo,
            "workers": self.workers,
            "handler": self.bound.describe(),
            "handler_kind": "async" if self.bound.is_async else "sync",
            "handlers_at_once": handlers_at_once(cfg, self.bound, self.workers),
            "max_retries": cfg.max_retries,
            "retry_base_s": cfg.retry_base_s,
            "retry_max_s": cfg.retry_max_s,
            "pipeline": pipeline,
            "health_port": self.health_port if self.http is not None else None,
        }
        log.info(
            "engine running: goraxfast %s, %d worker(s) (%s handler %s), %d handlers at once, "
            "%s client, region %s, %s queue %s, %s, retries: dead-lettered at receive %d, "
            "backoff %g-%g s, receive pipeline %s",
            engine["version"],
            self.workers,
            engine["handler_kind"],
            engine["handler"],
            engine["handlers_at_once"],
            client,
            cfg.aws_region,
            "FIFO (one message of a group at a time, in order)" if fifo else "standard",
            cfg.queue_url,
            f"DLQ {cfg.dlq_url}" if cfg.dlq_url else "no DLQ (left to the redrive policy)",
            cfg.max_retries,
            cfg.retry_base_s,
            cfg.retry_max_s,
            pipeline,
            extra={"engine": engine, "config": cfg.effective_settings()},
        )

    async def _open_clients(self) -> None:
        """The control plane (queue attributes for metrics and the DLQ size) stays on
        aiobotocore; the hot calls go to the client GORAXFAST_SQS_CLIENT names."""
        if self._data_plane is not None:
            self._dp = self._data_plane  # injected (tests, custom transports): not ours to close
            return
        self._client = await SQSClient(self.config).start()
        if self.config.sqs_client == "botocore":
            self._dp = self._client
        else:
            self._owned_dp = await open_data_plane(self.config)
            self._dp = self._owned_dp

    async def _start_operators_face(self) -> None:
        cfg = self.config
        if self._client is not None:
            self.metrics = MetricsCollector(
                self._client,
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
        finished, ns = sum(totals.histogram), totals.handler_ns_total
        seen_finished, seen_ns = self._handler_seen
        if finished > seen_finished:
            self._handler_mean_s = (ns - seen_ns) / (finished - seen_finished) / 1e9
            self._handler_seen = (finished, ns)
        return self._handler_mean_s

    async def _run_main(self) -> int:
        await self.start(handle_signals=True)
        await self.wait()
        return self.exit_code

    # --- running -------------------------------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
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
        assert self.dispatcher is not None and self.acker is not None
        assert self._force is not None
        all_exited = self._workforce.all_exited
        # 1. stop receiving. A long poll in flight is not abandoned (SQS would complete it for
        # nobody and hide what it brings for the visibility timeout): each one finishes, and
        # the dispatcher, no longer accepting, releases its messages at once.
        polls = self._stop_pollers()
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
            polls_done = asyncio.ensure_future(self._await_polls(polls))
        if self._workforce.any_alive():
            force = asyncio.ensure_future(self._force.wait())
            exited = asyncio.ensure_future(all_exited.wait())
            await asyncio.wait({force, exited}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not all_exited.is_set():
                if not self._forced:
                    log.warning("grace period over: killing workers still running")
                self._forced = True
                self._workforce.kill_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exited, KILLED_REAP_WAIT_S)
            exited.cancel()
        if polls:
            await polls_done
        # 4./5. flush every ack, then close
        flushed = await self.acker.flush(FORCED_ACK_FLUSH_S if self._forced else FINAL_ACK_FLUSH_S)
        if not flushed:
            left = self.acker.abandon()
            log.error(
                "%d acknowledgements could not be sent before exit (SQS: %s); their messages "
                "will be received and run again",
                left,
                self.acker.outage.detail or "no answer in time",
            )
            self.exit_code = max(self.exit_code, EXIT_ACKS_ABANDONED)
        await self._teardown()
        log.info("stopped: %s", self.stats().summary())

    def _stop_pollers(self) -> list[asyncio.Task[Any]]:
        """Stop receiving; the tasks of the long polls in flight, which are let finish."""
        return list(self._pipeline.stop()) if self._pipeline is not None else []

    async def _await_polls(self, polls: list[asyncio.Task[Any]]) -> None:
        """The long polls in flight end within their wait time; past that (a server that does
        not answer), they are cancelled."""
        bound = self.config.wait_time_s + POLL_STOP_MARGIN_S
        force = asyncio.ensure_future(self._force.wait()) if self._force else None
        waiters: set[asyncio.Future[Any]] = {*polls, *([force] if force else [])}
        deadline = asyncio.get_running_loop().time() + bound
        while any(not t.done() for t in polls):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or (force is not None and force.done()):
                break
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if force is not None:
            force.cancel()
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)

    async def _teardown(self) -> None:
        loop = asyncio.get_running_loop()
        pollers = self._pipeline.tasks if self._pipeline is not None else []
        if self._pipeline is not None:
            self._pipeline.stopping = True
        for task in (*pollers, *self._tasks):
            task.cancel()
        await asyncio.gather(*pollers, *self._tasks, return_exceptions=True)
        if self.acker is not None:
            self.acker.cancel_retries()
        for sig in self._signals_installed:
            loop.remove_signal_handler(sig)
        self._signals_installed.clear()
        workforce = self._workforce
        if workforce.zygote is not None:
            workforce.unwatch(loop)
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
