"""The engine's own numbers: one snapshot type for tests, progress lines and ``/metrics``.

Parent-side counters (receives, acks, leases) live in the parent's objects; handler counters
live in each worker's shared-memory block and are summed on demand, with the blocks of dead
workers folded into a retired total so that counters never go backwards.
"""

from __future__ import annotations

import platform
import sys
import weakref
from dataclasses import asdict, dataclass
from typing import Any

from goraxfast.core import counters as C
from goraxfast.core.retry import Outcome
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.pipeline import PipelineCounters
from goraxfast.engine.poller import PollCounters
from goraxfast.engine.workforce import Workforce
from goraxfast.ops.process_metrics import WorkerProcessMeter, parent_families
from goraxfast.ops.prometheus import HistogramSample, MetricFamily, Sample
from goraxfast.sqs.botocore import SQSClient
from goraxfast.version import installed_version


@dataclass(frozen=True, slots=True)
class StatsSources:
    """The objects that keep the engine's counters (the dispatcher and acker exist once the
    engine has started)."""

    state: str
    dispatcher: Dispatcher | None
    acker: Acker | None
    polls: PollCounters
    workforce: Workforce
    pipeline: PipelineCounters | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    state: str
    received: int
    poison: int
    dispatched: int
    succeeded: int
    retried: int
    rejected: int
    failed: int
    timed_out: int
    crashed: int
    released: int
    throttled: int
    throttle_released: int
    deleted: int
    dead_lettered: int
    dead_letter_skipped: int  # due for the DLQ but no AWS_SQS_DLQ_URL: left to the redrive policy
    dead_letter_stubs: int  # too large for the DLQ: a stub sent, the original left for redrive
    dead_letter_answers_lost: int  # DLQ sends that got no answer (a copy may exist)
    intake_failures: int  # receive batches the engine failed to take (a bug), recovered
    visibility_changes: int
    lease_renewals: int
    acks_pending: int
    ack_errors: int
    in_flight: int
    worker_restarts: int
    worker_recycles: int  # healthy workers replaced for WORKER_MAX_MESSAGES / _MEMORY_MB
    receives: int
    empty_receives: int
    receive_errors: int
    handled: int  # every outcome except RELEASED: attempts that ran
    pollers: int  # ReceiveMessage calls the pipeline keeps in flight now
    prefetch: int  # room beyond the running messages now
    pollers_max: int  # the most of each during the run
    prefetch_max: int
    dwell_p50_s: float | None  # receive -> handler start, from the dwell histogram
    dwell_p99_s: float | None

    def summary(self) -> str:
        return (
            f"received={self.received} succeeded={self.succeeded} failed={self.failed} "
            f"retried={self.retried} rejected={self.rejected} timed_out={self.timed_out} "
            f"crashed={self.crashed} poison={self.poison} dead_lettered={self.dead_lettered} "
            f"deleted={self.deleted} released={self.released} worker_restarts={self.worker_restarts} "
            f"worker_recycles={self.worker_recycles} "
            f"acks_pending={self.acks_pending}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(src: StatsSources) -> EngineStats:
    d = src.dispatcher
    a = src.acker
    p = src.polls
    pl = src.pipeline
    done = d.counters.completed if d is not None else dict.fromkeys(Outcome, 0)
    return EngineStats(
        state=src.state,
        received=d.counters.received if d else 0,
        poison=d.counters.poison if d else 0,
        dispatched=d.counters.dispatched if d else 0,
        succeeded=done[Outcome.SUCCESS],
        retried=done[Outcome.RETRY],
        rejected=done[Outcome.REJECT],
        failed=done[Outcome.FAIL],
        timed_out=done[Outcome.TIMEOUT],
        crashed=done[Outcome.CRASH],
        released=d.counters.released if d else 0,
        throttled=d.counters.throttled if d else 0,
        throttle_released=d.counters.throttle_released if d else 0,
        deleted=a.counters.deleted if a else 0,
        dead_lettered=a.counters.dead_lettered if a else 0,
        dead_letter_skipped=d.counters.dead_letter_no_dlq if d else 0,
        dead_letter_stubs=a.counters.letters_body_omitted if a else 0,
        dead_letter_answers_lost=a.counters.letter_answers_lost if a else 0,
        intake_failures=d.counters.intake_failures if d else 0,
        visibility_changes=a.counters.visibility_changed if a else 0,
        lease_renewals=d.counters.lease_renewals if d else 0,
        acks_pending=a.pending if a else 0,
        ack_errors=(a.counters.call_errors + a.counters.entries_given_up) if a else 0,
        in_flight=len(d.held) if d else 0,
        worker_restarts=src.workforce.replaced,
        worker_recycles=sum(src.workforce.recycler.counts.values()),
        receives=p.receives,
        empty_receives=p.empty_receives,
        receive_errors=p.receive_errors,
        handled=sum(v for k, v in done.items() if k is not Outcome.RELEASED),
        pollers=pl.pollers if pl else 0,
        prefetch=pl.prefetch if pl else 0,
        pollers_max=pl.pollers_max if pl else 0,
        prefetch_max=pl.prefetch_max if pl else 0,
        dwell_p50_s=C.histogram_quantile(C.DWELL_BUCKETS_S, d.counters.dwell_histogram, 0.5)
        if d
        else None,
        dwell_p99_s=C.histogram_quantile(C.DWELL_BUCKETS_S, d.counters.dwell_histogram, 0.99)
        if d
        else None,
    )


def _counter(name: str, help_: str, value: float) -> MetricFamily:
    return MetricFamily(name, "counter", help_, [Sample(value)])


def _gauge(name: str, help_: str, value: float) -> MetricFamily:
    return MetricFamily(name, "gauge", help_, [Sample(value)])


def engine_families(src: StatsSources) -> list[MetricFamily]:
    s = snapshot(src)
    fams = [
        _counter("goraxfast_received", "Messages received from SQS.", s.received),
        _counter(
            "goraxfast_poison", "Undecodable or invalid bodies, dead-lettered at once.", s.poison
        ),
        MetricFamily(
            "goraxfast_processed",
            "counter",
            "Handler outcomes.",
            [
                Sample(s.succeeded, {"outcome": "success"}),
                Sample(s.retried, {"outcome": "retry"}),
                Sample(s.rejected, {"outcome": "reject"}),
                Sample(s.failed, {"outcome": "fail"}),
                Sample(s.timed_out, {"outcome": "timeout"}),
                Sample(s.crashed, {"outcome": "crash"}),
            ],
        ),
        _counter("goraxfast_deleted", "Messages deleted from the main queue.", s.deleted),
        _counter("goraxfast_dead_lettered", "Messages copied to the DLQ.", s.dead_lettered),
        _counter(
            "goraxfast_dead_letter_skipped",
            "Messages due for the DLQ with no AWS_SQS_DLQ_URL: left to the queue's redrive policy.",
            s.dead_letter_skipped,
        ),
        _counter(
            "goraxfast_dead_letter_stubs",
            "Messages too large for the DLQ: a stub letter sent, the original kept for redrive.",
            s.dead_letter_stubs,
        ),
        _counter(
            "goraxfast_dead_letter_answers_lost",
            "DLQ sends that got no answer; each may have left a copy (same goraxfast_letter_id).",
            s.dead_letter_answers_lost,
        ),
        _counter(
            "goraxfast_intake_failures",
            "Receive batches the engine failed to take (a bug); their messages were settled.",
            s.intake_failures,
        ),
        _counter(
            "goraxfast_released", "Messages handed back unstarted (visibility 0).", s.released
        ),
        _counter("goraxfast_throttled", "Messages that waited for a tenant slot.", s.throttled),
        _counter("goraxfast_lease_renewals", "Visibility extensions requested.", s.lease_renewals),
        _counter("goraxfast_worker_restarts", "Workers replaced after dying.", s.worker_restarts),
        MetricFamily(
            "goraxfast_worker_recycles",
            "counter",
            "Healthy workers replaced by a fresh one once they finished what they held, by the "
            "limit they reached (WORKER_MAX_MESSAGES, WORKER_MAX_MEMORY_MB).",
            [Sample(v, {"reason": k}) for k, v in src.workforce.recycler.counts.items()],
        ),
        _counter("goraxfast_receive_calls", "ReceiveMessage calls.", s.receives),
        _counter("goraxfast_receive_errors", "Failed ReceiveMessage calls.", s.receive_errors),
        _counter(
            "goraxfast_ack_errors", "Failed ack calls and ack entries given up.", s.ack_errors
        ),
        _gauge("goraxfast_in_flight", "Messages held by the engine.", s.in_flight),
        _gauge(
            "goraxfast_acks_pending", "Acknowledgements not yet confirmed by SQS.", s.acks_pending
        ),
        _gauge("goraxfast_workers_alive", "Live worker processes.", len(src.workforce.pids())),
        _gauge(
            "goraxfast_receive_pipeline_pollers",
            "ReceiveMessage calls the pipeline keeps in flight (sized by the round trip).",
            s.pollers,
        ),
        _gauge(
            "goraxfast_receive_pipeline_prefetch",
            "Room for messages beyond the running ones (sized by the round trip and rate).",
            s.prefetch,
        ),
    ]
    if src.dispatcher is not None:
        by_tenant = src.dispatcher.in_flight_by_tenant()
        fams.append(
            MetricFamily(
                "goraxfast_tenant_in_flight",
                "gauge",
                "Deliveries holding a tenant slot, per tenant.",
                [Sample(v, {"tenant": t}) for t, v in sorted(by_tenant.items())],
            )
        )
    totals = src.workforce.totals()
    fams.append(
        MetricFamily(
            "goraxfast_handler_seconds",
            "histogram",
            "Handler run time, summed over every worker.",
            [
                HistogramSample(
                    C.LATENCY_BUCKETS_S,
                    totals.cumulative()[:-1],
                    totals.handler_ns_total / 1e9,
                    sum(totals.histogram),
                )
            ],
        )
    )
    if src.dispatcher is not None:
        c = src.dispatcher.counters
        cumulative, running = [], 0
        for v in c.e2e_histogram:
            running += v
            cumulative.append(running)
        fams.append(
            MetricFamily(
                "goraxfast_publish_to_handled_seconds",
                "histogram",
                "From SQS SentTimestamp to the handler's end (clocks of SQS and this host).",
                [
                    HistogramSample(
                        C.LATENCY_BUCKETS_S, cumulative[:-1], c.e2e_sum_ms / 1e3, running
                    )
                ],
            )
        )
        dwell, total = [], 0
        for v in c.dwell_histogram:
            total += v
            dwell.append(total)
        fams.append(
            MetricFamily(
                "goraxfast_dwell_seconds",
                "histogram",
                "From receive to the handler's start: how long a message waits in the engine's "
                "hands.",
                [HistogramSample(C.DWELL_BUCKETS_S, dwell[:-1], c.dwell_sum_s, total)],
            )
        )
    return fams + process_level_families(src)


#: One meter per workforce, for as long as it lives: its CPU counter must remember what it has
#: exposed across scrapes (and across a stop and start, which forks a new zygote).
_WORKER_METERS: weakref.WeakKeyDictionary[Workforce, WorkerProcessMeter] = (
    weakref.WeakKeyDictionary()
)


def worker_process_families(workforce: Workforce) -> list[MetricFamily]:
    meter = _WORKER_METERS.get(workforce)
    if meter is None:
        meter = _WORKER_METERS[workforce] = WorkerProcessMeter()
    zygote_pid = workforce.zygote.pid if workforce.zygote is not None else 0
    return meter.families(zygote_pid, workforce.pids())


def client_in_use(src: StatsSources) -> str:
    """``fast`` or ``botocore`` as actually opened (the fast client gives way to botocore behind
    a proxy), ``custom`` for an injected data plane; the configured one before the start."""
    if src.acker is None:
        return src.workforce.config.sqs_client
    dp = src.acker.dp
    fast = sys.modules.get("goraxfast.sqs.fast")  # never imported: it cannot be in use
    if fast is not None and isinstance(dp, fast.FastSQSClient):
        return "fast"
    if isinstance(dp, SQSClient):
        return "botocore"
    return "custom"


def build_info_family(src: StatsSources) -> MetricFamily:
    labels = {
        "version": installed_version(),
        "python": platform.python_version(),
        "client": client_in_use(src),
    }
    return MetricFamily(
        "goraxfast_build_info",
        "gauge",
        "Always 1; the labels say which goraxfast, Python and SQS client run here.",
        [Sample(1, labels)],
    )


def process_level_families(src: StatsSources) -> list[MetricFamily]:
    """What Prometheus conventions expect of any service (``process_*``, ``python_*``, build
    info), and the workers' processes beside them; read from /proc at scrape time only."""
    return [build_info_family(src), *parent_families(), *worker_process_families(src.workforce)]
