"""Queue metrics collected in the background, and health judged from them by one rule set.

gorax held a lock while it called SQS for the DLQ depth, so a slow call blocked every health
check. Here a collection builds a new immutable :class:`QueueMetrics` and swaps it in: readers
never wait, and no lock exists to be held across an ``await``. ``is_healthy`` and
``health_status`` both go through :func:`goraxfast.core.health.evaluate`, so they cannot disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from goraxfast.core.health import HealthStatus, QueueMetrics, evaluate
from goraxfast.core.outage import Outage

if TYPE_CHECKING:
    from goraxfast.core.sqs_model import QueueAttributes

log = logging.getLogger(__name__)


class QueueAttributesSource(Protocol):
    """What the collector needs of an SQS client (``goraxfast.sqs.botocore.SQSClient`` has it)."""

    async def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes: ...


class MetricsCollector:
    """Depth of the main queue and the DLQ, collected at start and then every ``interval_s``.

    A failed collection keeps the previous snapshot (staleness will show in health if failures
    persist) and records the error in :attr:`last_error`. ``on_collect`` is called with every
    new snapshot, from the event loop (progress lines, tests awaiting a collection).
    """

    def __init__(
        self,
        client: QueueAttributesSource,
        *,
        queue_url: str,
        dlq_url: str = "",
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        on_collect: Callable[[QueueMetrics], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self._client = client
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.interval_s = interval_s
        self._clock = clock
        self._on_collect = on_collect
        self._latest: QueueMetrics | None = None
        self._started_seq = 0  # collections begun
        self._applied_seq = 0  # the collection whose snapshot is `latest`
        self._task: asyncio.Task[None] | None = None
        self.last_error: Exception | None = None
        self.collections = 0
        self.failures = 0
        self._outage = Outage("queue metrics collection", summary_every_s=600.0)

    @property
    def latest(self) -> QueueMetrics | None:
        """The newest snapshot, or None before the first successful collection."""
        return self._latest

    async def collect(self) -> QueueMetrics:
        """Read both queues concurrently and publish the snapshot; raise (after recording) on failure.

        Concurrent collections are allowed (the loop and an on-demand caller): a slow older one
        finishing last never replaces a newer snapshot.
        """
        self._started_seq += 1
        seq = self._started_seq
        calls = [self._client.queue_attributes(self.queue_url)]
        if self.dlq_url:
            calls.append(self._client.queue_attributes(self.dlq_url))
        attrs: list[QueueAttributes] = []
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, Exception):
                self.failures += 1
                self.last_error = result
                raise result
            if isinstance(result, BaseException):
                raise result  # cancellation and the like are not collection failures
            attrs.append(result)
        main, dlq = attrs[0], (attrs[1] if len(attrs) > 1 else None)
        snapshot = QueueMetrics(
            visible=main.visible,
            in_flight=main.in_flight,
            delayed=main.delayed,
            dlq_depth=dlq.total if dlq is not None else None,
            updated_at=self._clock(),
        )
        self.collections += 1
        self.last_error = None
        if seq > self._applied_seq:
            self._applied_seq = seq
            self._latest = snapshot
            if self._on_collect is not None:
                self._on_collect(snapshot)
        return snapshot

    async def start(self) -> None:
        """Collect once now (a failure is recorded, not raised), then every interval."""
        if self._task is not None:
            return
        await self._collect_logged()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"goraxfast-metrics {self.queue_url}"
        )

    async def stop(self) -> None:
        """Cancel the background task and wait for it; safe to call twice or before start."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._collect_logged()

    async def _collect_logged(self) -> None:
        """Collect; a failure is logged when it starts, when it changes, every ten minutes
        while it lasts and when it ends (never once per interval: an outage of hours would
        write hundreds of the same line)."""
        try:
            await self.collect()
        except Exception as exc:
            kind = getattr(exc, "code", None) or type(exc).__name__
            failure = self._outage.failed(self._clock(), str(kind), str(exc), 0.5)
            if failure.line is not None:
                log.warning("%s (keeping the last queue metrics)", failure.line)
        else:
            recovered = self._outage.succeeded(self._clock())
            if recovered is not None:
                log.warning("%s", recovered)

    def health_status(self, max_depth: int = 0) -> HealthStatus:
        """The detailed verdict now; ``max_depth`` 0 disables the depth rule."""
        return evaluate(
            self._latest, now=self._clock(), interval_s=self.interval_s, max_depth=max_depth
        )

    def is_healthy(self, max_depth: int = 0) -> bool:
        """Exactly ``health_status(max_depth).healthy``: the two can never disagree."""
        return self.health_status(max_depth).healthy
