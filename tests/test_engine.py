"""The engine end to end: real forks, the real moto server over HTTP, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_support import (
    append,
    drain_dlq,
    engine_config,
    publish,
    queue_counts,
    trace_lines,
    wait_until,
)

from goraxfast import Reject, Retry
from goraxfast.config import Config
from goraxfast.engine.engine import Engine
from goraxfast.errors import EngineError


@pytest.fixture(params=["botocore", "fast"])
def config(config: Config, request: pytest.FixtureRequest) -> Config:
    """Every engine scenario runs on both data-plane clients (issue 5: proven equal)."""
    return config.with_(sqs_client=request.param)


async def test_every_published_message_is_handled_exactly_once_and_the_queue_ends_empty(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 30)

    def handler(msg, info):
        append(trace, msg.execution_id, info.receive_count, os.getpid())

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 30, what="30 deletes")
        stats = engine.stats()
    handled = Counter(line[0] for line in trace_lines(trace))
    assert sorted(handled) == sorted(ids)
    assert set(handled.values()) == {1}, trace_lines(trace)
    assert stats.succeeded == 30 and stats.failed == 0
    assert queue_counts(boto_sqs, config.queue_url) == (0, 0)
    assert len({line[2] for line in trace_lines(trace)}) >= 1


async def test_several_pollers_drain_the_queue_and_handle_every_message(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 40)

    def handler(msg):
        append(trace, msg.execution_id)

    cfg = engine_config(config, pollers=4, concurrent_workers=20, prefetch=20)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: queue_counts(boto_sqs, config.queue_url) == (0, 0), what="empty")
        assert engine.stats().receives >= 1
    assert {line[0] for line in trace_lines(trace)} == set(ids)  # at least once each


async def test_async_handlers_run_concurrently_inside_a_worker(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 8, tenants=8)

    async def handler(msg, info):
        append(trace, "start", msg.execution_id, time.monotonic())
        await asyncio.sleep(0.5)
        append(trace, "end", msg.execution_id, time.monotonic())

    cfg = engine_config(config, worker_processes=1, concurrent_workers=8)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 8, what="8 deletes")
    assert peak_concurrency(trace_lines(trace)) > 1


def peak_concurrency(lines: list[list[str]], key: int | None = None) -> int:
    events = sorted((float(line[-1]), 1 if line[0] == "start" else -1) for line in lines)
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


async def test_a_poison_body_is_dead_lettered_at_once_with_its_reason(
    config: Config, boto_sqs
) -> None:
    boto_sqs.send_message(QueueUrl=config.queue_url, MessageBody='{"tenant_id": 7}')
    boto_sqs.send_message(QueueUrl=config.queue_url, MessageBody='{"execution_id": "x"}')
    calls = []

    async with Engine(engine_config(config), lambda msg: calls.append(msg)) as engine:
        await wait_until(lambda: engine.stats().dead_lettered >= 2 and engine.stats().deleted >= 2)
        assert engine.stats().poison == 2
    letters = drain_dlq(boto_sqs, config.dlq_url)
    reasons = sorted(m["MessageAttributes"]["goraxfast_dlq_reason"]["StringValue"] for m in letters)
    assert "Expected `str`, got `int` - at `$.tenant_id`" in reasons[0]
    assert reasons[1] == "poison message: ValidationError: tenant_id is required"
    assert sorted(m["Body"] for m in letters) == sorted(
        ['{"tenant_id": 7}', '{"execution_id": "x"}']
    )
    assert queue_counts(boto_sqs, config.queue_url) == (0, 0)


async def test_reject_dead_letters_the_message_with_the_handlers_reason(
    config: Config, boto_sqs
) -> None:
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg):
        raise Reject("workflow wf was deleted")

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 1)
        assert engine.stats().rejected == 1
    (letter,) = drain_dlq(boto_sqs, config.dlq_url)
    attrs = letter["MessageAttributes"]
    assert attrs["goraxfast_dlq_reason"]["StringValue"] == "workflow wf was deleted"
    assert attrs["goraxfast_receive_count"]["StringValue"] == "1"
    assert attrs["tenant_id"]["StringValue"] == "tenant-0"  # the original attributes travel along


async def test_failures_are_retried_until_the_limit_then_dead_lettered(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg, info):
        append(trace, info.receive_count)
        raise RuntimeError("database unreachable")

    async with Engine(engine_config(config, max_retries=3), handler) as engine:
        await wait_until(lambda: engine.stats().dead_lettered >= 1 and engine.stats().deleted >= 1)
        assert engine.stats().failed == 3
    assert [line[0] for line in trace_lines(trace)] == ["1", "2", "3"]
    (letter,) = drain_dlq(boto_sqs, config.dlq_url)
    reason = letter["MessageAttributes"]["goraxfast_dlq_reason"]["StringValue"]
    assert "RuntimeError: database unreachable" in reason and "attempt 3 of 3" in reason


async def test_retry_delays_the_next_delivery_by_the_asked_delay(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg, info):
        append(trace, info.receive_count, time.monotonic())
        if info.receive_count == 1:
            raise Retry(2)

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 1, what="the retried message")
        assert engine.stats().retried == 1
    (first, second) = trace_lines(trace)
    assert second[0] == "2"
    assert float(second[1]) - float(first[1]) >= 1.9  # not before the delay it asked for


@pytest.mark.slow
async def test_a_handler_longer_than_the_visibility_timeout_runs_once(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg, info):
        append(trace, msg.execution_id, info.receive_count)
        time.sleep(5)

    async with Engine(engine_config(config, visibility_timeout_s=2), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 1, what="the slow message")
        assert engine.stats().lease_renewals >= 2
    assert trace_lines(trace) == [["e0", "1"]]


@pytest.mark.slow
async def test_kill_9_of_a_worker_loses_nothing_and_the_worker_is_replaced(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 20)

    def handler(msg, info):
        time.sleep(0.1)
        append(trace, msg.execution_id)

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().succeeded >= 3, what="a few handled")
        victim = engine.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: engine.stats().worker_restarts >= 1, what="a replacement")
        await wait_until(lambda: engine.stats().deleted >= 20, what="all 20 deleted")
        assert victim not in engine.worker_pids()
        assert len(engine.worker_pids()) == 2
    assert set(ids) <= {line[0] for line in trace_lines(trace)}
    assert queue_counts(boto_sqs, config.queue_url) == (0, 0)


async def test_a_handler_over_the_process_timeout_gets_its_worker_killed_and_counts_a_failure(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg, info):
        append(trace, info.receive_count)
        if info.receive_count == 1:
            time.sleep(60)

    cfg = engine_config(config, process_timeout_s=0.5)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 1, what="the second attempt")
        stats = engine.stats()
        assert stats.timed_out == 1 and stats.succeeded == 1 and stats.worker_restarts == 1
    assert [line[0] for line in trace_lines(trace)] == ["1", "2"]


async def test_tenant_caps_hold_under_load_and_other_tenants_keep_flowing(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 14, tenant="busy", prefix="busy-")
    publish(boto_sqs, config.queue_url, 6, tenant="quiet", prefix="quiet-")

    async def handler(msg, info):
        append(trace, "start", msg.tenant_id, time.monotonic())
        await asyncio.sleep(0.3)
        append(trace, "end", msg.tenant_id, time.monotonic())

    cfg = engine_config(
        config, concurrent_workers=8, max_concurrency_per_tenant=2, throttle_release_delay_s=1
    )
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 20, what="20 deletes")
        assert engine.stats().throttled > 0
    lines = trace_lines(trace)
    assert peak_concurrency([line for line in lines if line[1] == "busy"]) == 2
    assert peak_concurrency([line for line in lines if line[1] == "quiet"]) == 2
    assert len(lines) == 40  # every message ran once (start and end)


async def test_other_tenants_flow_while_one_is_at_its_cap(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 12, tenants=2)  # tenant-0 and tenant-1, alternating

    async def handler(msg, info):
        append(trace, "start", msg.tenant_id, time.monotonic())
        await asyncio.sleep(0.3)
        append(trace, "end", msg.tenant_id, time.monotonic())

    cfg = engine_config(config, concurrent_workers=8, tenant_limits={"tenant-0": 1})
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 12, what="12 deletes")
    lines = trace_lines(trace)
    capped = [line for line in lines if line[1] == "tenant-0"]
    free = [line for line in lines if line[1] == "tenant-1"]
    assert peak_concurrency(capped) == 1
    assert peak_concurrency(free) > 1


async def test_stop_releases_unstarted_messages_at_once_and_deletes_nothing_unprocessed(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 10)

    def handler(msg, info):
        append(trace, msg.execution_id)
        time.sleep(1.0)

    cfg = engine_config(config, concurrent_workers=2, prefetch=8)
    engine = Engine(cfg, handler)
    await engine.start()
    await wait_until(lambda: engine.stats().received >= 10 and len(trace_lines(trace)) >= 2)
    await engine.stop()
    stats = engine.stats()
    handled = len(trace_lines(trace))
    assert stats.deleted == handled == stats.succeeded
    visible, in_flight = queue_counts(boto_sqs, config.queue_url)
    assert (visible, in_flight) == (10 - handled, 0)  # visible again now, not after 30 s


async def test_a_worker_that_cannot_start_stops_the_engine_with_a_clear_error(
    config: Config,
) -> None:
    def broken_init(index: int) -> None:
        raise RuntimeError("no database")

    engine = Engine(engine_config(config), lambda msg: None, worker_init=broken_init)
    # Whether start() sees the third failure or the running engine does is a race; the error,
    # and the exit code `goraxfast run` gives for it, are the same either way.
    error: BaseException | None
    try:
        await engine.start()
    except EngineError as exc:
        error = exc
    else:
        await asyncio.wait_for(engine.wait(), 30)
        error = engine.fatal_error
        assert engine.exit_code == 1
    assert isinstance(error, EngineError)
    assert "failed to start 3 times in a row" in str(error)


async def test_a_worker_whose_first_start_fails_is_replaced_and_the_engine_runs(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    def init_fails_first(index: int) -> None:
        flag = tmp_path / f"tried-{index}"
        if not flag.exists():
            flag.touch()
            raise RuntimeError("database not up yet")

    publish(boto_sqs, config.queue_url, 3)
    async with Engine(
        engine_config(config), lambda msg: None, worker_init=init_fails_first
    ) as engine:
        await wait_until(lambda: engine.stats().deleted >= 3)
        assert engine.stats().worker_restarts == 2  # each seat once


async def test_messages_are_not_held_by_a_worker_still_in_its_init(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"

    def slow_init_on_worker_1(index: int) -> None:
        if index == 1:
            time.sleep(10)  # loading a model, say

    def handler(msg, info):  # type: ignore[no-untyped-def]
        append(trace, info.worker_index)

    publish(boto_sqs, config.queue_url, 6)
    cfg = engine_config(config, worker_processes=2)
    async with Engine(cfg, handler, worker_init=slow_init_on_worker_1) as engine:
        await wait_until(lambda: engine.stats().deleted >= 6, timeout_s=9)
        # Worker 1 was still initialising the whole time: everything ran on worker 0.
        assert {line[0] for line in trace_lines(trace)} == {"0"}
        await engine.stop(grace_s=0)


async def test_a_replacement_worker_that_cannot_start_stops_the_running_engine(
    config: Config, tmp_path: Path
) -> None:
    def init_only_once(index: int) -> None:
        flag = tmp_path / f"started-{index}"
        if flag.exists():
            raise RuntimeError("no database any more")
        flag.touch()

    engine = Engine(engine_config(config), lambda msg: None, worker_init=init_only_once)
    await engine.start()
    os.kill(engine.worker_pids()[0], signal.SIGKILL)
    await asyncio.wait_for(engine.wait(), 30)
    assert isinstance(engine.fatal_error, EngineError)
    assert "worker 0 failed to start 3 times in a row" in str(engine.fatal_error)
    assert engine.exit_code == 1


async def test_metrics_and_health_are_served_over_http(config: Config, boto_sqs) -> None:
    import urllib.request

    publish(boto_sqs, config.queue_url, 3)
    async with Engine(engine_config(config), lambda msg: None) as engine:
        await wait_until(lambda: engine.stats().deleted >= 3)
        base = f"http://127.0.0.1:{engine.health_port}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        status, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200
        assert 'goraxfast_processed_total{outcome="success"} 3' in text
        assert "goraxfast_handler_seconds_count 3" in text
        assert "goraxfast_queue_depth" in text
        assert (await asyncio.to_thread(get, "/health/live"))[0] == 200
        assert (await asyncio.to_thread(get, "/health/ready"))[0] == 200
        status, body = await asyncio.to_thread(get, "/health")
        assert status in (200, 503) and '"issues"' in body


async def test_a_message_at_the_size_limit_is_dead_lettered_whole_with_a_trimmed_reason(
    config: Config, boto_sqs
) -> None:
    boto_sqs.set_queue_attributes(
        QueueUrl=config.dlq_url, Attributes={"MaximumMessageSize": "262144"}
    )
    from goraxfast.core.message import ExecutionMessage, encode_message

    payload = b'{"blob":"' + b"x" * 261_000 + b'"}'
    msg = ExecutionMessage.new(
        tenant_id="t", workflow_id="w", workflow_version=1, trigger_type="big", trigger_data=payload
    )
    body = encode_message(msg).decode()
    boto_sqs.send_message(QueueUrl=config.queue_url, MessageBody=body)
    publish(boto_sqs, config.queue_url, 2)

    def handler(m):
        raise Reject("r" * 5000)  # kept to 1000 characters, then to 200 so that the body fits

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 3, what="3 dead-lettered and deleted")
        assert engine.acker is not None and engine.acker.max_message_bytes == 262_144
    letters = drain_dlq(boto_sqs, config.dlq_url)
    assert len(letters) == 3
    (big,) = [m for m in letters if len(m["Body"]) > 100_000]
    assert big["Body"] == body
    assert big["MessageAttributes"]["goraxfast_dlq_reason"]["StringValue"] == "r" * 200


async def test_a_message_too_large_for_a_smaller_dlq_leaves_a_stub_and_stays_for_redrive(
    config: Config, boto_sqs
) -> None:
    """The DLQ accepts 1 KiB, the source 1 MiB: nothing is deleted that the DLQ did not take
    whole; a stub names it, and the queue's redrive policy (5 receives) moves the original."""
    boto_sqs.set_queue_attributes(
        QueueUrl=config.dlq_url, Attributes={"MaximumMessageSize": "1024"}
    )
    from goraxfast.core.message import ExecutionMessage, encode_message

    big = ExecutionMessage.new(
        tenant_id="t",
        workflow_id="w",
        workflow_version=1,
        trigger_type="big",
        trigger_data=b'{"blob":"' + b"x" * 5000 + b'"}',
    )
    valid = encode_message(big).decode()
    poison = '{"tenant_id": 7, "pad": "' + "p" * 3000 + '"}'
    valid_id = boto_sqs.send_message(QueueUrl=config.queue_url, MessageBody=valid)["MessageId"]
    poison_id = boto_sqs.send_message(QueueUrl=config.queue_url, MessageBody=poison)["MessageId"]

    def handler(m):
        raise Reject("not today")

    async with Engine(engine_config(config), handler) as engine:
        assert engine.acker is not None and engine.acker.max_message_bytes == 1024
        await wait_until(
            lambda: (
                queue_counts(boto_sqs, config.queue_url) == (0, 0)
                and queue_counts(boto_sqs, config.dlq_url)[0] >= 4
            ),
            what="stubs sent, then both originals moved by the redrive policy",
            timeout_s=60,
        )
        stats = engine.stats()
        assert stats.deleted == 0 and stats.dead_letter_stubs >= 2
    letters = drain_dlq(boto_sqs, config.dlq_url)
    whole = sorted(
        m["Body"] for m in letters if "goraxfast_body_omitted" not in m.get("MessageAttributes", {})
    )
    assert whole == sorted([valid, poison])  # moved by SQS, every byte
    stubs = [m for m in letters if "goraxfast_body_omitted" in m.get("MessageAttributes", {})]
    assert {json.loads(m["Body"])["source_message_id"] for m in stubs} == {valid_id, poison_id}
    assert all(len(m["Body"].encode()) <= 1024 for m in stubs)


async def test_lost_answers_to_dlq_sends_make_a_bounded_number_of_copies_that_say_so(
    config: Config, boto_sqs, sqs_endpoint: str
) -> None:
    """Every SendMessageBatch reaches the DLQ but its answer is lost: each delivery's letter is
    sent at most twice (same goraxfast_letter_id), nothing is deleted unconfirmed, and once the
    network heals every message ends in the DLQ and leaves the main queue."""
    from faultproxy import FaultProxy, Rule

    bodies = [f'{{"tenant_id": {i}}}' for i in range(30)]  # poison: tenant_id is not a string
    for i in range(0, 30, 10):
        boto_sqs.send_message_batch(
            QueueUrl=config.queue_url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])],
        )
    with FaultProxy(sqs_endpoint) as proxy:
        lost = proxy.add(Rule.drop_response("SendMessageBatch"))
        cfg = engine_config(config, aws_endpoint=proxy.endpoint, visibility_timeout_s=2)
        async with Engine(cfg, lambda m: None) as engine:
            await wait_until(
                lambda: engine.stats().dead_letter_answers_lost >= 60,
                what="every letter sent twice without an answer",
                timeout_s=60,
            )
            assert engine.stats().deleted == 0  # nothing deleted that the DLQ did not confirm
            proxy.remove(lost)
            await wait_until(
                lambda: queue_counts(boto_sqs, config.queue_url) == (0, 0),
                what="the main queue empty once answers come back",
                timeout_s=60,
            )
    letters = drain_dlq(boto_sqs, config.dlq_url)
    assert sorted({m["Body"] for m in letters}) == sorted(bodies)
    copies = Counter(m["MessageAttributes"]["goraxfast_letter_id"]["StringValue"] for m in letters)
    assert max(copies.values()) <= 2, copies
    sources = Counter(
        m["MessageAttributes"]["goraxfast_source_message_id"]["StringValue"] for m in letters
    )
    assert len(sources) == 30


async def test_without_a_dlq_url_nothing_is_deleted_and_the_redrive_policy_moves_it(
    config: Config, boto_sqs
) -> None:
    publish(boto_sqs, config.queue_url, 1)

    def handler(msg):
        raise Reject("never valid")

    # The fixture's queue redrives to its DLQ after 5 receives; the engine knows no DLQ URL.
    async with Engine(engine_config(config, dlq_url=""), handler) as engine:
        await wait_until(
            lambda: queue_counts(boto_sqs, config.dlq_url)[0] == 1, what="redrive by SQS"
        )
        stats = engine.stats()
        assert stats.deleted == 0 and stats.dead_lettered == 0
        assert stats.dead_letter_skipped >= 4
    (moved,) = drain_dlq(boto_sqs, config.dlq_url)
    assert "goraxfast_dlq_reason" not in moved.get("MessageAttributes", {})  # SQS moved it, not us
