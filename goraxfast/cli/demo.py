"""``make run``: a local SQS server, fresh queues, a demo workload, then queue metrics and health.

It prefers LocalStack (AWS-faithful, fast enough to show throughput) and falls back to moto's
server when Python 3.13 is missing or LocalStack will not start, so the demo runs on any machine
with the project's venv. A LocalStack that was already running is used and left running; a
server the demo started is stopped at the end. ``GORAXFAST_DEMO_SERVER=moto`` skips LocalStack.

Between publishing and the final metrics, :func:`run_workload` drains the queue with the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3

from goraxfast.cli.commands import demo_messages, format_stats, publish_messages
from goraxfast.cli.localstack import DEFAULT_PORT, LocalStack, LocalStackError, PythonMissingError
from goraxfast.cli.moto_server import MotoServer
from goraxfast.config import Config
from goraxfast.core.health import HealthStatus
from goraxfast.core.message import ExecutionMessage
from goraxfast.engine.engine import Engine
from goraxfast.errors import ConfigError, GoraxfastError
from goraxfast.ops.prometheus import queue_families, render
from goraxfast.ops.queue_metrics import MetricsCollector
from goraxfast.sqs.botocore import SQSClient, SyncSQSClient, client_kwargs
from goraxfast.worker.handler import DeliveryInfo, Reject

DEMO_MESSAGES = 2000
DEMO_MESSAGES_MOTO = 200
DEMO_TENANTS = 5


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class LocalServer:
    """Which server the demo talks to, and how to leave it as it was found."""

    name: str
    endpoint: str
    stop: Callable[[], object]
    keep_running: bool


@contextlib.contextmanager
def local_server() -> Iterator[LocalServer]:
    """LocalStack if it can be had, else moto; stopped on exit unless it was already running."""
    server = _start_server()
    try:
        yield server
    finally:
        if server.keep_running:
            say(f"leaving {server.name} running on {server.endpoint} (it was running before)")
        else:
            server.stop()
            say(f"stopped {server.name}")


def _start_server() -> LocalServer:
    if os.environ.get("GORAXFAST_DEMO_SERVER", "").lower() != "moto":
        port = int(os.environ.get("GORAXFAST_LOCALSTACK_PORT", DEFAULT_PORT))
        stack = LocalStack(port=port)
        was_running = stack.sqs_ready()
        try:
            started = time.monotonic()
            stack.start()
        except PythonMissingError as exc:
            say(f"notice: {exc}\nnotice: falling back to moto's server (slower, functional only)")
        except LocalStackError as exc:
            say(f"notice: LocalStack did not start: {exc}\nnotice: falling back to moto's server")
        else:
            how = (
                "already running"
                if was_running
                else f"started in {time.monotonic() - started:.1f} s"
            )
            say(f"LocalStack SQS on {stack.endpoint} ({how}, loopback only)")
            return LocalServer("LocalStack", stack.endpoint, stack.stop, was_running)
    moto = MotoServer().start()
    say(f"moto server on {moto.endpoint}")
    return LocalServer("moto server", moto.endpoint, moto.stop, keep_running=False)


def provision(base: Config, endpoint: str) -> Config:
    """A main queue and DLQ with unique names (runs never see each other's messages)."""
    config = base.with_(
        aws_endpoint=endpoint,
        # Static dummy keys: the default credential chain could wait seconds on instance metadata.
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aws_session_token="",
    )
    name = f"goraxfast-demo-{uuid.uuid4().hex[:8]}"
    with SyncSQSClient(config) as sqs:
        main_url, dlq_url = sqs.create_queues(
            name, f"{name}-dlq", max_receive_count=10, visibility_timeout_s=30
        )
    say(f"created {main_url}\n    and {dlq_url} (redrive after 10 receives)")
    return config.with_(queue_url=main_url, dlq_url=dlq_url)


def publish_workload(
    config: Config, count: int = DEMO_MESSAGES, tenants: int = DEMO_TENANTS
) -> None:
    started = time.perf_counter()
    result = asyncio.run(publish_messages(config, demo_messages(count, tenants)))
    elapsed = time.perf_counter() - started
    say(
        f"published {len(result.published)} messages over {tenants} tenants in {elapsed:.2f} s "
        f"({len(result.published) / elapsed:.0f} msgs/s), {len(result.failed)} failed"
    )
    if not result.ok:
        raise GoraxfastError(f"{len(result.failed)} demo messages failed: {result.failed[:3]}")


def demo_handler(message: ExecutionMessage, info: DeliveryInfo) -> None:
    """Stand-in work: ~1 ms of CPU; one execution in fifty is rejected, to show the DLQ path."""
    deadline = time.perf_counter() + 0.001
    while time.perf_counter() < deadline:
        pass
    if zlib.crc32(message.execution_id.encode()) % 50 == 0:
        raise Reject(f"demo: workflow {message.workflow_id} v{message.workflow_version} is retired")


def run_workload(config: Config, expected: int = DEMO_MESSAGES) -> None:
    """Drain the demo queue with the engine, a live progress line, then its summary."""
    asyncio.run(_drain(config, expected))


async def _drain(config: Config, expected: int) -> None:
    engine = Engine(config.with_(health_port=0, wait_time_s=1, poll_interval_s=0.1), demo_handler)
    started = time.monotonic()
    await engine.start()
    say(
        f"engine: {engine.workers} worker processes, up to {config.concurrent_workers} handlers "
        f"at once, metrics on http://127.0.0.1:{engine.health_port}/metrics"
    )
    try:
        last = started
        done = 0
        first_seen: float | None = None
        while done < expected and time.monotonic() - started < 120:
            await asyncio.sleep(0.25)
            stats = engine.stats()
            done = stats.deleted
            now = time.monotonic()
            if now - last >= 0.5 or done >= expected:
                last = now
                if first_seen is None and stats.received:
                    first_seen = now
                rate = stats.handled / max(now - (first_seen or now), 0.25)
                print(
                    f"\r  received {stats.received:5d}  handled {stats.handled:5d} ({rate:5.0f}/s)"
                    f"  in flight {stats.in_flight:3d}  dead-lettered {stats.dead_lettered:3d}",
                    end="",
                    flush=True,
                )
        print(flush=True)
    finally:
        await engine.stop()
    say(f"engine stopped after {time.monotonic() - started:.1f} s: {engine.stats().summary()}")


async def _collect(config: Config) -> HealthStatus:
    async with SQSClient(config) as sqs:
        collector = MetricsCollector(
            sqs, queue_url=config.queue_url, dlq_url=config.dlq_url, interval_s=30
        )
        await collector.collect()
        return collector.health_status(config.max_queue_depth)


def show_metrics(config: Config) -> HealthStatus:
    status = asyncio.run(_collect(config))
    say(format_stats(status, config.queue_url, config.dlq_url))
    say("as /metrics serves them:")
    for line in render(queue_families(status.metrics, status)).splitlines():
        if not line.startswith("#"):
            say(f"  {line}")
    return status


def delete_queues(config: Config) -> None:
    """Best effort: a LocalStack left running should not collect a pair of queues per run."""
    sqs = boto3.client("sqs", **client_kwargs(config))
    for url in (config.queue_url, config.dlq_url):
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=url)


def main() -> int:
    started = time.monotonic()
    try:
        base = Config.from_env(os.environ)
    except ConfigError as exc:
        for problem in exc.problems:  # one line each, as the CLI prints them
            print(f"goraxfast demo: {problem}", file=sys.stderr)
        return 2
    try:
        with local_server() as server:
            config = provision(base, server.endpoint)
            # moto slows with depth (every send scans the queue): a smaller workload there
            count = DEMO_MESSAGES if server.name == "LocalStack" else DEMO_MESSAGES_MOTO
            publish_workload(config, count)
            run_workload(config, count)
            show_metrics(config)
            if server.keep_running:
                delete_queues(config)
    except GoraxfastError as exc:
        print(f"goraxfast demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    say(f"demo done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
