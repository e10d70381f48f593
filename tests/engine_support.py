"""Helpers shared by the engine tests: publishing, a bounded wait, and handlers that leave a trace.

Handlers run in forked workers, so they report through files (appends of one short line are
atomic), never through the test's memory.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goraxfast.core.message import ExecutionMessage, encode_message


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
