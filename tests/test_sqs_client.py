"""SQSClient / SyncSQSClient against the real moto server; the send plan as a pure table."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError

from goraxfast.cli.moto_server import free_port
from goraxfast.config import Config
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.sqs_model import (
    AMBIGUOUS_CODES,
    ERROR_VERDICTS,
    BatchFailure,
    BatchResult,
    SendEntry,
    SendPlan,
    attributes_size,
    backoff_s,
    chunk_entries,
    entry_size,
    is_retryable,
    whole_call_failure,
)
from goraxfast.errors import (
    ConfigError,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
)
from goraxfast.sqs.botocore import SQSClient, SyncSQSClient, client_kwargs

ATTR = {"tenant_id": {"DataType": "String", "StringValue": "t-1"}}


def entries(n: int, prefix: str = "e", size: int = 10) -> list[SendEntry]:
    return [SendEntry(f"{prefix}{i}", f"{i:0{size}d}", ATTR) for i in range(n)]


class CountingClient(SQSClient):
    """The real client, counting its SendMessageBatch calls (the seam send_entries drives)."""

    calls: list[list[str]]

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls.append([e.id for e in entries])
        return await super().send_batch(queue_url, entries)


@pytest.fixture
async def client(config: Config) -> AsyncIterator[CountingClient]:
    async with CountingClient(config, retry_base_s=0.001, retry_max_s=0.005) as c:
        c.calls = []
        yield c


async def drain(client: SQSClient, expected: int) -> list[Any]:
    """Receive until ``expected`` messages came back (moto returns at most 10 per call)."""
    got: list[Any] = []
    for _ in range(expected // 10 + 5):
        got += await client.receive(10, 0, 30)
        if len(got) >= expected:
            break
    return got


# --- round trips ------------------------------------------------------------------------------


async def test_publish_receive_delete_round_trip(client: SQSClient) -> None:
    message_id = await client.send_message('{"a":1}', message_attributes=ATTR)
    before_ms = int(time.time() * 1000)
    [msg] = await client.receive(10, 1, 30)
    assert msg.message_id == message_id
    assert msg.body == b'{"a":1}'
    assert msg.receive_count == 1
    assert msg.sent_ms > 0 and abs(msg.first_received_ms - before_ms) < 5_000
    assert msg.message_attributes["tenant_id"]["StringValue"] == "t-1"
    await client.delete(msg.receipt_handle)
    assert (await client.queue_attributes()).total == 0


@pytest.mark.parametrize(("count", "calls"), [(1, 1), (10, 1), (25, 3)])
async def test_send_entries_chunks_by_ten(client: CountingClient, count: int, calls: int) -> None:
    result = await client.send_entries(entries(count))
    assert result.successful == tuple(f"e{i}" for i in range(count)) and not result.failed
    assert len(set(result.message_ids.values())) == count
    assert len(client.calls) == calls and all(len(c) <= 10 for c in client.calls)
    got = await drain(client, count)
    assert sorted(m.body for m in got) == sorted(e.body.encode() for e in entries(count))
    assert {m.message_id for m in got} == set(result.message_ids.values())


async def test_send_entries_splits_by_bytes(client: CountingClient) -> None:
    big = entries(6, size=50_000)  # 3 fit under 160 kB, so two calls, not one
    result = await client.send_entries(big, max_bytes=160_000)
    assert len(result.successful) == 6
    assert [len(c) for c in client.calls] == [3, 3]


async def test_partial_batch_failure_is_per_entry(client: CountingClient) -> None:
    good = entries(3)
    oversized = SendEntry("big", "x" * 1_100_000)  # over SQS's 1 MiB default
    bad_delay = SendEntry("late", "y", delay_s=901)  # SQS refuses this one entry alone
    result = await client.send_entries([good[0], oversized, good[1], bad_delay, good[2]])
    assert result.successful == ("e0", "e1", "e2")
    failed = {f.id: f for f in result.failed}
    assert failed["big"].code == "MessageTooLong" and failed["big"].sender_fault
    assert failed["late"].code == "InvalidParameterValue" and failed["late"].sender_fault
    assert ["big" in c for c in client.calls] == [False]  # never sent, never retried
    assert sorted(m.body for m in await drain(client, 3)) == [e.body.encode() for e in good]


class FlakyClient(CountingClient):
    """Real sends, except that chosen entries fail first with a chosen per-entry failure."""

    faults: dict[str, list[BatchFailure]]

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls.append([e.id for e in entries])
        fail = [self.faults[e.id].pop(0) for e in entries if self.faults.get(e.id)]
        ok = [e for e in entries if e.id not in {f.id for f in fail}]
        real = await SQSClient.send_batch(self, queue_url, ok)
        return BatchResult(real.successful, real.failed + tuple(fail), real.message_ids)


async def test_only_retryable_failures_are_retried(config: Config) -> None:
    async with FlakyClient(config, retry_base_s=0.001, retry_max_s=0.002) as c:
        c.calls = []
        c.faults = {
            "e1": [BatchFailure("e1", "InternalError", "boom", False)],
            "e2": [BatchFailure("e2", "ThrottlingException", "slow down", True)],
            "e3": [BatchFailure("e3", "InvalidParameterValue", "no", True)],
        }
        result = await c.send_entries(entries(5))
        assert result.successful == ("e0", "e1", "e2", "e4")
        assert [f.id for f in result.failed] == ["e3"]
        assert c.calls == [["e0", "e1", "e2", "e3", "e4"], ["e1", "e2"]]
        assert len(await drain(c, 4)) == 4


async def test_retries_are_bounded(config: Config) -> None:
    async with FlakyClient(config, max_send_attempts=3, retry_base_s=0.001) as c:
        c.calls = []
        c.faults = {"e0": [BatchFailure("e0", "ServiceUnavailable", "down", False)] * 5}
        result = await c.send_entries(entries(1))
        assert [f.code for f in result.failed] == ["ServiceUnavailable"]
        assert len(c.calls) == 3


# --- receive, visibility, delete --------------------------------------------------------------
# Receive counts, per-entry receipt-handle failures and early long-poll returns are specified once
# for both data planes (botocore and fast) in tests/test_fastsqs.py.


async def test_visibility_change_observed_by_receiving_again(client: SQSClient) -> None:
    await client.send_message("m")
    [msg] = await client.receive(1, 1, 30)
    assert await client.receive(1, 0, 30) == []
    await client.change_visibility(msg.receipt_handle, 0)
    [again] = await client.receive(1, 1, 30)
    assert again.message_id == msg.message_id
    await client.change_visibility(again.receipt_handle, 30)
    assert await client.receive(1, 0, 30) == []


async def test_queue_attributes_after_known_operations(client: SQSClient) -> None:
    await client.send_entries(entries(3))
    await client.send_message("later", delay_s=60)
    await client.receive(1, 0, 30)
    attrs = await client.queue_attributes()
    assert (attrs.visible, attrs.in_flight, attrs.delayed, attrs.total) == (2, 1, 1, 4)
    assert attrs.maximum_message_size > 0
    assert (await client.queue_attributes(client.dlq_url)).total == 0


async def test_redrive_to_dlq_after_max_receive_count(client: SQSClient) -> None:
    """moto honours the RedrivePolicy (maxReceiveCount 5), as SQS does."""
    await client.send_message("poison")
    for n in range(1, 6):
        [msg] = await client.receive(1, 1, 0)
        assert msg.receive_count == n
    assert await client.receive(1, 0, 0) == []
    async with SQSClient(client._config, queue_url=client.dlq_url) as dlq:
        [dead] = await dlq.receive(1, 1, 30)
    assert dead.body == b"poison"


# --- errors -----------------------------------------------------------------------------------


async def test_missing_queue_names_operation_queue_and_code(config: Config) -> None:
    bogus = config.queue_url + "-nope"
    async with SQSClient(config, queue_url=bogus) as c:
        with pytest.raises(QueueDoesNotExistError) as info:
            await c.receive(1, 0, 30)
        err = info.value
        assert err.operation == "ReceiveMessage" and err.queue_url == bogus
        assert err.code == "AWS.SimpleQueueService.NonExistentQueue"
        assert "ReceiveMessage" in str(err) and bogus in str(err)
        assert isinstance(err.__cause__, ClientError)
        with pytest.raises(QueueDoesNotExistError, match="GetQueueAttributes"):
            await c.health_check()
        with pytest.raises(QueueDoesNotExistError, match="SendMessageBatch"):
            await c.send_entries(entries(2))


async def test_invalid_receipt_handle_raises_typed_error(client: SQSClient) -> None:
    with pytest.raises(ReceiptHandleInvalidError, match="DeleteMessage") as info:
        await client.delete("not-a-handle")
    assert info.value.code == "ReceiptHandleIsInvalid"
    with pytest.raises(ReceiptHandleInvalidError, match="ChangeMessageVisibility"):
        await client.change_visibility("not-a-handle", 0)


async def test_unreachable_endpoint_is_an_sqs_error(config: Config) -> None:
    down = config.with_(aws_endpoint=f"http://127.0.0.1:{free_port()}")
    async with SQSClient(down, sdk_attempts=1) as c:
        with pytest.raises(SQSError, match="GetQueueAttributes") as info:
            await c.health_check()
    assert info.value.code is None and info.value.queue_url == config.queue_url


async def test_misuse_is_refused_before_any_call(config: Config) -> None:
    c = SQSClient(config)
    with pytest.raises(RuntimeError, match="not started"):
        await c.health_check()
    async with c:
        with pytest.raises(ValueError, match="at most 10"):
            await c.delete_batch([(str(i), "h") for i in range(11)])
        with pytest.raises(ValueError, match="at most 10"):
            await c.send_batch(c.queue_url, entries(11))
        with pytest.raises(ValueError, match="unique"):
            await c.send_entries([SendEntry("a", "1"), SendEntry("a", "2")])
        with pytest.raises(ValueError, match="ids"):
            await c.send_entries([SendEntry("not ok!", "1")])
        assert await c.delete_batch([]) == BatchResult((), ())
    async with SQSClient(config.with_(queue_url="")) as no_queue:
        with pytest.raises(ConfigError, match="AWS_SQS_QUEUE_URL"):
            await no_queue.receive(1, 0, 30)


async def test_health_check_passes_on_a_real_queue(client: SQSClient) -> None:
    await client.health_check()
    dp: DataPlane = client  # the engine's protocol
    assert await dp.receive(1, 0, 30) == []


# --- sync client ------------------------------------------------------------------------------


def test_sync_client_publishes_and_reports(config: Config, boto_sqs: Any) -> None:
    with SyncSQSClient(config, retry_base_s=0.001) as c:
        assert c.send_message("one", message_attributes=ATTR)
        result = c.send_entries([*entries(12), SendEntry("big", "x" * 1_100_000)])
        assert len(result.successful) == 12 and [f.id for f in result.failed] == ["big"]
        assert c.queue_attributes().visible == 13
        with pytest.raises(QueueDoesNotExistError, match="SendMessage"):
            c.send_message("x", queue_url=config.queue_url + "-nope")


def test_sync_client_creates_queues_with_redrive(config: Config, boto_sqs: Any) -> None:
    name = f"made-{random.getrandbits(32)}"
    with SyncSQSClient(config.with_(queue_url="")) as c:
        main_url, dlq_url = c.create_queues(name, name + "-dlq", 3, 45)
        assert c.create_queues(name, name + "-dlq", 3, 45) == (main_url, dlq_url)  # idempotent
    attrs = boto_sqs.get_queue_attributes(QueueUrl=main_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = boto_sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    assert int(policy["maxReceiveCount"]) == 3 and attrs["VisibilityTimeout"] == "45"
    for url in (main_url, dlq_url):
        boto_sqs.delete_queue(QueueUrl=url)


# --- pure decisions ---------------------------------------------------------------------------


def test_credentials_static_only_when_both_keys_are_set() -> None:
    both = client_kwargs(Config(aws_access_key_id="k", aws_secret_access_key="s"))
    assert both["aws_access_key_id"] == "k" and "aws_session_token" not in both
    assert "endpoint_url" not in both and both["region_name"] == "us-east-1"
    token = client_kwargs(
        Config(aws_access_key_id="k", aws_secret_access_key="s", aws_session_token="t")
    )
    assert token["aws_session_token"] == "t"
    for half in (Config(aws_access_key_id="k"), Config(aws_secret_access_key="s")):
        assert not {"aws_access_key_id", "aws_secret_access_key"} & set(client_kwargs(half))
    local = client_kwargs(Config(aws_endpoint="http://127.0.0.1:1", aws_region="eu-west-1"))
    assert local == {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:1"}


def test_sizes_count_body_and_attributes_as_sqs_does() -> None:
    attrs = {
        "k": {"DataType": "String", "StringValue": "é"},
        "b": {"DataType": "Binary", "BinaryValue": b"12"},
    }
    assert attributes_size(attrs) == (1 + 6 + 2) + (1 + 6 + 2)
    assert entry_size(SendEntry("i", "ü", attrs)) == 2 + 18


def test_chunking_keeps_order_and_both_limits() -> None:
    es = entries(23, size=10)
    assert [len(c) for c in chunk_entries(es, 10_000)] == [10, 10, 3]
    sized = [entry_size(e) for e in es]
    assert [len(c) for c in chunk_entries(es, sized[0] * 4)] == [4] * 5 + [3]
    assert [e for c in chunk_entries(es, 100) for e in c] == es


@pytest.mark.parametrize(
    ("failure", "retry"),
    [
        (BatchFailure("a", "InternalError", "", False), True),
        (BatchFailure("a", "Anything", "", False), True),
        (BatchFailure("a", "ThrottlingException", "", True), True),
        (BatchFailure("a", "ServiceUnavailable", "", True), True),
        (BatchFailure("a", "InvalidParameterValue", "", True), False),
        (BatchFailure("a", "MessageTooLong", "", True), False),
    ],
)
def test_retryable_classification(failure: BatchFailure, retry: bool) -> None:
    assert is_retryable(failure) is retry


@pytest.mark.parametrize("code", sorted(ERROR_VERDICTS))
@pytest.mark.parametrize("sender_fault", [True, False])
def test_a_code_in_the_error_table_has_its_verdict_whatever_the_sender_fault_flag(
    code: str, sender_fault: bool
) -> None:
    """One table for every client, the publisher and the acker; servers disagree on the flag
    (moto marks InternalError as the sender's fault at times, AWS marks stale handles as ours)."""
    retry, why = ERROR_VERDICTS[code]
    assert why
    assert is_retryable(BatchFailure("a", code, "", sender_fault)) is retry


def test_a_whole_call_without_an_answer_is_retryable_and_ambiguous() -> None:
    [failure] = whole_call_failure(SQSError("SendMessageBatch", "q", "reset"), entries(1)).failed
    assert failure.code in AMBIGUOUS_CODES and is_retryable(failure)


def test_backoff_grows_is_capped_and_never_zero() -> None:
    assert [backoff_s(n, 0.1, 10, 1.0) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])
    assert backoff_s(1, 0.1, 10, 0.0) == pytest.approx(0.05)
    assert backoff_s(30, 0.1, 2.0, 1.0) == 2.0


def test_send_plan_retries_only_retryable_and_stops() -> None:
    plan = SendPlan(
        [*entries(3), SendEntry("bad", "\x00")],
        max_bytes=1000,
        max_attempts=2,
        base_s=0.1,
        cap_s=1,
        rand=lambda: 0.5,
    )
    assert [[e.id for e in c] for c in plan.chunks()] == [["e0", "e1", "e2"]]
    delay = plan.record(
        [
            BatchResult(
                ("e0",),
                (BatchFailure("e1", "InternalError", "", False), BatchFailure("e2", "X", "", True)),
                {"e0": "m0"},
            )
        ]
    )
    assert delay == pytest.approx(0.075)
    assert [[e.id for e in c] for c in plan.chunks()] == [["e1"]]
    assert plan.record([BatchResult((), (BatchFailure("e1", "InternalError", "", False),))]) is None
    result = plan.result()
    assert result.successful == ("e0",) and result.message_ids == {"e0": "m0"}
    assert [(f.id, f.code) for f in result.failed] == [
        ("e1", "InternalError"),
        ("e2", "X"),
        ("bad", "InvalidMessageContents"),
    ]


async def test_zero_delay_keeps_the_queues_own_delay(client: SQSClient, boto_sqs: Any) -> None:
    boto_sqs.set_queue_attributes(QueueUrl=client.queue_url, Attributes={"DelaySeconds": "60"})
    await client.send_message("single")
    await client.send_entries(entries(2))
    attrs = await client.queue_attributes()
    assert (attrs.visible, attrs.delayed) == (0, 3)
