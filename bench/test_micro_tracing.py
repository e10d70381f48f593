"""What tracing costs a message between the parent and a worker: tracing off (no tracer provider,
what every engine runs unless its application traces) against tracing on.

One round is ``DELIVERIES`` messages through the real parts, in one process: the dispatcher
takes them in receive batches of 10 (intake, lease, tenant slot, the delivery record onto a real
shared-memory ring), the real sync worker loop runs a no-op handler on each, and the dispatcher
settles their results. Every message carries a ``traceparent`` attribute in both variants (as a
traced publisher sends it), in the fast client's lazily decoded form, so that the off variant
shows what ignoring it costs. On: an SDK provider whose processor exports to nowhere, so the
figure is goraxfast's share (the delivery's context, the span, its link and attributes), not an
exporter's. pytest-benchmark's columns are per round; ``extra_info`` has µs per message.

``make test`` runs this once with benchmarks disabled (``benchmark.stats`` is None then).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util._once import Once

from goraxfast.core import counters as C
from goraxfast.core.acks import AckBatcher
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import ReceivedMessage
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.seats import SeatState
from goraxfast.ipc.rings import create_seats
from goraxfast.ops import tracing
from goraxfast.sqs.fast import LazyAttributes
from goraxfast.worker import loop as W
from goraxfast.worker.handler import bind_handler

DELIVERIES = 2_000
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Nowhere(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _reset_global_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(params=["off", "on"])
def tracing_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    provider = None
    if request.param == "on":
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(Nowhere()))
        _reset_global_provider()
        trace.set_tracer_provider(provider)
    assert tracing.enabled() is (request.param == "on")
    yield request.param
    if provider is not None:
        provider.shutdown()
        _reset_global_provider()


def received(count: int) -> list[list[ReceivedMessage]]:
    msg = ExecutionMessage.new(
        tenant_id="tenant-1",
        workflow_id="wf-bench-orders",
        workflow_version=3,
        trigger_type="webhook",
        trigger_data=b'{"order":1,"items":[{"sku":"SKU-0001","qty":2}]}',
        execution_id="bench-00000001",
        correlation_id="corr-00000001",
    )
    body = encode_message(msg)
    attributes = {
        **msg.message_attributes(),
        "traceparent": {"DataType": "String", "StringValue": TRACEPARENT},
    }
    raw = msgspec.json.encode(attributes)
    messages = [
        ReceivedMessage(
            f"00000000-aaaa-bbbb-cccc-{i:012d}",
            f"handle-{i}",
            body,
            1,
            0,
            0,
            LazyAttributes(msgspec.Raw(raw)),
        )
        for i in range(count)
    ]
    return [messages[i : i + 10] for i in range(0, count, 10)]


@pytest.mark.benchmark(timer=time.process_time)
def test_dispatch_and_worker_per_round_of_messages(benchmark: Any, tracing_mode: str) -> None:
    [made] = create_seats(1, 1 << 23, C.COUNTER_SLOTS)
    seat = SeatState.of(0, made, cap=DELIVERIES, shallow_cap=DELIVERIES)
    seat.alive, seat.pid = True, os.getpid()
    made.counters[C.PID] = seat.pid
    acker = Acker(AckBatcher(), object(), queue_url="q", dlq_url="", clock=time.monotonic)  # type: ignore[arg-type]
    dispatcher = Dispatcher(
        seats=[seat],
        acker=acker,
        leases=LeaseBook(30),
        limiter=TenantLimiter(10 * DELIVERIES, max_waiting_per_tenant=1, max_waiting_total=1),
        policy=RetryPolicy(),
        clock=time.monotonic,
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        throttle_release_delay_s=5,
    )
    handled = 0

    def noop(_: ExecutionMessage) -> None:
        nonlocal handled
        handled += 1
        if handled == DELIVERIES:
            made.counters[C.CONTROL] = C.CONTROL_DRAIN  # the loop returns once the ring is empty

    worker = W._SyncWorker(made, bind_handler(noop), 0, os.getppid(), 60.0)
    batches: list[list[ReceivedMessage]] = []

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        nonlocal handled, batches
        handled = 0
        made.counters[C.CONTROL] = 0
        acker.batcher = AckBatcher()  # the previous round's deletes, never sent
        batches = received(DELIVERIES)
        return (), {}

    def one_round() -> None:
        for batch in batches:
            dispatcher.on_received(batch)
        worker.run()
        dispatcher.on_results(seat)

    benchmark.pedantic(one_round, setup=setup, rounds=10)
    assert handled == DELIVERIES and not dispatcher.held
    if benchmark.stats:
        benchmark.extra_info["cpu_us_per_message"] = round(
            benchmark.stats.stats.median / DELIVERIES * 1e6, 2
        )
    made.close()
