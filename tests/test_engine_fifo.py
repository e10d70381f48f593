"""FIFO queues end to end, on the real moto server with real forked workers: per message group,
the handler runs one message at a time, in publish order, across every worker; a failed attempt
or a killed worker holds the rest of its group back until that message succeeds.

Handlers trace every attempt (start and end, monotonic) to a file; the assertions read it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import append, engine_config, queue_counts, trace_lines, wait_until

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.engine.engine import Engine

pytestmark = pytest.mark.slow

GROUPS = 6
PER_GROUP = 6
_names = itertools.count()


#: A LocalStack to run these tests on as well (``make localstack`` starts one on 4566): moto is
#: the suite's server, LocalStack the bench's, and their FIFO implementations differ.
LOCALSTACK = os.environ.get("GORAXFAST_TEST_LOCALSTACK_ENDPOINT", "")
_NO_LOCALSTACK = pytest.mark.skipif(
    not LOCALSTACK, reason="GORAXFAST_TEST_LOCALSTACK_ENDPOINT: no LocalStack given"
)


@pytest.fixture(params=["moto", pytest.param("localstack", marks=_NO_LOCALSTACK)])
def fifo_server(request: Any, config: Config, boto_sqs: Any) -> tuple[Config, Any]:
    """The server's config and a boto3 client of it: moto's (the suite's), or a LocalStack."""
    if request.param == "moto":
        return config, boto_sqs
    import boto3

    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    client = boto3.client("sqs", endpoint_url=LOCALSTACK, region_name="us-east-1", **keys)
    return config.with_(aws_endpoint=LOCALSTACK, aws_region="us-east-1", **keys), client


@pytest.fixture
def fifo_sqs(fifo_server: tuple[Config, Any]) -> Any:
    return fifo_server[1]


@pytest.fixture
def fifo_config(fifo_server: tuple[Config, Any]) -> Iterator[Config]:
    """A FIFO main queue and a FIFO DLQ of the test's own."""
    config, boto_sqs = fifo_server
    tag = f"{os.getpid()}-{next(_names)}"
    dlq = boto_sqs.create_queue(QueueName=f"fifo-dlq-{tag}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    main = boto_sqs.create_queue(
        QueueName=f"fifo-{tag}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"},
    )["QueueUrl"]
    yield config.with_(queue_url=main, dlq_url=dlq)
    for url in (main, dlq):
        with contextlib.suppress(Exception):
            boto_sqs.delete_queue(QueueUrl=url)


def publish_groups(boto_sqs: Any, queue_url: str) -> dict[str, list[str]]:
    """GROUPS groups of PER_GROUP messages, interleaved across groups as an API server would
    publish them; returns each group's execution ids in publish order."""
    order: dict[str, list[str]] = defaultdict(list)
    entries = []
    for n in range(PER_GROUP):
        for g in range(GROUPS):
            group = f"wf-{g}"
            execution_id = f"{group}.{n}"
            order[group].append(execution_id)
            msg = ExecutionMessage.new(
                tenant_id=f"tenant-{g % 2}",
                workflow_id=group,
                workflow_version=1,
                trigger_type="test",
                execution_id=execution_id,
            )
            entries.append(
                {
                    "Id": str(len(entries) % 10),
                    "MessageBody": encode_message(msg).decode(),
                    "MessageGroupId": group,
                    "MessageDeduplicationId": execution_id,
                }
            )
            if len(entries) == 10:
                boto_sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                entries = []
    if entries:
        boto_sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    return dict(order)


def attempts_by_group(trace: Path) -> dict[str, list[tuple[float, float, str, str]]]:
    """group -> its attempts (start, end, execution id, outcome), by start time."""
    by_group: dict[str, list[tuple[float, float, str, str]]] = defaultdict(list)
    starts: dict[tuple[str, str], float] = {}
    for line in trace_lines(trace):
        kind, execution_id, attempt, at = line[0], line[1], line[2], float(line[3])
        group = execution_id.split(".")[0]
        if kind == "start":
            starts[(execution_id, attempt)] = at
        else:
            by_group[group].append((starts[(execution_id, attempt)], at, execution_id, kind))
    return {g: sorted(a) for g, a in by_group.items()}


def assert_one_at_a_time_in_order(trace: Path, order: dict[str, list[str]]) -> None:
    groups = attempts_by_group(trace)
    assert set(groups) == set(order)
    for group, attempts in groups.items():
        for (_, end, _, _), (start, _, _, _) in itertools.pairwise(attempts):
            assert end <= start, f"{group}: two attempts overlapped: {attempts}"
        succeeded = [execution_id for _, _, execution_id, kind in attempts if kind == "ok"]
        assert succeeded == order[group], f"{group}: ran out of order: {attempts}"


async def test_each_group_runs_one_message_at_a_time_in_publish_order_through_failures(
    fifo_config: Config, fifo_sqs: Any, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    order = publish_groups(fifo_sqs, fifo_config.queue_url)
    failing = {ids[2] for ids in order.values()} | {order["wf-0"][0]}

    def handler(msg: ExecutionMessage, info: Any) -> None:
        attempt = str(info.receive_count)
        append(trace, "start", msg.execution_id, attempt, time.monotonic())
        time.sleep(0.01 if msg.execution_id.endswith(".1") else 0)
        # its first *run* fails, whatever its receive count: a message handed back unrun behind
        # a failed one comes again with a higher count (LocalStack hands out a group's whole
        # backlog at once, moto one message of it)
        tried = tmp_path / f"tried-{msg.execution_id}"
        if msg.execution_id in failing and not tried.exists():
            tried.touch()
            append(trace, "fail", msg.execution_id, attempt, time.monotonic())
            raise RuntimeError("first attempt fails")
        append(trace, "ok", msg.execution_id, attempt, time.monotonic())

    cfg = engine_config(fifo_config, worker_processes=3, concurrent_workers=6)
    total = GROUPS * PER_GROUP
    async with Engine(cfg, handler) as engine:
        await wait_until(
            lambda: engine.stats().succeeded >= total, timeout_s=90, what="every message"
        )
        await wait_until(lambda: engine.stats().acks_pending == 0, what="acks sent")
        stats = engine.stats()
    assert_one_at_a_time_in_order(trace, order)
    assert stats.succeeded == total and stats.dead_lettered == 0
    assert stats.failed == len(failing)
    assert stats.released > 0  # the later messages of a failed one's group went back unrun
    assert queue_counts(fifo_sqs, fifo_config.queue_url) == (0, 0)


async def test_a_worker_killed_mid_group_does_not_let_its_group_run_ahead(
    fifo_config: Config, fifo_sqs: Any, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    order = publish_groups(fifo_sqs, fifo_config.queue_url)
    victim = order["wf-3"][1]

    def handler(msg: ExecutionMessage, info: Any) -> None:
        attempt = str(info.receive_count)
        append(trace, "start", msg.execution_id, attempt, time.monotonic())
        if msg.execution_id == victim and info.receive_count == 1:
            append(trace, "killed", msg.execution_id, attempt, time.monotonic())
            os.kill(os.getpid(), signal.SIGKILL)
        append(trace, "ok", msg.execution_id, attempt, time.monotonic())

    cfg = engine_config(fifo_config, worker_processes=2, concurrent_workers=4)
    total = GROUPS * PER_GROUP
    async with Engine(cfg, handler) as engine:
        await wait_until(
            lambda: engine.stats().succeeded >= total, timeout_s=90, what="every message"
        )
        stats = engine.stats()
    assert_one_at_a_time_in_order(trace, order)
    assert stats.crashed == 1 and stats.worker_restarts == 1
