"""The publish run: goraxfast's batch publishers against one ``send_message`` per message.

Run inside the harness process (nothing else runs there meanwhile), so the CPU figure is
``time.process_time()`` of this process, every thread included; the server's CPU comes from
/proc like everywhere else. Each mode publishes the same messages to a fresh queue.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench import measure
from bench.servers import BenchServer
from bench.workload import (
    BenchQueue,
    bench_config,
    bodies,
    boto_client,
    messages,
    run_tag,
)
from goraxfast.core.message import ExecutionMessage
from goraxfast.publish.publisher import Publisher, SyncPublisher

MODES = {
    "one-at-a-time": "boto3 send_message per message (what Celery and dramatiq do)",
    "sync-batch": "goraxfast SyncPublisher.publish_batch (boto3, batches of 10)",
    "async-batch": "goraxfast Publisher.publish_batch (its default: the fast client, 4 batches in flight)",
    "async-batch-botocore": "goraxfast Publisher.publish_batch (GORAXFAST_SQS_CLIENT=botocore: aiobotocore, 4 batches in flight)",
}


@dataclass
class PublishResult:
    server: str
    mode: str
    run: int
    messages: int
    status: str = "ok"
    error: str = ""
    seconds: float = math.nan
    msgs_per_s: float = math.nan
    client_us_per_msg: float = math.nan
    server_us_per_msg: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _OneAtATime:
    def __init__(self, endpoint: str, url: str) -> None:
        self.client, self.url = boto_client(endpoint), url

    def send(self, msgs: Sequence[ExecutionMessage]) -> None:
        for body, msg in zip(bodies(msgs), msgs, strict=True):
            self.client.send_message(
                QueueUrl=self.url, MessageBody=body, MessageAttributes=msg.message_attributes()
            )

    def close(self) -> None:
        self.client.close()


class _SyncBatch:
    def __init__(self, endpoint: str, url: str) -> None:
        self.pub = SyncPublisher.from_config(bench_config(endpoint, url))

    def send(self, msgs: Sequence[ExecutionMessage]) -> None:
        if not self.pub.publish_batch(msgs).ok:
            raise RuntimeError("some messages were not published")

    def close(self) -> None:
        self.pub.close()


class _AsyncBatch:
    """One event loop kept across calls, so the client is created outside the window."""

    sqs_client = "fast"

    def __init__(self, endpoint: str, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        config = bench_config(endpoint, url).with_(sqs_client=self.sqs_client)
        self.pub = Publisher.from_config(config)
        self.loop.run_until_complete(self.pub.__aenter__())

    def send(self, msgs: Sequence[ExecutionMessage]) -> None:
        if not self.loop.run_until_complete(self.pub.publish_batch(msgs)).ok:
            raise RuntimeError("some messages were not published")

    def close(self) -> None:
        self.loop.run_until_complete(self.pub.close())
        self.loop.close()


class _AsyncBatchBotocore(_AsyncBatch):
    sqs_client = "botocore"


RUNNERS: dict[str, Callable[[str, str], _OneAtATime | _SyncBatch | _AsyncBatch]] = {
    "one-at-a-time": _OneAtATime,
    "sync-batch": _SyncBatch,
    "async-batch": _AsyncBatch,
    "async-batch-botocore": _AsyncBatchBotocore,
}


def publish_once(server: BenchServer, mode: str, count: int, run: int) -> PublishResult:
    result = PublishResult(server.name, mode, run, count)
    tag = run_tag()
    queue = BenchQueue(boto_client(server.endpoint), f"bench-pub-{mode}-{tag}")
    try:
        queue.create()
        msgs = messages(count, tag)
        warm = messages(20, tag, start=count)
        sender = RUNNERS[mode](server.endpoint, queue.url)
        try:
            sender.send(warm)  # imports, connections, first-call caches: not measured
            pids = server.pids()
            stats0 = measure.read_all_stats()
            cpu0, t0 = time.process_time(), time.perf_counter()
            sender.send(msgs)
            t1, cpu1 = time.perf_counter(), time.process_time()
            stats1 = measure.read_all_stats()
        finally:
            sender.close()
        result.seconds = t1 - t0
        result.msgs_per_s = count / result.seconds
        result.client_us_per_msg = (cpu1 - cpu0) * 1e6 / count
        server_cpu = measure.cpu_delta_s(pids, stats0, stats1)
        if server_cpu is not None:
            result.server_us_per_msg = server_cpu * 1e6 / count
        elif pids:
            result.error = "server CPU unknown: the server process exited or restarted meanwhile"
        depth = queue.depth()
        if depth != count + len(warm):
            raise RuntimeError(f"queue holds {depth} messages, expected {count + len(warm)}")
    except Exception as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        queue.delete()
    return result
