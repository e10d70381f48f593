"""Tracing with OpenTelemetry (goraxfast.ops.tracing): spans from the real publisher, a real
engine with forked workers and the fast client, all against the moto server; and nothing at all
when the application traces nothing.

Spans made in a worker live in that process: every test provider here exports each span as it
ends (``SimpleSpanProcessor``) to a file of JSON lines, one ``os.write`` to an ``O_APPEND`` file
per span, so the spans of the parent, of the pytest process and of every worker land in one place.
The global tracer provider is set for one test and taken back after it (as OpenTelemetry's own
test utilities do), so no other test of the suite runs traced.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_support import engine_config, live_seats, queue_counts, wait_until
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.util._once import Once

from goraxfast import Reject, Retry
from goraxfast.config import Config
from goraxfast.core.acks import AckBatcher
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.records import DELIVERY_DECODER, Delivery
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import SQS_MAX_ATTRIBUTES, ReceivedMessage, SendEntry, entry_size
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.engine import Engine
from goraxfast.engine.seats import SeatState
from goraxfast.ops import tracing
from goraxfast.publish.publisher import Publisher, SyncPublisher
from goraxfast.sqs.fast import FastSQSClient
from goraxfast.worker.current import RUNNING
from goraxfast.worker.handler import bind_handler

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class JsonLinesExporter(SpanExporter):
    """Each span as one JSON line appended to ``path``, from whichever process ended it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(s.to_json(indent=None))) + "\n" for s in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def _reset_global_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans_file(tmp_path: Path) -> Iterator[Path]:
    """A tracer provider for this test, exporting every span to the returned file."""
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    yield path
    provider.shutdown()
    _reset_global_provider()


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def message(execution_id: str, correlation_id: str = "") -> ExecutionMessage:
    return ExecutionMessage.new(
        tenant_id="tenant-1",
        workflow_id="wf",
        workflow_version=1,
        trigger_type="test",
        execution_id=execution_id,
        correlation_id=correlation_id,
    )


def received_attributes(boto_sqs: Any, queue_url: str) -> dict[str, dict[str, Any]]:
    resp = boto_sqs.receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    (got,) = resp["Messages"]
    return dict(got.get("MessageAttributes", {}))


# --- end to end ---------------------------------------------------------------------------------


async def test_published_messages_are_processed_in_spans_linked_to_their_producer_spans(
    config: Config, boto_sqs: Any, spans_file: Path
) -> None:
    """Publisher -> SQS (moto) -> engine -> forked workers: each handled message has a
    ``process`` span in its worker linked to its own producer span, failures are marked, and
    the fast client's calls are spans of their own."""
    config = config.with_(sqs_client="fast")
    queue = tracing.queue_name(config.queue_url)
    async with Publisher.from_config(config) as publisher:
        single_id = await publisher.publish(message("single", correlation_id="req-9"))
        result = await publisher.publish_batch(
            [message(f"batch-{i}") for i in range(4)] + [message("reject-me"), message("fail-me")]
        )
    assert result.ok

    def handler(msg: ExecutionMessage) -> None:
        if msg.execution_id == "reject-me":
            raise Reject("workflow retired")
        if msg.execution_id == "fail-me":
            raise ValueError("database unreachable")

    async with Engine(engine_config(config, max_retries=1), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 7, what="7 deletes")
        await wait_until(lambda: queue_counts(boto_sqs, config.queue_url) == (0, 0), what="empty")
    spans = read_spans(spans_file)

    # producers: one send span for publish(), a send span and a create span per message for the batch
    (single,) = [s for s in named(spans, f"send {queue}") if s["kind"] == "SpanKind.PRODUCER"]
    assert single["attributes"]["messaging.message.id"] == single_id
    assert single["attributes"]["messaging.system"] == "aws_sqs"
    assert single["attributes"]["messaging.destination.name"] == queue
    assert single["attributes"]["messaging.message.conversation_id"] == "req-9"
    (batch,) = [s for s in named(spans, f"send {queue}") if s["kind"] == "SpanKind.CLIENT"]
    assert batch["attributes"]["messaging.batch.message_count"] == 6
    creates = named(spans, f"create {queue}")
    assert len(creates) == 6
    assert all(c["parent_id"] == batch["context"]["span_id"] for c in creates)
    producers = {s["attributes"]["goraxfast.execution_id"]: s for s in [single, *creates]}
    assert len({p["attributes"]["messaging.message.id"] for p in producers.values()}) == 7

    # consumers: one process span per handled message, linked to its own producer span
    processes = named(spans, f"process {queue}")
    assert len(processes) == 7
    for span in processes:
        assert span["kind"] == "SpanKind.CONSUMER"
        attributes = span["attributes"]
        producer = producers[attributes["goraxfast.execution_id"]]
        (link,) = span["links"]
        assert link["context"]["trace_id"] == producer["context"]["trace_id"]
        assert link["context"]["span_id"] == producer["context"]["span_id"]
        assert attributes["messaging.message.id"] == producer["attributes"]["messaging.message.id"]
        assert attributes["goraxfast.receive_count"] == 1
        assert span["parent_id"] is None  # a trace of its own, linked (not parented)
    by_id = {s["attributes"]["goraxfast.execution_id"]: s for s in processes}
    assert by_id["single"]["status"]["status_code"] == "UNSET"
    assert by_id["single"]["attributes"]["goraxfast.outcome"] == "success"
    failed = by_id["fail-me"]
    assert failed["status"]["status_code"] == "ERROR"
    assert failed["attributes"]["error.type"] == "ValueError"
    assert [e["name"] for e in failed["events"]] == ["exception"]
    assert "database unreachable" in failed["events"][0]["attributes"]["exception.message"]
    rejected = by_id["reject-me"]
    assert rejected["status"]["status_code"] == "ERROR"
    assert [e["name"] for e in rejected["events"]] == ["goraxfast.reject"]
    assert rejected["attributes"]["goraxfast.outcome"] == "reject"

    # the fast client's SQS calls, named and attributed as botocore's instrumentation does
    receives = [
        s
        for s in named(spans, "SQS.ReceiveMessage")
        if s["attributes"].get("messaging.batch.message_count")
    ]
    assert receives and sum(s["attributes"]["messaging.batch.message_count"] for s in receives) == 7
    receive = receives[0]["attributes"]
    assert receive["rpc.system"] == "aws-api" and receive["rpc.service"] == "SQS"
    assert receive["rpc.method"] == "ReceiveMessage"
    assert receive["messaging.operation.type"] == "receive"
    assert receive["http.response.status_code"] == 200
    deletes = named(spans, "SQS.DeleteMessageBatch")
    assert sum(s["attributes"]["messaging.batch.message_count"] for s in deletes) == 7
    (send_call,) = [
        s
        for s in named(spans, "SQS.SendMessageBatch")
        if s["parent_id"] == batch["context"]["span_id"]
    ]  # the publisher's batch: the client span is inside the publisher's send span
    assert send_call["attributes"]["messaging.batch.message_count"] == 6
    assert named(spans, "SQS.SendMessage")[0]["parent_id"] == single["context"]["span_id"]


async def test_an_async_handler_runs_in_its_span_and_a_retry_is_an_event(
    spans_file: Path,
) -> None:
    """The async wrapper, in process: the worker loop's running delivery gives the span its
    link and attributes; a handler's own spans are children of it."""

    async def handler(msg: ExecutionMessage) -> None:
        with trace.get_tracer("app").start_as_current_span("inside"):
            await asyncio.sleep(0)
        raise Retry(delay_s=7, reason="later")

    bound = bind_handler(handler)
    assert bound.is_async and bound.func is not handler
    msg = message("async-1")
    delivery = Delivery(1, "m-1", 3, 0, 0, encode_message(msg), f"orders\n{TRACEPARENT}")
    token = RUNNING.set((delivery, msg))
    try:
        with pytest.raises(Retry):
            await bound.func(msg)
    finally:
        RUNNING.reset(token)
    spans = read_spans(spans_file)
    (process,) = named(spans, "process orders")
    (inside,) = named(spans, "inside")
    assert inside["parent_id"] == process["context"]["span_id"]
    assert process["links"][0]["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"
    assert process["attributes"]["goraxfast.receive_count"] == 3
    assert process["status"]["status_code"] == "UNSET"
    (event,) = process["events"]
    assert event["name"] == "goraxfast.retry"
    assert event["attributes"] == {"goraxfast.retry.delay_s": 7, "goraxfast.reason": "later"}


async def test_a_message_that_fits_only_without_its_trace_context_is_sent_without_it(
    config: Config, boto_sqs: Any, spans_file: Path
) -> None:
    msg = message("at-the-limit")
    own = entry_size(SendEntry("0", encode_message(msg).decode(), msg.message_attributes()))
    client = FastSQSClient(config)
    async with client, Publisher(client, max_message_bytes=own) as publisher:
        await publisher.publish(msg)
    assert "traceparent" not in received_attributes(boto_sqs, config.queue_url)
    (send,) = named(read_spans(spans_file), f"send {tracing.queue_name(config.queue_url)}")
    assert send["attributes"]["goraxfast.trace_context_dropped"] == "trace context: no room (size)"


async def test_a_published_message_carries_the_w3c_context_of_its_producer_span(
    config: Config, boto_sqs: Any, spans_file: Path
) -> None:
    async with Publisher.from_config(config) as publisher:
        await publisher.publish(message("one"))
    attributes = received_attributes(boto_sqs, config.queue_url)
    (send,) = named(read_spans(spans_file), f"send {tracing.queue_name(config.queue_url)}")
    trace_id, span_id = send["context"]["trace_id"][2:], send["context"]["span_id"][2:]
    assert attributes["traceparent"]["DataType"] == "String"
    version, got_trace, got_span, flags = attributes["traceparent"]["StringValue"].split("-")
    assert (version, got_trace, got_span) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled
    assert set(attributes) == {"tenant_id", "workflow_id", "trigger_type", "traceparent"}


def test_the_sync_publisher_gives_each_message_of_a_batch_its_own_creation_context(
    config: Config, boto_sqs: Any, spans_file: Path
) -> None:
    with SyncPublisher.from_config(config) as publisher:
        result = publisher.publish_batch([message("s-0"), message("s-1")])
    spans = read_spans(spans_file)
    creates = {
        s["attributes"]["goraxfast.execution_id"]: s
        for s in named(spans, f"create {tracing.queue_name(config.queue_url)}")
    }
    got = boto_sqs.receive_message(
        QueueUrl=config.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(got) == 2 and result.ok
    for m in got:
        create = creates[json.loads(m["Body"])["execution_id"]]
        assert create["attributes"]["messaging.message.id"] == m["MessageId"]
        parent = m["MessageAttributes"]["traceparent"]["StringValue"]
        assert parent.split("-")[2] == create["context"]["span_id"][2:]


def test_flush_exports_the_spans_a_batch_processor_still_holds(tmp_path: Path) -> None:
    """What a worker's exit path calls before ``os._exit`` (which runs no atexit)."""
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(JsonLinesExporter(path), schedule_delay_millis=600_000)
    )
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        trace.get_tracer("app").start_span("held").end()
        assert read_spans(path) == []
        assert tracing.flush(timeout_s=5)
        assert [s["name"] for s in read_spans(path)] == ["held"]
    finally:
        provider.shutdown()
        _reset_global_provider()
    assert tracing.flush()  # nothing to do without a provider


# --- the parent's delivery record ---------------------------------------------------------------


@pytest.fixture
def seats() -> Iterator[list[SeatState]]:
    with live_seats(1, cap=10, shallow_cap=10) as states:
        yield states


def dispatched(seats: list[SeatState], attributes: dict[str, Any]) -> Delivery:
    """Receive one message with ``attributes`` through a real dispatcher; the record its
    worker would read."""
    acker = Acker(AckBatcher(), object(), queue_url="q", dlq_url="", clock=time.monotonic)  # type: ignore[arg-type]
    d = Dispatcher(
        seats=seats,
        acker=acker,
        leases=LeaseBook(30),
        limiter=TenantLimiter(100, max_waiting_per_tenant=100, max_waiting_total=100),
        policy=RetryPolicy(),
        clock=time.monotonic,
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        throttle_release_delay_s=5,
    )
    body = encode_message(message("d-1"))
    d.on_received([ReceivedMessage("m1", "rh1", body, 1, 0, 0, attributes)])
    (raw,) = seats[0].seat.down.consumer().get_many()
    return DELIVERY_DECODER.decode(raw)


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def test_a_traced_delivery_carries_the_queue_name_and_the_trace_context(
    seats: list[SeatState], spans_file: Path
) -> None:
    attributes = {"traceparent": _string(TRACEPARENT), "tracestate": _string("k=v")}
    assert dispatched(seats, attributes).trace == f"orders\n{TRACEPARENT}\nk=v"


def test_without_tracing_a_delivery_carries_no_trace(seats: list[SeatState]) -> None:
    assert not tracing.enabled()
    assert dispatched(seats, {"traceparent": _string(TRACEPARENT)}).trace == ""


# --- off: nothing in the way --------------------------------------------------------------------


def test_without_a_tracer_provider_the_handler_is_bound_as_it_is() -> None:
    def handler(msg: ExecutionMessage) -> None: ...

    assert not tracing.enabled()  # the API's default proxy provider: the application set none
    assert bind_handler(handler).func is handler


def test_otel_sdk_disabled_turns_tracing_off_with_a_provider_set(
    spans_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(msg: ExecutionMessage) -> None: ...

    assert tracing.enabled()
    assert bind_handler(handler).func is not handler
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.enabled()
    assert bind_handler(handler).func is handler


async def test_an_untraced_fast_client_makes_no_spans(
    config: Config, boto_sqs: Any, spans_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider is set (its spans would be exported) but OTEL_SDK_DISABLED says no: the
    client's calls are the plain ones and nothing reaches the exporter."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    client = FastSQSClient(config)
    assert not client.traced and "_call" not in vars(client)
    async with client:
        assert "request" not in vars(client._pool)
        await client.send_message(encode_message(message("x")).decode())
        (got,) = await client.receive(10, 1, 30)
        await client.delete_batch([("0", got.receipt_handle)])
    async with FastSQSClient(config) as sender:
        await Publisher(sender).publish(message("y"))
    assert read_spans(spans_file) == []
    assert "traceparent" not in received_attributes(boto_sqs, config.queue_url)


def test_goraxfast_never_imports_opentelemetry_itself() -> None:
    """Without an application that imported OpenTelemetry, nothing of it is loaded: the
    engine, publisher, fast client and a bound handler stay as they were."""
    code = (
        "import sys\n"
        "from goraxfast import Engine, Publisher\n"
        "from goraxfast.sqs.fast import FastSQSClient\n"
        "from goraxfast.worker.handler import bind_handler\n"
        "from goraxfast.ops import tracing\n"
        "def h(m): pass\n"
        "assert bind_handler(h).func is h and not tracing.enabled()\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the rules, as tables -----------------------------------------------------------------------


def _attributes(count: int) -> dict[str, Any]:
    return {f"a{i}": _string("v") for i in range(count)}


CONTEXT = {"traceparent": TRACEPARENT, "tracestate": "k=v"}
BOTH = len("traceparent") + 6 + len(TRACEPARENT) + len("tracestate") + 6 + 3


@pytest.mark.parametrize(
    ("existing", "context", "room", "added", "left_out"),
    [
        (4, CONTEXT, 10_000, ["traceparent", "tracestate"], ""),
        (4, {"traceparent": TRACEPARENT}, 10_000, ["traceparent"], ""),
        (4, {}, 10_000, [], ""),
        (4, CONTEXT, BOTH, ["traceparent", "tracestate"], ""),
        (4, CONTEXT, BOTH - 1, ["traceparent"], "tracestate: no room"),
        (4, CONTEXT, 10, [], "trace context: no room (size)"),
        (SQS_MAX_ATTRIBUTES - 2, CONTEXT, 10_000, ["traceparent", "tracestate"], ""),
        (SQS_MAX_ATTRIBUTES - 1, CONTEXT, 10_000, ["traceparent"], "tracestate: no room"),
        (SQS_MAX_ATTRIBUTES, CONTEXT, 10_000, [], "trace context: no room (attributes)"),
    ],
    ids=[
        "both fit",
        "no tracestate to add",
        "no context",
        "both fit exactly",
        "a byte short: traceparent only",
        "no room for traceparent",
        "exactly ten attributes",
        "one attribute left: traceparent",
        "ten already",
    ],
)
def test_the_trace_context_joins_a_message_only_as_far_as_sqs_allows(
    existing: int, context: dict[str, str], room: int, added: list[str], left_out: str
) -> None:
    attributes = _attributes(existing)
    assert tracing.fit_trace_context(attributes, context, room) == left_out
    assert [name for name in attributes if not name.startswith("a")] == added
    assert len(attributes) <= SQS_MAX_ATTRIBUTES


@pytest.mark.parametrize(
    ("attributes", "trace_field"),
    [
        ({"traceparent": _string(TRACEPARENT)}, f"q\n{TRACEPARENT}"),
        (
            {"traceparent": _string(TRACEPARENT), "tracestate": _string("a=1,b=2")},
            f"q\n{TRACEPARENT}\na=1,b=2",
        ),
        ({}, "q"),
        ({"tracestate": _string("a=1")}, "q"),
        ({"traceparent": {"DataType": "Number", "StringValue": 5}}, "q"),
        ({"traceparent": "not an attribute"}, "q"),
        ({"traceparent": _string("x" * 129)}, "q"),
        ({"traceparent": _string(f"{TRACEPARENT}\nforged")}, "q"),
        (
            {"traceparent": _string(TRACEPARENT), "tracestate": _string("k=" + "v" * 511)},
            f"q\n{TRACEPARENT}",
        ),
    ],
    ids=[
        "traceparent",
        "with tracestate",
        "none",
        "tracestate alone",
        "not a string",
        "not a mapping",
        "too long",
        "a newline",
        "tracestate too long",
    ],
)
def test_a_delivery_takes_only_a_well_formed_trace_context(
    attributes: dict[str, Any], trace_field: str
) -> None:
    assert tracing.carried("q", attributes) == trace_field


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://sqs.us-east-1.amazonaws.com/123456789012/orders", "orders"),
        ("http://127.0.0.1:4566/000000000000/jobs.fifo", "jobs.fifo"),
        ("http://localhost/q/", "q"),
    ],
)
def test_the_destination_is_the_queue_name(url: str, name: str) -> None:
    assert tracing.queue_name(url) == name
