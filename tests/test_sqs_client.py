"""SQSClient / SyncSQSClient against the real moto server; the send plan as a pure table."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
import test_publisher_fifo
from botocore.exceptions import ClientError

from goraxfast.cli.moto_server import free_port
from goraxfast.config import Config
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.send_plan import PlannedCall, SendPlan, whole_call_failure
from goraxfast.core.sqs_model import (
    AMBIGUOUS_CODES,
    ERROR_VERDICTS,
    HELD_BACK_CODE,
    BatchFailure,
    BatchResult,
    SendEntry,
    attributes_size,
    backoff_s,
    chunk_entries,
    entry_problem,
    entry_size,
    is_retryable,
    send_payload,
)
from goraxfast.errors import (
    ConfigError,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
)
from goraxfast.sqs.botocore import SQSClient, SyncSQSClient, client_kwargs

ATTR = {"tenant_id": {"DataType": "String", "StringValue": "t-1"}}
# a FIFO queue and its DLQ on moto, and a Config for them (fixtures shared with the publisher's)
fifo_queue_pair = test_publisher_fifo.fifo_queue_pair
fifo_config = test_publisher_fifo.fifo_config


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


# --- FIFO queues: what SQS refuses, caught before sending; the plan keeps each group's order ----


def fifo_entry(entry_id: str, group: str | None, **changes: Any) -> SendEntry:
    fields: dict[str, Any] = {"group_id": group, "dedup_id": entry_id, **changes}
    return SendEntry(entry_id, f"body-{entry_id}", **fields)


@pytest.mark.parametrize(
    ("entry", "fifo", "code", "text"),
    [
        (SendEntry("a", "x", group_id="g", dedup_id="d"), True, None, ""),
        (SendEntry("a", "x", group_id="g"), True, None, ""),  # content-based deduplication
        (SendEntry("a", "x", group_id="t-1"), False, None, ""),  # a fair queue's tenant
        (SendEntry("a", "x", dedup_id="d"), True, "MissingParameter", "requires a MessageGroupId"),
        (SendEntry("a", "x", group_id="g", delay_s=5), True, "InvalidParameterValue", "Delay"),
        (SendEntry("a", "x", group_id="g", delay_s=5), False, None, ""),
        (SendEntry("a", "x", dedup_id="d"), False, "InvalidParameterValue", "FIFO queues only"),
        (SendEntry("a", "x", group_id="g" * 129), True, "InvalidParameterValue", "129 characters"),
        (SendEntry("a", "x", group_id="g" * 128, dedup_id="d" * 128), True, None, ""),
        (SendEntry("a", "x", group_id="g é"), False, "InvalidParameterValue", "' '"),
        (SendEntry("a", "x", group_id=""), True, "InvalidParameterValue", "is empty"),
        (SendEntry("a", "x", group_id="g", dedup_id="é"), True, "InvalidParameterValue", "'é'"),
        (SendEntry("a", "x", group_id="!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), True, None, ""),
    ],
)
def test_what_sqs_refuses_of_group_and_deduplication_ids(
    entry: SendEntry, fifo: bool, code: str | None, text: str
) -> None:
    problem = entry_problem(entry, 1_000, fifo=fifo)
    if code is None:
        assert problem is None
    else:
        assert problem is not None and problem.code == code and text in problem.message
        assert problem.sender_fault and not is_retryable(problem)


def test_ids_do_not_count_towards_the_size() -> None:
    plain = SendEntry("a", "x" * 10)
    assert entry_size(replace(plain, group_id="g" * 128, dedup_id="d" * 128)) == entry_size(plain)


def test_the_payload_carries_the_ids_only_when_set() -> None:
    [with_ids, without] = send_payload([fifo_entry("a", "g"), SendEntry("b", "y")])
    assert with_ids["MessageGroupId"] == "g" and with_ids["MessageDeduplicationId"] == "a"
    assert "MessageGroupId" not in without and "MessageDeduplicationId" not in without


def plan(entries: Sequence[SendEntry], fifo: bool = True, **kwargs: Any) -> SendPlan:
    options: dict[str, Any] = {"max_bytes": 10_000, "max_attempts": 3, "base_s": 0.1}
    return SendPlan(entries, cap_s=1, rand=lambda: 0.5, fifo=fifo, **{**options, **kwargs})


def ids(call: PlannedCall) -> list[str]:
    return [e.id for e in call.entries]


def test_a_fifo_plan_keeps_each_group_together_in_order_and_chains_its_calls() -> None:
    groups = "abacbabcaa" * 3  # 30 entries: a 15, b 9, c 6
    p = plan([fifo_entry(f"e{i}", g) for i, g in enumerate(groups)])
    calls = p.calls()
    a = [f"e{i}" for i, g in enumerate(groups) if g == "a"]
    b = [f"e{i}" for i, g in enumerate(groups) if g == "b"]
    c = [f"e{i}" for i, g in enumerate(groups) if g == "c"]
    assert [ids(call) for call in calls] == [a[:10], a[10:] + b[:5], b[5:] + c]
    assert [call.after for call in calls] == [(), (0,), (1,)]
    standard = plan([fifo_entry(f"e{i}", g, dedup_id=None) for i, g in enumerate(groups)], False)
    assert [call.after for call in standard.calls()] == [(), (), ()]
    assert [e.id for call in standard.calls() for e in call.entries] == [
        f"e{i}" for i in range(30)
    ]  # a standard queue: input order, calls independent


def test_groups_of_their_own_calls_are_independent() -> None:
    p = plan([fifo_entry(f"{g}{i}", g) for g in "xyz" for i in range(10)])
    assert [call.after for call in p.calls()] == [(), (), ()]


def test_a_retryable_failure_holds_back_the_rest_of_its_group_for_the_round() -> None:
    p = plan([fifo_entry(f"a{i}", "a") for i in range(12)] + [fifo_entry("b0", "b")])
    first, second = p.calls()
    assert ids(first) == [f"a{i}" for i in range(10)] and second.after == (0,)
    sent = p.take(first)
    fault = BatchFailure("a3", "InternalError", "try again", False)
    ok = tuple(e.id for e in sent if e.id != "a3")
    p.settle(sent, BatchResult(ok, (fault,)))  # a4..a9 went through: the one thing not undone
    assert [e.id for e in p.take(second)] == ["b0"]  # a10, a11 held back, b0 goes
    p.settle([second.entries[-1]], BatchResult(("b0",), ()))
    assert p.end_round() == pytest.approx(0.075)
    again, behind = p.calls()  # the failed one first, alone; then those held, in order
    assert (ids(again), ids(behind), behind.after) == (["a3"], ["a10", "a11"], (0,))
    p.settle(p.take(again), BatchResult(("a3",), ()))
    p.settle(p.take(behind), BatchResult(("a10", "a11"), ()))
    assert p.end_round() is None
    assert not p.result().failed and len(p.result().successful) == 13


def test_entries_held_back_in_the_last_round_fail_retryably_and_say_why() -> None:
    p = plan([fifo_entry(f"a{i}", "a") for i in range(11)] + [fifo_entry("b", "b")], max_attempts=1)
    first, second = p.calls()
    sent = p.take(first)
    down = BatchFailure("a0", "ServiceUnavailable", "", False)
    p.settle(sent, BatchResult(tuple(e.id for e in sent[1:]), (down,)))
    p.settle(p.take(second), BatchResult(("b",), ()))
    assert p.end_round() is None  # that was the only round
    result = p.result()
    assert [(f.id, f.code) for f in result.failed] == [
        ("a0", "ServiceUnavailable"),
        ("a10", HELD_BACK_CODE),
    ]
    assert result.successful == (*(f"a{i}" for i in range(1, 10)), "b")


def test_a_call_that_raised_holds_back_its_groups() -> None:
    p = plan([fifo_entry(f"a{i}", "a") for i in range(11)], max_attempts=1)
    first, second = p.calls()
    p.settle(p.take(first), None)
    assert p.take(second) == []
    assert p.end_round() is None
    [held] = p.result().failed
    assert held.id == "a10" and held.code == HELD_BACK_CODE and is_retryable(held)
    assert "'a0'" in held.message and "group 'a'" in held.message


def test_a_failure_that_is_not_retryable_holds_nothing_back() -> None:
    p = plan([fifo_entry(f"a{i}", "a") for i in range(11)])
    first, second = p.calls()
    sent = p.take(first)
    refused = BatchFailure("a0", "InvalidParameterValue", "no", True)
    p.settle(sent, BatchResult(tuple(e.id for e in sent[1:]), (refused,)))
    assert [e.id for e in p.take(second)] == ["a10"]


def test_a_fifo_plan_refuses_per_message_delays_and_missing_groups_before_sending() -> None:
    p = plan([fifo_entry("ok", "g"), fifo_entry("late", "g", delay_s=3), fifo_entry("x", None)])
    assert [ids(c) for c in p.calls()] == [["ok"]]
    assert {f.id: f.code for f in p.result().failed} == {
        "late": "InvalidParameterValue",
        "x": "MissingParameter",
    }


class OverlapClient(SQSClient):
    """The real client, slowed, recording whether two calls with one group were ever in flight
    together; a call holding an entry of ``faults`` fails whole (as throttling, a 5xx or a lost
    answer do: per-entry refusals are caught before sending), that many times."""

    in_flight: list[set[str | None]]
    overlaps: int
    faults: dict[str, int]

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        groups = {e.group_id for e in entries}
        self.overlaps += any(groups & other for other in self.in_flight)
        self.in_flight.append(groups)
        try:
            await asyncio.sleep(random.uniform(0, 0.01))
            hit = [e.id for e in entries if self.faults.get(e.id, 0) > 0]
            for entry_id in hit:
                self.faults[entry_id] -= 1
            if hit:
                raise SQSError("SendMessageBatch", queue_url, "injected", "ServiceUnavailable")
            return await super().send_batch(queue_url, entries)
        finally:
            self.in_flight.remove(groups)


async def receive_in_order(client: SQSClient, expected: int) -> list[Any]:
    """Everything, in FIFO delivery order: receive, then delete what came, and again."""
    got: list[Any] = []
    for _ in range(expected + 10):
        batch = await client.receive(10, 0, 30)
        got += batch
        if batch:
            await client.delete_batch([(str(i), m.receipt_handle) for i, m in enumerate(batch)])
        if len(got) >= expected:
            break
    return got


async def test_send_entries_to_a_fifo_queue_keeps_each_group_in_order_on_moto(
    fifo_config: Config,
) -> None:
    groups = [f"g{(i * 7) % 5}" for i in range(64)]
    sent = [fifo_entry(f"e{i}", g) for i, g in enumerate(groups)]
    async with OverlapClient(fifo_config, send_concurrency=4, retry_base_s=0.001) as c:
        c.in_flight, c.overlaps = [], 0
        c.faults = {"e5": 1, "e17": 2, "e40": 1}  # retryable, then sent
        result = await c.send_entries(sent)
        assert result.successful == tuple(e.id for e in sent) and not result.failed
        assert c.overlaps == 0
        got = await receive_in_order(c, len(sent))
    assert len(got) == len(sent)
    for group in set(groups):
        mine = [m.body.decode() for m in got if m.group_id == group]
        assert mine == [e.body for e in sent if e.group_id == group], group
    assert all(m.sequence_number for m in got)


async def test_receive_sends_an_attempt_id_to_a_fifo_queue_only(
    fifo_config: Config, config: Config
) -> None:
    seen: list[dict[str, Any]] = []

    class Spy(SQSClient):
        async def _call(self, method: str, queue_url: str, **kwargs: Any) -> dict[str, Any]:
            seen.append(kwargs)
            return await super()._call(method, queue_url, **kwargs)

    async with Spy(fifo_config) as c:
        assert await c.receive(10, 0, 30, attempt_id="attempt-1") == []
        with pytest.raises(ValueError, match="ReceiveRequestAttemptId has a character"):
            await c.receive(10, 0, 30, attempt_id="no spaces allowed")
        assert await c.receive(10, 0, 30) == []
    async with Spy(config) as c:  # a standard queue: SQS defines no attempt id there
        assert await c.receive(10, 0, 30, attempt_id="no spaces, and not sent") == []
    assert [k.get("ReceiveRequestAttemptId") for k in seen] == ["attempt-1", None, None]


async def test_send_message_checks_ids_against_the_queue_kind(
    fifo_config: Config, config: Config
) -> None:
    async with SQSClient(fifo_config) as fifo, SQSClient(config) as standard:
        with pytest.raises(ValueError, match="requires a MessageGroupId"):
            await fifo.send_message("x", dedup_id="d")
        with pytest.raises(ValueError, match="DelaySeconds"):
            await fifo.send_message("x", group_id="g", dedup_id="d", delay_s=2)
        with pytest.raises(ValueError, match="FIFO queues only"):
            await standard.send_message("x", dedup_id="d")
        first = await fifo.send_message("x", group_id="g", dedup_id="same")
        assert await fifo.send_message("x again", group_id="g", dedup_id="same")
        await standard.send_message("y", group_id="tenant-7")
        [m] = await fifo.receive(10, 0, 30)
        [s] = await standard.receive(10, 0, 30)
    assert (m.message_id, m.body, m.group_id) == (first, b"x", "g")  # the copy was dropped
    assert (s.group_id, s.sequence_number) == ("tenant-7", "")


def test_the_sync_client_keeps_group_order_and_refuses_before_sending(
    fifo_config: Config,
) -> None:
    sent = [fifo_entry(f"e{i}", f"g{i % 3}") for i in range(25)]
    with SyncSQSClient(fifo_config, retry_base_s=0.001) as c:
        result = c.send_entries([*sent, fifo_entry("late", "g0", delay_s=1)])
        assert len(result.successful) == 25
        assert [(f.id, f.code) for f in result.failed] == [("late", "InvalidParameterValue")]
        with pytest.raises(ValueError, match="requires a MessageGroupId"):
            c.send_message("x")
