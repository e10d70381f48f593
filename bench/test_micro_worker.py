"""The sync worker's own CPU per message: its real loop (``_SyncWorker.run``) over a real seat,
with a no-op handler and no waiting (the ring is full when it starts, and it stops by draining).

What the engine's workers cost beyond this is the sleep and wake-up between runs of deliveries,
which ``python -m profiles.breakdown`` shows next to it. One round is ``DELIVERIES`` messages;
pytest-benchmark's columns are per round (``extra_info`` has µs per message).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from goraxfast.core import counters as C
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.records import DELIVERY_ENCODER, Delivery
from goraxfast.ipc.rings import create_seats
from goraxfast.worker import loop as W
from goraxfast.worker.handler import bind_handler

DELIVERIES = 2_000


@pytest.mark.benchmark(timer=time.process_time)
def test_sync_worker_loop_per_round_of_deliveries(benchmark: Any) -> None:
    [seat] = create_seats(1, 1 << 22, C.COUNTER_SLOTS)
    msg = ExecutionMessage.new(
        tenant_id="tenant-1",
        workflow_id="wf-bench-orders",
        workflow_version=3,
        trigger_type="webhook",
        trigger_data=b'{"order":1,"items":[{"sku":"SKU-0001","qty":2}]}',
        execution_id="bench-00000001",
        correlation_id="corr-00000001",
    )
    record = DELIVERY_ENCODER.encode(
        Delivery(1, "00000000-aaaa-bbbb-cccc-dddddddddddd", 1, 0, 0, encode_message(msg))
    )
    handled = 0

    def noop(_: ExecutionMessage) -> None:
        nonlocal handled
        handled += 1
        if handled == DELIVERIES:
            seat.counters[C.CONTROL] = C.CONTROL_DRAIN  # the loop returns once the ring is empty

    worker = W._SyncWorker(seat, bind_handler(noop), 0, os.getppid(), 60.0)
    down, up = seat.down.producer(), seat.up.consumer()

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        nonlocal handled
        handled = 0
        seat.counters[C.CONTROL] = 0
        up.get_many()  # the previous round's results
        for _ in range(DELIVERIES):
            assert down.ring.try_put(record)
        return (), {}

    benchmark.pedantic(worker.run, setup=setup, rounds=20)
    assert handled == DELIVERIES
    if benchmark.stats:
        benchmark.extra_info["cpu_us_per_message"] = round(
            benchmark.stats.stats.median / DELIVERIES * 1e6, 2
        )
