"""MetricsCollector against the real moto server: depths after known operations, health, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from goraxfast.config import Config
from goraxfast.core.health import QueueMetrics, stale_after_s
from goraxfast.errors import SQSError
from goraxfast.ops.queue_metrics import MetricsCollector
from goraxfast.sqs.botocore import SQSClient


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(config: Config) -> AsyncIterator[SQSClient]:
    async with SQSClient(config) as sqs:
        yield sqs


def collector_for(client: SQSClient, config: Config, **kwargs: Any) -> MetricsCollector:
    return MetricsCollector(client, queue_url=config.queue_url, dlq_url=config.dlq_url, **kwargs)


def send(boto_sqs: Any, url: str, count: int, delay_s: int = 0) -> None:
    for i in range(count):
        boto_sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", DelaySeconds=delay_s)


async def test_published_messages_are_counted_visible(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    send(boto_sqs, config.queue_url, 3)
    metrics = await collector_for(client, config).collect()
    assert (metrics.visible, metrics.in_flight, metrics.delayed, metrics.total) == (3, 0, 0, 3)


async def test_received_message_is_counted_in_flight(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    send(boto_sqs, config.queue_url, 3)
    boto_sqs.receive_message(QueueUrl=config.queue_url, MaxNumberOfMessages=1)
    metrics = await collector_for(client, config).collect()
    assert (metrics.visible, metrics.in_flight, metrics.total) == (2, 1, 3)


async def test_delayed_message_is_counted_delayed(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    send(boto_sqs, config.queue_url, 1, delay_s=60)
    metrics = await collector_for(client, config).collect()
    assert (metrics.visible, metrics.delayed, metrics.total) == (0, 1, 1)


async def test_dlq_depth_counts_the_dead_letter_queue(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    send(boto_sqs, config.dlq_url, 2)
    metrics = await collector_for(client, config).collect()
    assert metrics.dlq_depth == 2


async def test_without_dlq_url_dlq_depth_is_none(client: SQSClient, config: Config) -> None:
    collector = MetricsCollector(client, queue_url=config.queue_url)
    assert (await collector.collect()).dlq_depth is None


async def test_unhealthy_before_the_first_collection_both_ways(
    client: SQSClient, config: Config
) -> None:
    collector = collector_for(client, config)
    assert collector.health_status().issues == ("Metrics are stale",)
    assert collector.is_healthy() is False


async def test_empty_queues_are_healthy_after_collection(client: SQSClient, config: Config) -> None:
    collector = collector_for(client, config)
    await collector.collect()
    assert collector.health_status().issues == ()
    assert collector.is_healthy() is True


async def test_message_in_dlq_makes_it_unhealthy_with_the_count(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    collector = collector_for(client, config)
    await collector.collect()
    send(boto_sqs, config.dlq_url, 1)
    await collector.collect()
    assert collector.health_status().issues == ("DLQ contains 1 messages",)
    assert collector.is_healthy() is False


async def test_depth_over_threshold_makes_it_unhealthy(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    send(boto_sqs, config.queue_url, 3)
    collector = collector_for(client, config)
    await collector.collect()
    assert collector.health_status(max_depth=2).issues == ("Queue depth 3 exceeds threshold 2",)
    assert collector.is_healthy(max_depth=2) is False
    assert collector.is_healthy(max_depth=3) is True


async def test_metrics_go_stale_when_collections_stop(client: SQSClient, config: Config) -> None:
    clock = FakeClock()
    collector = collector_for(client, config, interval_s=10, clock=clock)
    await collector.collect()
    clock.now += stale_after_s(10)
    assert collector.is_healthy() is True
    clock.now += 0.001
    assert collector.health_status().issues == ("Metrics are stale",)
    assert collector.is_healthy() is False


async def test_failed_collection_keeps_previous_metrics_and_records_error(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    collector = collector_for(client, config)
    before = await collector.collect()
    boto_sqs.delete_queue(QueueUrl=config.queue_url)
    with pytest.raises(SQSError):
        await collector.collect()
    assert collector.latest == before
    assert config.queue_url in str(collector.last_error)
    assert collector.failures == 1


async def test_start_collects_then_repeats_every_interval(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    seen: list[QueueMetrics] = []
    two_collections = asyncio.Event()

    def on_collect(metrics: QueueMetrics) -> None:
        seen.append(metrics)
        if len(seen) == 2:
            two_collections.set()

    collector = collector_for(client, config, interval_s=0.01, on_collect=on_collect)
    await collector.start()
    assert len(seen) == 1  # start() returns after the first collection
    send(boto_sqs, config.queue_url, 1)
    await asyncio.wait_for(two_collections.wait(), timeout=30)
    await collector.stop()
    assert seen[0].total == 0


async def test_stop_leaves_no_task_behind_and_is_idempotent(
    client: SQSClient, config: Config
) -> None:
    collector = collector_for(client, config, interval_s=0.01)
    await collector.stop()  # before start: nothing to do
    await collector.start()
    await collector.stop()
    await collector.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_start_with_unreachable_queue_records_error_instead_of_raising(
    client: SQSClient, config: Config, boto_sqs: Any
) -> None:
    boto_sqs.delete_queue(QueueUrl=config.queue_url)
    collector = collector_for(client, config, interval_s=60)
    await collector.start()
    await collector.stop()
    assert collector.latest is None
    assert collector.last_error is not None
    assert collector.health_status().issues == ("Metrics are stale",)
