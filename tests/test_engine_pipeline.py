"""The receive pipeline sized by the round trip: through a delay proxy on loopback in front of the
real moto server, the engine grows its receives in flight, and never holds more than its bound.

moto answers ReceiveMessage in about a millisecond here; the proxy adds a real region's round
trip and more, so that two receives in flight are what bounds the engine, not moto or the CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import append, engine_config, publish, trace_lines, wait_until
from faultproxy import FaultProxy, Rule

from goraxfast.config import Config
from goraxfast.core.pipeline import held_bound
from goraxfast.engine.build import pipeline_limits
from goraxfast.engine.engine import Engine

#: Added to every request: receives, deletes and visibility changes alike.
ROUND_TRIP_MS = 60
MESSAGES = 600

pytestmark = pytest.mark.slow


@pytest.fixture
def proxied(config: Config, sqs_endpoint: str) -> Iterator[Config]:
    with FaultProxy(sqs_endpoint) as proxy:
        proxy.add(Rule.delay(ROUND_TRIP_MS))
        yield config.with_(aws_endpoint=proxy.endpoint, sqs_client="fast")


async def held_peak(engine: Engine, done: asyncio.Event) -> int:
    """The most messages the engine held (dispatcher's books plus room reserved by receives in
    flight), sampled every few milliseconds while it runs."""
    peak = 0
    while not done.is_set():
        d, credits = engine.dispatcher, engine.credits
        if d is not None and credits is not None:
            peak = max(peak, len(d.held) + credits.capacity - credits.free())
        await asyncio.sleep(0.005)
    return peak


async def test_the_engine_grows_its_receives_in_flight_through_a_real_round_trip(
    proxied: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, proxied.queue_url, MESSAGES, tenants=20)
    cfg = engine_config(proxied, pollers=0, concurrent_workers=20, wait_time_s=1)
    limits = pipeline_limits(cfg)

    def handler(msg):
        append(trace, msg.execution_id)

    done = asyncio.Event()
    async with Engine(cfg, handler) as engine:
        sampler = asyncio.ensure_future(held_peak(engine, done))
        await wait_until(
            lambda: engine.stats().succeeded >= MESSAGES, timeout_s=120, what="every message"
        )
        stats = engine.stats()
        done.set()
        peak = await sampler
    assert stats.pollers_max > limits.min_pollers, stats
    assert stats.dwell_p50_s is not None and stats.dwell_p99_s is not None
    assert 0 <= stats.dwell_p50_s <= stats.dwell_p99_s
    assert peak <= held_bound(limits, cfg.concurrent_workers)
    assert {line[0] for line in trace_lines(trace)} == set(ids)  # at least once each (moto)


async def test_fixed_settings_are_kept_whatever_the_round_trip(
    proxied: Config, boto_sqs, tmp_path: Path
) -> None:
    publish(boto_sqs, proxied.queue_url, 100)
    cfg = engine_config(proxied, pollers=3, prefetch=7, pipeline="fixed")
    async with Engine(cfg, lambda msg: None) as engine:
        await wait_until(lambda: engine.stats().succeeded >= 100, timeout_s=60, what="100 handled")
        stats = engine.stats()
    assert (stats.pollers_max, stats.prefetch_max) == (3, 7)
    assert (stats.pollers, stats.prefetch) == (3, 7)
