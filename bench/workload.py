"""The messages of a run and the queue they go through: built once, the same for every contender.

Every message is a real gorax ``ExecutionMessage`` (~400 bytes of JSON, eight tenants, a small
trigger payload) numbered by its execution id, so a handler can report which one it ran. Celery
and dramatiq get the *same* payload wrapped in their own envelope (see
:mod:`bench.contenders.peer_bodies`), because their workers only accept their own format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.publish.publisher import Publisher

REGION = "us-east-1"
ACCESS_KEY = "bench"
SECRET_KEY = "bench"
TENANTS = 8
QUEUE_VISIBILITY_S = 60


def run_tag() -> str:
    """A short unique tag: every run gets fresh queue names and execution ids."""
    return uuid.uuid4().hex[:8]


def message(seq: int, tag: str, groups: int = 0) -> ExecutionMessage:
    """The bench's execution ``seq``; with ``groups``, its workflow is one of that many (a FIFO
    queue's message group is the workflow by default), in turn."""
    trigger = json.dumps(
        {"order": seq, "items": [{"sku": f"SKU-{seq % 97:04d}", "qty": 1 + seq % 5}]},
        separators=(",", ":"),
    ).encode()
    return ExecutionMessage.new(
        tenant_id=f"tenant-{seq % TENANTS}",
        workflow_id=f"wf-bench-{seq % groups:05d}" if groups else "wf-bench-orders",
        workflow_version=3,
        trigger_type="webhook",
        trigger_data=trigger,
        execution_id=f"bench-{tag}-{seq:08d}",
        correlation_id=f"corr-{seq:08d}",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def messages(count: int, tag: str, start: int = 0, groups: int = 0) -> list[ExecutionMessage]:
    return [message(seq, tag, groups) for seq in range(start, start + count)]


def bodies(msgs: Sequence[ExecutionMessage]) -> list[str]:
    return [encode_message(m).decode() for m in msgs]


def bench_config(endpoint: str, queue_url: str = "") -> Config:
    """The goraxfast Config every Python contender and the harness share (static bench keys)."""
    return Config(
        queue_url=queue_url,
        aws_endpoint=endpoint,
        aws_region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def boto_client(endpoint: str) -> Any:
    """The harness's own boto3 client (queue set-up, trickle sends): never a contender's."""
    return boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16),
    )


@dataclass
class BenchQueue:
    """One fresh queue per run, deleted afterwards, so no run inherits another's leftovers."""

    client: Any
    name: str
    url: str = ""

    def create(self) -> BenchQueue:
        attributes = {"VisibilityTimeout": str(QUEUE_VISIBILITY_S)}
        if self.name.endswith(".fifo"):
            attributes["FifoQueue"] = "true"
        self.url = self.client.create_queue(QueueName=self.name, Attributes=attributes)["QueueUrl"]
        return self

    def depth(self) -> int:
        """Visible + in flight + delayed: 0 only when every message was deleted."""
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def send_raw(self, bodies: Sequence[str]) -> None:
        """Pre-fill with framework-wrapped bodies (batches of 10, a few threads)."""
        chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]

        def send(chunk: Sequence[str]) -> None:
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
            resp = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            if resp.get("Failed"):
                raise RuntimeError(f"pre-fill failed: {resp['Failed'][:2]}")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, chunks))

    def send_one(self, body: str, attributes: dict[str, Any] | None = None) -> None:
        args: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body}
        if attributes:
            args["MessageAttributes"] = attributes
        self.client.send_message(**args)

    def delete(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the server may already be gone
            self.client.delete_queue(QueueUrl=self.url)


def publish_gorax(endpoint: str, queue_url: str, msgs: Sequence[ExecutionMessage]) -> None:
    """Pre-fill gorax-format messages the way producers do: goraxfast's batch publisher,
    which also attaches gorax's message attributes (tenant, workflow, trigger)."""

    async def go() -> None:
        async with Publisher.from_config(bench_config(endpoint, queue_url)) as pub:
            result = await pub.publish_batch(msgs)
            if not result.ok:
                raise RuntimeError(f"pre-fill failed for {len(result.failed)} messages")

    asyncio.run(go())


def warm_up_server(endpoint: str, count: int = 3_000) -> None:
    """Send and drain ``count`` messages through a throwaway queue before anything is measured.

    A fresh server is slower for its first thousands of requests (fauxqs is Node: its JIT is
    still compiling), and without this whichever contender ran first paid for it: the fast
    engine's first run on fauxqs measured 13.5 k msg/s against 21-24 k in the other two.
    """
    queue = BenchQueue(boto_client(endpoint), f"warm-up-{run_tag()}").create()
    try:
        queue.send_raw(bodies(messages(count, run_tag())))
        client = queue.client
        drained = 0
        while drained < count:
            got = client.receive_message(
                QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                break
            client.delete_message_batch(
                QueueUrl=queue.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
            drained += len(got)
    finally:
        queue.delete()
