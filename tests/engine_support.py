"""Helpers shared by the engine tests: publishing, a bounded wait, and handlers that leave a trace.

Handlers run in forked workers, so they report through files (appends of one short line are
atomic), never through the test's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.engine.seats import SeatState
from goraxfast.ipc.rings import create_seats

TESTS = Path(__file__).parent


def engine_config(config: Config, **changes: object) -> Config:
    """The engine tests' Config: small, quick to drain and to stop."""
    base: dict[str, object] = dict(
        # One poller unless a test says otherwise: moto's ReceiveMessage checks and marks
        # visibility without a lock, so two concurrent receives can both get one message (seen
        # here with either client); SQS does not, and exactly-once assertions would flake.
        pollers=1,
        health_port=0,
        worker_processes=2,
        wait_time_s=1,
        poll_interval_s=0.05,
        retry_base_s=0,
        retry_max_s=0,
        shutdown_grace_s=10,
        metrics_interval_s=5,
    )
    base.update(changes)
    return config.with_(**base)


def engine_env(
    endpoint: str, queue_url: str, dlq_url: str, trace: Path, **extra: str
) -> dict[str, str]:
    """The environment of a ``goraxfast run`` under test: nothing of the test runner's AWS or
    engine settings leaks in; handlers from tests/cli_handlers.py trace to ``trace``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "QUEUE_", "WORKER_", "GORAXFAST_"))
    }
    env.update(
        AWS_ENDPOINT=endpoint,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SQS_QUEUE_URL=queue_url,
        AWS_SQS_DLQ_URL=dlq_url,
        QUEUE_WAIT_TIME_SECONDS="1",
        QUEUE_POLL_INTERVAL="0.05",
        WORKER_HEALTH_PORT="0",
        WORKER_SHUTDOWN_GRACE_SECONDS="10",
        GORAXFAST_TEST_TRACE=str(trace),
        GORAXFAST_TEST_SLEEP="0",
        PYTHONPATH=str(TESTS),
    )
    env.update(extra)
    return env


def publish(
    boto_sqs: Any,
    queue_url: str,
    count: int,
    *,
    tenants: int = 3,
    prefix: str = "e",
    tenant: str | None = None,
) -> list[str]:
    ids = []
    for start in range(0, count, 10):
        entries = []
        for j in range(start, min(count, start + 10)):
            execution_id = f"{prefix}{j}"
            ids.append(execution_id)
            msg = ExecutionMessage.new(
                tenant_id=tenant or f"tenant-{j % tenants}",
                workflow_id="wf",
                workflow_version=1,
                trigger_type="test",
                execution_id=execution_id,
            )
            entries.append(
                {
                    "Id": str(j - start),
                    "MessageBody": encode_message(msg).decode(),
                    "MessageAttributes": msg.message_attributes(),
                }
            )
        boto_sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    return ids


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = ""
) -> None:
    """Poll a condition the engine exposes no event for; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def trace_lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def append(path: Path, *fields: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())
    finally:
        os.close(fd)


def queue_counts(boto_sqs: Any, queue_url: str) -> tuple[int, int]:
    attrs = boto_sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def drain_dlq(boto_sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        resp = boto_sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        batch = resp.get("Messages", [])
        if not batch:
            return out
        out.extend(batch)


@contextlib.contextmanager
def live_seats(count: int, *, cap: int, shallow_cap: int) -> Iterator[list[SeatState]]:
    """Seats in real shared memory as a dispatcher sees them once its workers are up: alive,
    each with the pid a worker writes once past worker_init; closed afterwards."""
    made = create_seats(count, 64 * 1024, C.COUNTER_SLOTS)
    states = [SeatState.of(i, s, cap=cap, shallow_cap=shallow_cap) for i, s in enumerate(made)]
    for i, state in enumerate(states):
        state.alive = True
        state.pid = 1000 + i
        state.seat.counters[C.PID] = state.pid
    try:
        yield states
    finally:
        for seat in made:
            seat.close()
