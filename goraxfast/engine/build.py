"""Building the engine's parts from a :class:`~goraxfast.config.Config`: one place where every
setting meets the object it configures, so the lifecycle (:mod:`.engine`) only starts and stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from goraxfast.config import Config
from goraxfast.core.acks import AckBatcher
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.outage import Outage
from goraxfast.core.pipeline import PipelineLimits, PipelineSizer
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import SQS_MAX_BATCH, is_fifo_queue
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.pipeline import ReceivePipeline
from goraxfast.engine.poller import Credits, PollCounters, Poller
from goraxfast.engine.wakeup import Wakeup
from goraxfast.engine.workforce import Workforce, split_capacity
from goraxfast.worker.handler import BoundHandler

#: Longest wait between receives while SQS keeps failing (the backoff doubles up to it).
OUTAGE_BACKOFF_CAP_S = 20.0
#: QUEUE_PREFETCH when it is automatic, where a fixed figure is needed: deliveries a ``def``
#: worker's ring may hold beyond the running ones (shared among the workers), and messages that
#: may wait for their tenant's slot. Against 10, 40 measured -15 % CPU per message and +23 %
#: msg/s on fauxqs (``python -m profiles.breakdown --only engine --prefetch 10``).
STATIC_PREFETCH = 40


def static_prefetch(config: Config) -> int:
    return STATIC_PREFETCH if config.prefetch is None else config.prefetch


def waiting_bound(config: Config) -> int:
    """How many messages may wait for their tenant's slot: the most the pipeline may hold beyond
    the running ones (QUEUE_PREFETCH, or the automatic pipeline's most). A smaller bound would
    send back to SQS, delayed, what the pipeline was sized to hold."""
    limits = pipeline_limits(config)
    return limits.fixed_prefetch if limits.fixed_prefetch is not None else limits.max_prefetch


def pipeline_limits(config: Config) -> PipelineLimits:
    """QUEUE_POLLERS / QUEUE_PREFETCH as caps of the automatic pipeline, or (QUEUE_PIPELINE=fixed)
    the values kept; fixed and unset, the rules before the pipeline sized itself."""
    if config.pipeline == "fixed":
        return PipelineLimits.from_settings(
            poller_count(config), static_prefetch(config), fixed=True, batch=config.max_messages
        )
    return PipelineLimits.from_settings(
        config.pollers or None, config.prefetch, batch=config.max_messages
    )


def handlers_at_once(config: Config, bound: BoundHandler, workers: int) -> int:
    """Handlers that really run at the same time: one per ``def`` worker process."""
    return config.concurrent_workers if bound.is_async else workers


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
    return config.concurrent_workers + static_prefetch(config)


def poller_count(config: Config) -> int:
    """QUEUE_PIPELINE=fixed: QUEUE_POLLERS, or when it is 0 one long poll per receive batch of
    capacity (at most 8), the rule measured on loopback LocalStack before the pipeline sized
    itself (doubling it gained nothing there; through a real round trip it is far too few).
    """
    if config.pollers:
        return config.pollers
    capacity = config.concurrent_workers + static_prefetch(config)
    return max(1, min(8, -(-capacity // config.max_messages)))


def worker_count(config: Config) -> int:
    return max(1, min(config.worker_processes, config.concurrent_workers))


def build_workforce(
    config: Config, bound: BoundHandler, worker_init: Callable[[int], None] | None
) -> Workforce:
    workers = worker_count(config)
    return Workforce(
        config,
        bound,
        split_capacity(seat_depth(config, bound.is_async), workers),
        worker_init,
        shallow_caps=split_capacity(config.concurrent_workers, workers),
    )


@dataclass(slots=True)
class Parts:
    """The parent's running parts, wired to each other."""

    acker: Acker
    dispatcher: Dispatcher
    credits: Credits
    receive_outage: Outage
    throttle_waiting: Wakeup  # set by the dispatcher when a message waits for its tenant
    polls: PollCounters
    limits: PipelineLimits


def build_parts(
    config: Config,
    workforce: Workforce,
    data_plane: DataPlane,
    *,
    dlq_max_message_bytes: int,
    clock: Callable[[], float] = time.monotonic,
) -> Parts:
    cfg = config
    acker = Acker(
        AckBatcher(max_batch=SQS_MAX_BATCH, max_age_s=cfg.ack_flush_ms / 1000.0),
        data_plane,
        queue_url=cfg.queue_url,
        dlq_url=cfg.dlq_url,
        clock=clock,
        max_message_bytes=dlq_max_message_bytes,
    )
    limiter: TenantLimiter[int] = TenantLimiter(
        cfg.max_concurrency_per_tenant,
        cfg.tenant_limits,
        max_waiting_per_tenant=max(1, waiting_bound(cfg)),
        max_waiting_total=max(1, waiting_bound(cfg)),
    )
    dispatcher = Dispatcher(
        seats=workforce.states,
        acker=acker,
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
        fifo=is_fifo_queue(cfg.queue_url),
    )
    # Deletes that keep failing count against capacity: in an ack outage the engine stops
    # taking messages rather than run more whose deletes it cannot send.
    # The first capacity: the pipeline resizes it with every plan.
    limits = pipeline_limits(cfg)
    first_prefetch = limits.fixed_prefetch if limits.fixed_prefetch is not None else 0
    credits = Credits(
        cfg.concurrent_workers + first_prefetch,
        lambda: len(dispatcher.held) + acker.owed,
        receive_at_least=min(cfg.max_messages, max(1, first_prefetch)),
    )
    dispatcher.on_room = credits.changed
    dispatcher.on_spent = workforce.recycler.spend
    if workforce.recycler.watches_memory:
        dispatcher.on_seat_ready = workforce.recycler.ready
    acker.on_room = credits.changed
    throttle_waiting = Wakeup()
    dispatcher.on_waiting = throttle_waiting.set
    receive_outage = Outage(
        "SQS ReceiveMessage",
        base_s=max(cfg.poll_interval_s, 0.05),
        cap_s=max(cfg.poll_interval_s, OUTAGE_BACKOFF_CAP_S),
    )
    return Parts(
        acker, dispatcher, credits, receive_outage, throttle_waiting, PollCounters(), limits
    )


def build_pipeline(
    config: Config,
    data_plane: DataPlane,
    parts: Parts,
    *,
    handlers_at_once: int,
    handler_s: Callable[[], float | None],
    on_poller_failed: Callable[[asyncio.Task[Any]], None],
) -> ReceivePipeline:
    pipeline: ReceivePipeline

    def make_poller() -> Poller:
        return build_poller(config, data_plane, parts, on_answer=pipeline.observe_receive)

    pipeline = ReceivePipeline(
        PipelineSizer(parts.limits),
        parts.credits,
        parts.dispatcher,
        make_poller,
        slots=config.concurrent_workers,
        workers_at_once=handlers_at_once,
        handler_s=handler_s,
        clock=time.monotonic,
        on_poller_failed=on_poller_failed,
    )
    return pipeline


def build_poller(
    config: Config,
    data_plane: DataPlane,
    parts: Parts,
    *,
    on_answer: Callable[[float, float, int, float, int], None] | None = None,
) -> Poller:
    return Poller(
        data_plane,
        parts.credits,
        parts.dispatcher.on_received,
        max_messages=config.max_messages,
        wait_time_s=config.wait_time_s,
        visibility_timeout_s=config.visibility_timeout_s,
        poll_interval_s=config.poll_interval_s,
        counters=parts.polls,
        queue_url=config.queue_url,
        on_intake_error=parts.dispatcher.recover_intake,
        outage=parts.receive_outage,
        on_answer=on_answer,
        fifo=parts.dispatcher.order is not None,
    )
