"""The steps of the engine's stop, each bounded in time: long polls, workers, acks, then close.

The lifecycle in :mod:`.engine` decides when to stop and in what order; this module holds how
long each step may take and carries it out, so that a stop can never hang on a server that does
not answer or a worker that does not exit. Its time bounds are what deployments size their
termination grace period by (``tests/test_deploy.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from goraxfast.engine.acker import Acker
from goraxfast.engine.clients import Clients
from goraxfast.engine.pipeline import ReceivePipeline
from goraxfast.engine.workforce import Workforce
from goraxfast.ops.http import HealthServer
from goraxfast.ops.queue_metrics import MetricsCollector

__all__ = [
    "FINAL_ACK_FLUSH_S",
    "FORCED_ACK_FLUSH_S",
    "KILLED_REAP_WAIT_S",
    "POLL_STOP_MARGIN_S",
    "await_polls",
    "close_all",
    "flush_acks",
    "wait_for_workers",
]

log = logging.getLogger("goraxfast.engine")

#: How long a stopping engine waits for its long polls in flight past their wait time.
POLL_STOP_MARGIN_S = 5.0
FINAL_ACK_FLUSH_S = 15.0
#: How long a forced stop still tries to send the acks of what finished.
FORCED_ACK_FLUSH_S = 2.0
#: How long killed workers may take to be reaped once the grace period is over.
KILLED_REAP_WAIT_S = 10.0


async def await_polls(
    polls: list[asyncio.Task[Any]], wait_time_s: float, force: asyncio.Event | None
) -> None:
    """The long polls in flight end within their wait time; past that (a server that does
    not answer), they are cancelled."""
    bound = wait_time_s + POLL_STOP_MARGIN_S
    forced = asyncio.ensure_future(force.wait()) if force else None
    waiters: set[asyncio.Future[Any]] = {*polls, *([forced] if forced else [])}
    deadline = asyncio.get_running_loop().time() + bound
    while any(not t.done() for t in polls):
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or (forced is not None and forced.done()):
            break
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    if forced is not None:
        forced.cancel()
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


async def wait_for_workers(
    workforce: Workforce,
    force: asyncio.Event,
    grace_s: float,
    *,
    forced: Callable[[], bool],
    kill: Callable[[], None],
) -> None:
    """Let the workers exit within ``grace_s`` (or until a force); then ``kill`` the rest and
    wait a bounded time for them to be reaped."""
    all_exited = workforce.all_exited
    if not workforce.any_alive():
        return
    forcing = asyncio.ensure_future(force.wait())
    exited = asyncio.ensure_future(all_exited.wait())
    await asyncio.wait({forcing, exited}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
    forcing.cancel()
    if not all_exited.is_set():
        if not forced():
            log.warning("grace period over: killing workers still running")
        kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited, KILLED_REAP_WAIT_S)
    exited.cancel()


async def flush_acks(acker: Acker, *, forced: bool) -> bool:
    """Send every ack left; False (logged, the rest abandoned) when they could not all go."""
    flushed = await acker.flush(FORCED_ACK_FLUSH_S if forced else FINAL_ACK_FLUSH_S)
    if not flushed:
        left = acker.abandon()
        log.error(
            "%d acknowledgements could not be sent before exit (SQS: %s); their messages "
            "will be received and run again",
            left,
            acker.outage.detail or "no answer in time",
        )
    return flushed


async def close_all(
    loop: asyncio.AbstractEventLoop,
    *,
    pipeline: ReceivePipeline | None,
    tasks: Iterable[asyncio.Task[Any]],
    acker: Acker | None,
    signals: list[int],
    workforce: Workforce,
    http: HealthServer | None,
    metrics: MetricsCollector | None,
    clients: Clients,
) -> None:
    """Cancel the tasks, unhook the signals and the rings, stop the workers, close the rest."""
    pollers = pipeline.tasks if pipeline is not None else []
    if pipeline is not None:
        pipeline.stopping = True
    tasks = list(tasks)
    for task in (*pollers, *tasks):
        task.cancel()
    await asyncio.gather(*pollers, *tasks, return_exceptions=True)
    if acker is not None:
        acker.cancel_retries()
    for sig in signals:
        loop.remove_signal_handler(sig)
    signals.clear()
    if workforce.zygote is not None:
        workforce.unwatch(loop)
        for seat in workforce.states:
            with contextlib.suppress(Exception):
                loop.remove_reader(seat.consumer.fileno())
        workforce.stop()
    if http is not None:
        await http.stop()
    if metrics is not None:
        await metrics.stop()
    await clients.close()
    workforce.close()
