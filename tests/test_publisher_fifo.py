"""Publishing to FIFO queues and to standard queues with fair-queue groups, on the real moto
server, through both asyncio clients (botocore and fast), the sync publisher and the adapter.

The fixtures here (a FIFO queue and its FIFO DLQ, a Config for them) are shared with the client
tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, decode_message
from goraxfast.core.sqs_model import HELD_BACK_CODE, BatchFailure, BatchResult, SendEntry
from goraxfast.errors import MessageDecodeError, SQSError, ValidationError
from goraxfast.publish.adapter import PublisherAdapter
from goraxfast.publish.publisher import Grouping, Publisher, PublisherMetrics, SyncPublisher
from goraxfast.sqs.botocore import SQSClient, SyncSQSClient
from goraxfast.sqs.fast import FastSQSClient

_names = iter(range(10**9))


@pytest.fixture
def fifo_queue_pair(boto_sqs: Any) -> Iterator[tuple[str, str]]:
    """A fresh FIFO queue and its FIFO DLQ (SQS requires the DLQ of a FIFO queue to be FIFO)."""
    n = next(_names)
    fifo = {"FifoQueue": "true"}
    dlq = boto_sqs.create_queue(QueueName=f"dlq-{n}-{random.getrandbits(24)}.fifo", Attributes=fifo)
    main = boto_sqs.create_queue(
        QueueName=f"main-{n}-{random.getrandbits(24)}.fifo",
        Attributes={**fifo, "VisibilityTimeout": "30"},
    )
    yield main["QueueUrl"], dlq["QueueUrl"]
    for url in (main["QueueUrl"], dlq["QueueUrl"]):
        with contextlib.suppress(Exception):
            boto_sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def fifo_config(config: Config, fifo_queue_pair: tuple[str, str]) -> Config:
    main, dlq = fifo_queue_pair
    return config.with_(queue_url=main, dlq_url=dlq)


def message(
    n: int, workflow: str = "wf-1", tenant: str = "tenant-1", **changes: Any
) -> ExecutionMessage:
    msg = ExecutionMessage.new(
        execution_id=f"exec-{n}",
        tenant_id=tenant,
        workflow_id=workflow,
        workflow_version=1,
        trigger_type="webhook",
        trigger_data=b'{"n":%d}' % n,
    )
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


class SlowRecording:
    """Mixed into both clients: each SendMessageBatch is slowed a little (so that calls overlap)
    and recorded; two calls in flight with one group are counted. A call holding an entry of
    ``call_faults`` fails whole (as throttling, a 5xx or a lost answer do), an entry of
    ``faults`` fails alone; each retryably, the given number of times."""

    calls: list[list[str]]
    in_flight: list[set[str | None]]
    overlaps: int
    faults: dict[str, int]
    call_faults: dict[str, int]

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        groups = {e.group_id for e in entries}
        self.overlaps += any(groups & other for other in self.in_flight)
        self.in_flight.append(groups)
        self.calls.append([e.id for e in entries])
        try:
            await asyncio.sleep(random.uniform(0, 0.005))
            whole = [e.id for e in entries if self.call_faults.get(e.id, 0) > 0]
            for entry_id in whole:
                self.call_faults[entry_id] -= 1
            if whole:
                raise SQSError("SendMessageBatch", queue_url, "injected", "ServiceUnavailable")
            failing = [e for e in entries if self.faults.get(e.id, 0) > 0]
            for e in failing:
                self.faults[e.id] -= 1
            rest = [e for e in entries if e not in failing]
            real: BatchResult = await super().send_batch(queue_url, rest)  # type: ignore[misc]
            fails = tuple(BatchFailure(e.id, "InternalError", "injected", False) for e in failing)
            return BatchResult(real.successful, real.failed + fails, real.message_ids)
        finally:
            self.in_flight.remove(groups)


class SlowBotocore(SlowRecording, SQSClient):
    pass


class SlowFast(SlowRecording, FastSQSClient):
    pass


Client = SlowBotocore | SlowFast


@pytest.fixture(params=["botocore", "fast"])
async def fifo_client(fifo_config: Config, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    kind = SlowBotocore if request.param == "botocore" else SlowFast
    async with kind(fifo_config, retry_base_s=0.001, retry_max_s=0.002, send_concurrency=4) as c:
        c.calls, c.in_flight, c.overlaps, c.faults, c.call_faults = [], [], 0, {}, {}
        yield c


@pytest.fixture(params=["botocore", "fast"])
async def standard_client(config: Config, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    kind = SlowBotocore if request.param == "botocore" else SlowFast
    async with kind(config, retry_base_s=0.001) as c:
        c.calls, c.in_flight, c.overlaps, c.faults, c.call_faults = [], [], 0, {}, {}
        yield c


async def in_order(client: SQSClient | FastSQSClient, expected: int) -> list[Any]:
    """Everything in FIFO delivery order: receive, delete what came, again."""
    got: list[Any] = []
    for _ in range(expected + 10):
        batch = await client.receive(10, 0, 30)
        got += batch
        if batch:
            await client.delete_batch([(str(i), m.receipt_handle) for i, m in enumerate(batch)])
        if len(got) >= expected:
            break
    return got


def system_attributes(boto_sqs: Any, url: str) -> list[dict[str, str]]:
    resp = boto_sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )
    return [m["Attributes"] for m in resp.get("Messages", [])]


# --- FIFO: group, deduplication, order --------------------------------------------------------


async def test_a_fifo_message_is_grouped_by_workflow_and_deduplicated_by_execution(
    fifo_client: Client, boto_sqs: Any
) -> None:
    publisher = Publisher(fifo_client)
    assert publisher.fifo and publisher.grouping == Grouping()
    first = await publisher.publish(message(1, workflow="wf-7"))
    await publisher.publish(message(1, workflow="wf-7"))  # a copy: SQS drops it
    await publisher.publish(message(1, workflow="wf-7", retry_count=2))  # a new attempt: kept
    attrs = system_attributes(boto_sqs, fifo_client.queue_url)
    assert [(a["MessageGroupId"], a["MessageDeduplicationId"]) for a in attrs] == [
        ("wf-7", "exec-1"),
        ("wf-7", "exec-1:retry-2"),
    ]
    assert first and publisher.metrics.published == 3


async def test_a_batch_keeps_each_group_in_order_across_calls_retries_and_concurrency(
    fifo_client: Client,
) -> None:
    workflows = [f"wf-{(i * 7) % 6}" for i in range(80)]  # interleaved, as many tenants publish
    msgs = [message(i, workflow=w) for i, w in enumerate(workflows)]
    fifo_client.call_faults = {"3": 1, "14": 2, "47": 1}  # entry ids are positions
    result = await Publisher(fifo_client).publish_batch(msgs)
    assert result.ok and result.published_ids == tuple(m.execution_id for m in msgs)
    assert fifo_client.overlaps == 0  # never two calls with one group in flight
    assert max(len(c) for c in fifo_client.calls) == 10
    got = await in_order(fifo_client, len(msgs))
    assert len(got) == len(msgs)
    for workflow in set(workflows):
        delivered = [decode_message(m.body).execution_id for m in got if m.group_id == workflow]
        assert delivered == [m.execution_id for m in msgs if m.workflow_id == workflow]


async def test_a_message_that_finally_fails_keeps_the_rest_of_its_group_unsent(
    fifo_client: Client,
) -> None:
    msgs = [message(i, workflow="wf-a" if i < 15 else "wf-b") for i in range(20)]
    fifo_client.faults = {"2": 99}  # every attempt: wf-a's exec-2 never goes
    result = await Publisher(fifo_client).publish_batch(msgs)
    assert [f.code for f in result.failed][:1] == ["InternalError"]
    held = [f for f in result.failed if f.code == HELD_BACK_CODE]
    # exec-3..exec-9 were in exec-2's own call (sent, before SQS said no to exec-2 alone);
    # wf-a's later calls wait behind it and are not sent
    assert [f.execution_id for f in held] == [f"exec-{i}" for i in range(10, 15)]
    assert all(f.retryable for f in held)
    assert set(result.published_ids) == {f"exec-{i}" for i in (0, 1, *range(3, 10), *range(15, 20))}
    got = await in_order(fifo_client, 16)
    assert [decode_message(m.body).execution_id for m in got if m.group_id == "wf-a"] == [
        f"exec-{i}" for i in (0, 1, *range(3, 10))
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [("tenant_id", "tenant-9"), ("execution_id", "exec-4"), ("workflow_id", "wf-3")],
)
async def test_the_group_key_is_configurable(
    fifo_config: Config, boto_sqs: Any, key: str, expected: str
) -> None:
    async with Publisher.from_config(fifo_config.with_(fifo_group_by=key)) as publisher:
        await publisher.publish(message(4, workflow="wf-3", tenant="tenant-9"))
    [attrs] = system_attributes(boto_sqs, fifo_config.queue_url)
    assert attrs["MessageGroupId"] == expected


async def test_a_group_passed_by_the_caller_wins_and_caller_mode_requires_one(
    fifo_config: Config, boto_sqs: Any
) -> None:
    async with Publisher.from_config(fifo_config.with_(fifo_group_by="caller")) as publisher:
        with pytest.raises(ValidationError, match=r"requires a MessageGroupId.*exec-1"):
            await publisher.publish(message(1))
        with pytest.raises(ValidationError, match=r"batch index 1"):
            await publisher.publish_batch([message(0), message(1)], group_ids=["order-1", None])
        await publisher.publish(message(2), group_id="order-42")
        result = await publisher.publish_batch(
            [message(3), message(4)], group_ids=["order-42", "order-43"]
        )
        assert result.ok
        with pytest.raises(ValueError, match="1 group_ids for 2 messages"):
            await publisher.publish_batch([message(5), message(6)], group_ids=["x"])
    attrs = system_attributes(boto_sqs, fifo_config.queue_url)
    assert sorted(a["MessageGroupId"] for a in attrs) == ["order-42", "order-42", "order-43"]


async def test_a_function_may_choose_the_group(fifo_client: Client, boto_sqs: Any) -> None:
    grouping = Grouping(fifo_group_by=lambda m: f"{m.tenant_id}/{m.workflow_id}")
    await Publisher(fifo_client, grouping=grouping).publish(message(1, workflow="w", tenant="t"))
    [attrs] = system_attributes(boto_sqs, fifo_client.queue_url)
    assert attrs["MessageGroupId"] == "t/w"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"workflow_id": "w" * 129}, r"MessageGroupId is 129 characters.*from workflow_id"),
        ({"workflow_id": "wf one"}, r"MessageGroupId has a character SQS refuses \(' '\)"),
        ({"workflow_id": "wf-é"}, r"\('é'\).*execution_id='exec-1'"),
        ({"execution_id": "e" * 129}, r"MessageDeduplicationId is 129.*from execution_id"),
        ({"execution_id": "e" * 122, "retry_count": 3}, r"MessageDeduplicationId is 130"),
    ],
)
async def test_ids_sqs_would_refuse_are_refused_before_any_call(
    fifo_config: Config, changes: dict[str, Any], match: str
) -> None:
    publisher = Publisher(SQSClient(fifo_config))  # never started: any call would raise
    with pytest.raises(ValidationError, match=match):
        await publisher.publish(message(1, **changes))
    with pytest.raises(ValidationError, match="batch index 1"):
        await publisher.publish_batch([message(0), message(1, **changes)])
    assert publisher.metrics == PublisherMetrics(0, 0, None)


async def test_content_based_deduplication_is_read_and_no_id_sent(
    boto_sqs: Any, config: Config
) -> None:
    url = boto_sqs.create_queue(
        QueueName=f"cbd-{random.getrandbits(32)}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    try:
        for kind in ("fast", "botocore"):
            async with Publisher.from_config(config.with_(queue_url=url, sqs_client=kind)) as p:
                assert p.grouping.content_based_deduplication
                await p.publish(message(1))
        with SyncPublisher.from_config(config.with_(queue_url=url)) as sync:
            assert sync.grouping.content_based_deduplication
        attrs = system_attributes(boto_sqs, url)  # two bodies (enqueued_at differs): two
        assert [a["MessageDeduplicationId"] != "exec-1" for a in attrs] == [True, True]
    finally:
        boto_sqs.delete_queue(QueueUrl=url)


def test_the_sync_publisher_groups_deduplicates_and_keeps_order(
    fifo_config: Config, boto_sqs: Any
) -> None:
    msgs = [message(i, workflow=f"wf-{i % 3}") for i in range(25)]
    with SyncPublisher.from_config(fifo_config) as publisher:
        assert publisher.fifo and not publisher.grouping.content_based_deduplication
        assert publisher.publish_batch(msgs).ok
        publisher.publish(message(0, workflow="wf-0"))  # a copy of exec-0: dropped
        with pytest.raises(ValidationError, match="MessageGroupId"):
            publisher.publish(message(99, workflow="no spaces"))
    with SyncSQSClient(fifo_config) as client:
        assert client.queue_attributes().visible == 25


async def test_the_adapter_passes_a_message_group_id(fifo_config: Config, boto_sqs: Any) -> None:
    data = {"tenant_id": "t", "workflow_id": "w", "workflow_version": 1, "trigger_type": "api"}
    async with Publisher.from_config(fifo_config) as publisher:
        adapter = PublisherAdapter(publisher)
        await adapter.publish({**data, "message_group_id": "order-1"})
        result = await adapter.publish_many([data, {**data, "message_group_id": "order-2"}])
        assert result.ok
        with pytest.raises(
            MessageDecodeError, match=r"item 0: `message_group_id` must be a string"
        ):
            await adapter.publish_many([{**data, "message_group_id": 5}])
    groups = sorted(a["MessageGroupId"] for a in system_attributes(boto_sqs, fifo_config.queue_url))
    assert groups == ["order-1", "order-2", "w"]


# --- standard queues: the tenant as the fair-queue group --------------------------------------


async def test_a_standard_queue_gets_the_tenant_as_its_group(standard_client: Client) -> None:
    publisher = Publisher(standard_client)
    assert not publisher.fifo
    await publisher.publish(message(100, tenant="tenant-a"))
    batch = [message(i, tenant=f"tenant-{i % 2}") for i in range(12)]
    assert (await publisher.publish_batch(batch)).ok
    got = await in_order(standard_client, 13)
    groups = {decode_message(m.body).execution_id: m.group_id for m in got}
    assert groups == {"exec-100": "tenant-a", **{m.execution_id: m.tenant_id for m in batch}}
    assert all(m.sequence_number == "" for m in got)


async def test_fair_queue_groups_can_be_turned_off(config: Config) -> None:
    async with Publisher.from_config(config.with_(fair_queue=False)) as publisher:
        await publisher.publish(message(1))
        await publisher.publish(message(2), group_id="explicit")  # still sent when asked
        await publisher.publish_batch([message(3)])
        got = await in_order(publisher.client, 3)  # type: ignore[arg-type]
    assert sorted(m.group_id for m in got) == ["", "", "explicit"]
    assert all(m.sequence_number == "" for m in got)


def test_the_standard_queues_group_is_the_tenant_with_the_sync_publisher(
    config: Config, boto_sqs: Any
) -> None:
    with SyncPublisher.from_config(config) as publisher:
        publisher.publish(message(1, tenant="tenant-z"))
    [attrs] = system_attributes(boto_sqs, config.queue_url)
    assert attrs["MessageGroupId"] == "tenant-z" and "MessageDeduplicationId" not in attrs


def test_a_long_tenant_id_is_refused_for_a_fair_queue_group(config: Config) -> None:
    publisher = SyncPublisher(SyncSQSClient(config))
    with pytest.raises(ValidationError, match=r"MessageGroupId is 200 characters.*tenant_id"):
        publisher.publish(message(1, tenant="t" * 200))
    no_groups = SyncPublisher(SyncSQSClient(config), grouping=Grouping(fair_queue=False))
    assert no_groups._prepare([message(1, tenant="t" * 200)])[0].group_id is None
