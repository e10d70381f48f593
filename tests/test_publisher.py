"""Publisher and SyncPublisher against the real moto server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import pytest
from test_fastsqs import HANG, ScriptedSQS, answer, fast

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, UTCTimestamp, decode_message, encode_message
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_LEGACY_MAX_MESSAGE_BYTES,
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    SendEntry,
    attributes_size,
)
from goraxfast.errors import MessageEncodeError, MessageTooLargeError, SQSError, ValidationError
from goraxfast.publish.publisher import Publisher, PublisherMetrics, SyncPublisher
from goraxfast.sqs.botocore import SQSClient, SyncSQSClient
from goraxfast.sqs.fast import FastSQSClient


def message(n: int, *, trigger: bytes = b'{"n":1}', **changes: object) -> ExecutionMessage:
    msg = ExecutionMessage.new(
        execution_id=f"exec-{n}",
        tenant_id="tenant-1",
        workflow_id="wf-1",
        workflow_version=2,
        trigger_type="webhook",
        trigger_data=trigger,
        correlation_id=f"corr-{n}",
    )
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


class _Recording:
    """Records each SendMessageBatch and can fail chosen entries (by body), then lets the real
    client send the rest: mixed into both clients, so every ``client`` test runs on both."""

    calls: list[int]
    fail_body_marker: str = ""
    fault = BatchFailure("", "InvalidParameterValue", "refused", True)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls.append(len(entries))
        marked = self.fail_body_marker
        bad = [e for e in entries if marked and marked in e.body]
        real = await super().send_batch(queue_url, [e for e in entries if e not in bad])  # type: ignore[misc]
        fails = tuple(
            BatchFailure(e.id, self.fault.code, self.fault.message, self.fault.sender_fault)
            for e in bad
        )
        return BatchResult(real.successful, real.failed + fails, real.message_ids)


class RecordingClient(_Recording, SQSClient):
    """The real aiobotocore client, recording."""


class RecordingFastClient(_Recording, FastSQSClient):
    """The real fast client, recording."""


@pytest.fixture(params=["botocore", "fast"])
async def client(config: Config, request: pytest.FixtureRequest) -> AsyncIterator[RecordingClient]:
    kind = RecordingClient if request.param == "botocore" else RecordingFastClient
    async with kind(config, retry_base_s=0.001, retry_max_s=0.002) as c:
        c.calls = []
        yield c  # type: ignore[misc]


async def drain(client: SQSClient, expected: int) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    for _ in range(expected // 10 + 5):
        got += await client.receive(10, 0, 30)
        if len(got) >= expected:
            break
    return got


async def test_publish_round_trip_decodes_to_the_same_message(client: RecordingClient) -> None:
    publisher = Publisher(client)
    original = message(1, trigger=b'{"k":[1,2,{"x":"\xc3\xa9"}]}')
    message_id = await publisher.publish(original)
    [got] = await drain(client, 1)
    assert got.message_id == message_id
    assert decode_message(got.body) == original
    attrs = {k: v["StringValue"] for k, v in got.message_attributes.items()}
    assert attrs == {
        "tenant_id": "tenant-1",
        "workflow_id": "wf-1",
        "trigger_type": "webhook",
        "correlation_id": "corr-1",
    }


@pytest.mark.parametrize("count", [1, 10, 25])
async def test_publish_batch_reports_every_message(client: RecordingClient, count: int) -> None:
    publisher = Publisher(client)
    msgs = [message(i) for i in range(count)]
    result = await publisher.publish_batch(msgs)
    assert result.ok and result.published_ids == tuple(m.execution_id for m in msgs)
    assert len({p.message_id for p in result.published}) == count
    got = await drain(client, count)
    assert sorted(decode_message(m.body).execution_id for m in got) == sorted(result.published_ids)
    assert publisher.metrics.published == count and publisher.metrics.failed == 0


async def test_batch_of_large_messages_is_split_by_bytes(client: RecordingClient) -> None:
    publisher = Publisher(client, max_message_bytes=262_144)
    big = [message(i, trigger=b'"' + b"x" * 60_000 + b'"') for i in range(10)]
    result = await publisher.publish_batch(big)
    assert result.ok and len(result.published) == 10
    assert len(client.calls) >= 3 and all(n * 60_000 < 262_144 for n in client.calls)


async def test_size_and_validation_are_checked_before_any_call(config: Config) -> None:
    never_started = SQSClient(config)  # any network call would raise RuntimeError
    publisher = Publisher(never_started, max_message_bytes=1_000)
    too_big = message(7, trigger=b'"' + b"x" * 2_000 + b'"')
    with pytest.raises(MessageTooLargeError, match="exec-7") as info:
        await publisher.publish(too_big)
    assert info.value.limit_bytes == 1_000 and info.value.size_bytes > 2_000
    with pytest.raises(MessageTooLargeError, match=r"exec-7.*batch index 2"):
        await publisher.publish_batch([message(0), message(1), too_big])
    with pytest.raises(ValidationError, match=r"tenant_id is required \(execution_id='exec-3'"):
        await publisher.publish(message(3, tenant_id=""))
    with pytest.raises(ValidationError, match="workflow_version must be greater than 0"):
        await publisher.publish_batch([message(0), message(4, workflow_version=0)])
    assert publisher.metrics == PublisherMetrics(0, 0, None)


async def test_the_body_keeps_enqueued_at_to_the_nanosecond(client: RecordingClient) -> None:
    msg = message(1, enqueued_at=UTCTimestamp.from_unix_ns(1_766_052_000_123_456_789))

    await Publisher(client).publish(msg)

    [got] = await drain(client, 1)
    assert b'"enqueued_at":"2025-12-18T10:00:00.123456789Z"' in got.body
    assert decode_message(got.body).enqueued_at_ns == 1_766_052_000_123_456_789


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"workflow_version": 2**63}, "workflow_version"),
        ({"workflow_version": True}, "workflow_version"),
        ({"retry_count": 1.5}, "retry_count"),
        ({"tenant_id": 7}, "tenant_id"),
        ({"correlation_id": None}, "correlation_id"),
        ({"trigger_data": msgspec.Raw(b"1 2")}, "trigger_data"),
        ({"trigger_data": msgspec.Raw(b'{"a":')}, "trigger_data"),
        ({"enqueued_at": "yesterday"}, "enqueued_at"),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(next(iter(v.values()))),
)
async def test_a_message_go_could_not_decode_is_refused_by_field_before_any_call(
    config: Config, changes: dict[str, Any], field: str
) -> None:
    publisher = Publisher(SQSClient(config))  # never started: any network call would raise
    with pytest.raises(MessageEncodeError, match=rf"`{field}`.*\(execution_id='exec-5'\)"):
        await publisher.publish(message(5, **changes))
    with pytest.raises(MessageEncodeError, match=rf"`{field}`.*batch index 1"):
        await publisher.publish_batch([message(0), message(5, **changes)])
    assert publisher.metrics == PublisherMetrics(0, 0, None)


async def test_something_other_than_a_message_is_refused_before_any_call(config: Config) -> None:
    publisher = Publisher(SQSClient(config))
    with pytest.raises(MessageEncodeError, match="expected an ExecutionMessage, got dict"):
        await publisher.publish({"tenant_id": "t"})  # type: ignore[arg-type]


async def test_size_counts_attributes_too(config: Config) -> None:
    msg = message(1)
    exact = len(encode_message(msg)) + attributes_size(msg.message_attributes())
    with pytest.raises(MessageTooLargeError) as info:
        await Publisher(SQSClient(config), max_message_bytes=exact - 1).publish(msg)
    assert info.value.size_bytes == exact
    async with SQSClient(config) as client:
        assert await Publisher(client, max_message_bytes=exact).publish(msg)


async def test_only_failed_entries_count_failed(client: RecordingClient) -> None:
    client.fail_body_marker = '"execution_id":"exec-3"'
    publisher = Publisher(client)
    result = await publisher.publish_batch([message(i) for i in range(6)])
    assert result.failed_ids == ("exec-3",)
    assert result.failed[0].code == "InvalidParameterValue" and not result.failed[0].retryable
    assert result.published_ids == ("exec-0", "exec-1", "exec-2", "exec-4", "exec-5")
    assert client.calls == [6]  # a sender fault is not retried
    assert (publisher.metrics.published, publisher.metrics.failed) == (5, 1)


async def test_retried_entries_that_succeed_count_published(client: RecordingClient) -> None:
    client.fail_body_marker = '"execution_id":"exec-1"'
    client.fault = BatchFailure("", "InternalError", "try again", False)
    publisher = Publisher(client)
    result = await publisher.publish_batch([message(i) for i in range(3)])
    assert result.failed_ids == ("exec-1",)  # injected every time: finally failed after retries
    assert client.calls == [3, 1, 1, 1] and result.failed[0].retryable
    assert (publisher.metrics.published, publisher.metrics.failed) == (2, 1)


async def test_metrics_exact_under_concurrent_publishes(client: RecordingClient) -> None:
    publisher = Publisher(client, clock=lambda: 1234.5)
    singles = [publisher.publish(message(i)) for i in range(12)]
    batches = [
        publisher.publish_batch([message(100 + 10 * b + i) for i in range(4)]) for b in range(3)
    ]
    await asyncio.gather(*singles, *batches)
    assert publisher.metrics == PublisherMetrics(24, 0, 1234.5)


@pytest.mark.parametrize("kind", [SQSClient, FastSQSClient])
async def test_failed_publish_counts_and_raises(config: Config, kind: type[SQSClient]) -> None:
    async with kind(config, queue_url=config.queue_url + "-gone") as c:
        publisher = Publisher(c)
        with pytest.raises(SQSError, match="SendMessage"):
            await publisher.publish(message(1))
        with pytest.raises(SQSError, match="SendMessageBatch"):
            await publisher.publish_batch([message(2), message(3)])
        assert publisher.metrics == PublisherMetrics(0, 3, None)


@pytest.mark.parametrize("kind", ["fast", "botocore"])
async def test_from_config_owns_a_client_of_the_configured_kind(config: Config, kind: str) -> None:
    before = time.time()
    async with Publisher.from_config(config.with_(sqs_client=kind)) as publisher:
        assert type(publisher.client) is (FastSQSClient if kind == "fast" else SQSClient)
        await publisher.publish(message(1))
        last = publisher.metrics.last_publish_time
        assert last is not None and before <= last <= time.time()
    with pytest.raises(RuntimeError, match="not started"):  # closed with the publisher
        await publisher.client.send_message("after close")


async def test_from_config_uses_botocore_where_a_proxy_applies(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    publisher = Publisher.from_config(config.with_(sqs_client="fast"))
    assert type(publisher.client) is SQSClient


# --- sync -------------------------------------------------------------------------------------


def test_sync_publisher_is_exact_across_threads(config: Config) -> None:
    with SyncSQSClient(config) as client:
        publisher = SyncPublisher(client)

        def work(t: int) -> None:
            for i in range(3):
                publisher.publish(message(t * 100 + i))
            result = publisher.publish_batch([message(t * 100 + 50 + i) for i in range(4)])
            assert result.ok

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(work, range(6)))
        metrics = publisher.metrics
        assert (metrics.published, metrics.failed) == (42, 0)
        assert metrics.last_publish_time is not None
        assert client.queue_attributes().visible == 42


def test_sync_publisher_checks_before_sending(config: Config) -> None:
    with SyncPublisher.from_config(config, max_message_bytes=500) as publisher:
        with pytest.raises(MessageTooLargeError, match="exec-9"):
            publisher.publish_batch([message(1), message(9, trigger=b'"' + b"y" * 600 + b'"')])
        with pytest.raises(ValidationError, match="trigger_type is required"):
            publisher.publish(message(2, trigger_type=""))
        assert publisher.client.queue_attributes().total == 0
        assert publisher.metrics == PublisherMetrics(0, 0, None)


# --- a lost answer through the fast client ------------------------------------------------------


async def test_a_lost_answer_fails_publish_without_sending_again() -> None:
    """SQS may have the message: publish() leaves the choice of a possible duplicate to its caller."""
    async with ScriptedSQS(HANG) as server, fast(server, response_margin_s=0.05) as client:
        publisher = Publisher(client)
        with pytest.raises(SQSError, match="SendMessage"):
            await publisher.publish(message(1))
    assert len(server.requests) == 1
    assert publisher.metrics.failed == 1


async def test_a_lost_answer_in_publish_batch_is_sent_again() -> None:
    """At-least-once, as with botocore: a batch call whose answer was lost is sent again."""
    sent = answer(200, {"Successful": [{"Id": "0", "MessageId": "m-0"}], "Failed": []})
    async with (
        ScriptedSQS(HANG, sent) as server,
        fast(server, response_margin_s=0.05, retry_base_s=0.001) as client,
    ):
        result = await Publisher(client).publish_batch([message(0)])
    assert result.ok and result.published[0].message_id == "m-0"
    assert [h["x-amz-target"] for h, _ in server.requests] == ["AmazonSQS.SendMessageBatch"] * 2


# --- the queue's own MaximumMessageSize ------------------------------------------------------


@pytest.mark.parametrize("kind", ["fast", "botocore"])
async def test_from_config_holds_messages_to_the_queues_own_maximum_size(
    config: Config, boto_sqs: Any, kind: str
) -> None:
    boto_sqs.set_queue_attributes(
        QueueUrl=config.queue_url, Attributes={"MaximumMessageSize": "2048"}
    )
    async with Publisher.from_config(config.with_(sqs_client=kind)) as publisher:
        assert publisher.max_message_bytes == 2048
        with pytest.raises(MessageTooLargeError) as info:
            await publisher.publish(message(1, trigger=b'"' + b"x" * 2_100 + b'"'))
    assert info.value.limit_bytes == 2048


async def test_from_config_reads_a_new_queues_default_of_one_mib(config: Config) -> None:
    async with Publisher.from_config(config) as publisher:
        assert publisher.max_message_bytes == SQS_DEFAULT_MAX_MESSAGE_BYTES == 1_048_576


def test_sync_from_config_holds_messages_to_the_queues_own_maximum_size(
    config: Config, boto_sqs: Any
) -> None:
    boto_sqs.set_queue_attributes(
        QueueUrl=config.queue_url, Attributes={"MaximumMessageSize": "4096"}
    )
    with SyncPublisher.from_config(config) as publisher:
        assert publisher.max_message_bytes == 4096


async def test_an_explicit_max_message_bytes_is_used_as_given(
    config: Config, boto_sqs: Any
) -> None:
    boto_sqs.set_queue_attributes(
        QueueUrl=config.queue_url, Attributes={"MaximumMessageSize": "2048"}
    )
    async with Publisher.from_config(config, max_message_bytes=100_000) as publisher:
        assert publisher.max_message_bytes == 100_000
    with SyncPublisher.from_config(config, max_message_bytes=100_000) as sync:
        assert sync.max_message_bytes == 100_000


@pytest.mark.parametrize("kind", ["fast", "botocore"])
async def test_an_unreadable_maximum_size_falls_back_to_256_kib_with_one_warning(
    config: Config, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    gone = config.with_(queue_url=f"{config.queue_url}-gone-{kind}", sqs_client=kind)
    with caplog.at_level(logging.WARNING, logger="goraxfast.publish.publisher"):
        for _ in range(2):
            async with Publisher.from_config(gone) as publisher:
                assert publisher.max_message_bytes == SQS_LEGACY_MAX_MESSAGE_BYTES == 262_144
    warnings = [r for r in caplog.records if "MaximumMessageSize" in r.getMessage()]
    assert len(warnings) == 1 and gone.queue_url in warnings[0].getMessage()


def test_sync_an_unreadable_maximum_size_falls_back_to_256_kib_with_one_warning(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    gone = config.with_(queue_url=config.queue_url + "-gone-sync")
    with caplog.at_level(logging.WARNING, logger="goraxfast.publish.publisher"):
        for _ in range(2):
            with SyncPublisher.from_config(gone) as publisher:
                assert publisher.max_message_bytes == SQS_LEGACY_MAX_MESSAGE_BYTES
    assert len([r for r in caplog.records if "MaximumMessageSize" in r.getMessage()]) == 1


def test_from_config_refuses_an_unknown_client(config: Config) -> None:
    with pytest.raises(ValueError, match="unknown sqs_client 'bogus'"):
        Publisher.from_config(config.with_(sqs_client="bogus"))
