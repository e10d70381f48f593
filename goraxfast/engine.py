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
from goraxfast.core.outage import Outage, format_duration
from goraxfast.core.restarts import Verdict
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_LEGACY_MAX_MESSAGE_BYTES,
    UNUSABLE_CODES,
)
from goraxfast.dataplane import ClosableDataPlane, open_data_plane
from goraxfast.dispatch import Dispatcher
from goraxfast.engine_metrics import EngineStats, engine_families, snapshot
from goraxfast.errors import ConfigError, ConfigProblem, EngineError, GoraxfastError, SQSError
from goraxfast.handler import Handler, bind_handler
from goraxfast.http import HealthServer
from goraxfast.metrics import MetricsCollector
from goraxfast.poller import Credits, PollCounters, Poller
from goraxfast.prometheus import queue_families, render
from goraxfast.sqs import DataPlane, SQSClient
from goraxfast.supervisor import EVT_SPAWNED, WorkerEvent
from goraxfast.workforce import Workforce, split_capacity

log = logging.getLogger("goraxfast.engine")

#: The exit codes of ``goraxfast run`` (and :meth:`Engine.run`), one table for operators:
#: 0 drained cleanly; 1 a fatal error the engine could not go on from (it says which, once);
#: 2 a configuration mistake, found before start or by SQS at start (no such queue, access
#: denied, credentials refused): restarting cannot fix it (systemd: RestartPreventExitStatus=2);
#: 3 forced by a second signal: running messages were killed and come back through their
#: visibility timeout; 4 stopped, but acknowledgements were left unsent: those messages will
#: run again.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FORCED = 3
EXIT_ACKS_ABANDONED = 4
#: Signals that drain the engine gracefully, sent to the parent or to the whole process group
#: (systemd, Kubernetes, dumb-init, GNU timeout, a terminal's Ctrl-C or hang-up).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: How long a stopping engine waits for its long polls in flight past their wait time.
POLL_STOP_MARGIN_S = 5.0
SUPERVISE_INTERVAL_S = 0.1
#: Longest wait between receives while SQS keeps failing (the backoff doubles up to it).
OUTAGE_BACKOFF_CAP_S = 20.0
#: How long the start-up check of each queue may take before the engine starts anyway.
PREFLIGHT_TIMEOUT_S = 10.0
FINAL_ACK_FLUSH_S = 15.0


def startup_problem(config: Config, variable: str, url: str, exc: SQSError) -> ConfigProblem:
    """The one line that says which setting SQS refused at start, and why."""
    code = exc.code or ""
    if code in ("NoCredentials", "ProfileNotFound"):
        name = "AWS_PROFILE" if code == "ProfileNotFound" else "AWS credentials"
        return ConfigProblem(name, "(botocore's credential chain)", exc.detail)
    if code in ("AccessDenied", "AccessDeniedException"):
        return ConfigProblem(variable, url, f"access denied by SQS ({code}): {exc.detail}")
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return ConfigProblem(variable, url, f"no such queue ({code})")
    who = "AWS_ACCESS_KEY_ID" if config.static_credentials else "AWS credentials"
    shown = config.aws_access_key_id[:4] + "..." if config.static_credentials else "(default chain)"
    return ConfigProblem(who, shown, f"refused by SQS ({code}): {exc.detail}")


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
        self._poller_objs: list[Poller] = []
        self._zygote_gone = False
        self.receive_outage = Outage("SQS ReceiveMessage")
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
        """Kubernetes readiness: started, not draining, and SQS answering recently. Never
        "not ready" merely because every slot is busy: a busy engine is doing its job, and a
        pod taken out of rotation for it counts as unavailable in rollouts."""
        if self.state is not State.RUNNING:
            return False, self.state.value
        now = asyncio.get_running_loop().time()
        for outage in (self.receive_outage, self.acker.outage if self.acker else None):
            if outage is not None and not outage.healthy(now):
                return (
                    False,
                    f"{outage.what} failing for {format_duration(now - (outage.failing_since or now))}: {outage.detail}",
                )
        return True, "ready"

    def liveness(self) -> tuple[bool, str]:
        """Kubernetes liveness: this loop answers (it serves the probe) and its workers are
        supervised (the zygote that replaces them is there)."""
        if self.state in (State.RUNNING, State.DRAINING, State.STARTING) and self._zygote_gone:
            return False, "the worker zygote has gone away"
        return True, "alive"

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
        await self._preflight()
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
        acker = self.acker
        # Deletes that keep failing count against capacity: in an ack outage the engine stops
        # taking messages rather than run more whose deletes it cannot send.
        self.credits = Credits(capacity, lambda: len(dispatcher.held) + acker.owed)
        dispatcher.on_room = self.credits.changed
        acker.on_room = self.credits.changed
        self.receive_outage = Outage(
            "SQS ReceiveMessage",
            base_s=max(cfg.poll_interval_s, 0.05),
            cap_s=max(cfg.poll_interval_s, OUTAGE_BACKOFF_CAP_S),
        )
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
                live=self.liveness,
            )
            await self.http.start()
        self._tasks = [
            loop.create_task(self.acker.run(), name="goraxfast-acker"),
            loop.create_task(self._keep_leases(), name="goraxfast-leases"),
            loop.create_task(self._supervise(), name="goraxfast-supervise"),
        ]
        self._poller_objs = [self._poller() for _ in range(self._poller_count())]
        self._pollers = [
            loop.create_task(poller.run(), name=f"goraxfast-poller-{i}")
            for i, poller in enumerate(self._poller_objs)
        ]
        for task in (*self._tasks, *self._pollers):
            task.add_done_callback(self._on_task_done)
        if handle_signals:
            for sig in STOP_SIGNALS:
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
            outage=self.receive_outage,
        )

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
            # Its pipe is at EOF and stays readable: stop watching it, or this runs (and logs)
            # in a tight loop until the process ends.
            self._zygote_gone = True
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(workforce.zygote.events_fd)
            if self.state in (State.DRAINING, State.STOPPED):
                log.warning("%s while stopping; its workers' exits can no longer be seen", exc)
                if self._all_exited is not None:
                    self._all_exited.set()
                return
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
        assert self._all_exited is not None and self._force is not None
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
        if polls:
            await polls_done
        # 4./5. flush every ack, then close
        flushed = await self.acker.flush(2.0 if self._forced else FINAL_ACK_FLUSH_S)
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
        """Stop every poller; cancel those not in a receive, return those that are."""
        in_flight = []
        for poller, task in zip(self._poller_objs, self._pollers, strict=True):
            if poller.stop() and not task.done():
                in_flight.append(task)
            else:
                task.cancel()
        return in_flight

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

    async def _preflight(self) -> None:
        """Ask SQS once for the queues before taking any message: what no retry can fix (no
        such queue, access denied, credentials refused or missing) stops the engine now, with
        one line per problem and exit 2, instead of a ready engine that logs forever. A queue
        that cannot be reached is not such a mistake: the engine starts and backs off."""
        if self._client is None:
            return  # an injected data plane (tests, custom transports): nothing to ask
        cfg = self.config
        problems: list[ConfigProblem] = []
        for variable, url in (
            ("AWS_SQS_QUEUE_URL", cfg.queue_url),
            ("AWS_SQS_DLQ_URL", cfg.dlq_url),
        ):
            if not url:
                continue
            try:
                await asyncio.wait_for(self._client.queue_attributes(url), PREFLIGHT_TIMEOUT_S)
            except SQSError as exc:
                if exc.code in UNUSABLE_CODES:
                    problem = startup_problem(cfg, variable, url, exc)
                    if problem not in problems:  # refused credentials: one line, not one a queue
                        problems.append(problem)
                else:
                    log.warning("cannot check %s at start (%s); starting anyway", url, exc)
            except TimeoutError:
                log.warning(
                    "no answer from SQS for %s within %g s at start; starting anyway",
                    url,
                    PREFLIGHT_TIMEOUT_S,
                )
        if problems:
            raise ConfigError(problems)

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
