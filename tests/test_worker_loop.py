"""The sync worker's loop, run in a thread of the test process over a real seat (shared memory,
rings, eventfd doorbells): what the parent sees, and when it is told.

The engine's tests fork real workers; these pin down the loop's promises that an end-to-end run
would only show as a delay: results are announced while the worker is still busy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from goraxfast import worker as W
from goraxfast.core import counters as C
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.records import DELIVERY_ENCODER, RESULT_DECODER, Delivery
from goraxfast.handler import bind_handler
from goraxfast.shm import Seat, create_seats

WAIT_S = 10.0  # liveness bound only: every wait below ends at once when the code is right


@pytest.fixture
def seat() -> Iterator[Seat]:
    [made] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
    yield made


def deliver(seat: Seat, *execution_ids: str) -> None:
    producer = seat.down.producer()
    for slot, execution_id in enumerate(execution_ids, start=1):
        msg = ExecutionMessage.new(
            tenant_id="t",
            workflow_id="w",
            workflow_version=1,
            trigger_type="test",
            execution_id=execution_id,
        )
        body = encode_message(msg)
        assert producer.put(DELIVERY_ENCODER.encode(Delivery(slot, execution_id, 1, 0, 0, body)))
    producer.notify()


def test_a_long_handlers_result_is_announced_before_the_next_handler_ends(seat: Seat) -> None:
    """A quick message, then one over NOTIFY_EVERY_NS, then one that runs until released: the
    second result must wake the parent while the third handler still runs."""
    release = threading.Event()

    def handler(msg: ExecutionMessage) -> None:
        if msg.execution_id == "long":
            release.wait(0.05)  # well over the 1 ms notify interval
        elif msg.execution_id == "blocking":
            assert release.wait(WAIT_S)

    worker = W._SyncWorker(seat, bind_handler(handler), 0, os.getppid(), 60.0)
    deliver(seat, "quick", "long", "blocking")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    up = seat.up.consumer()
    doorbell = seat.up.doorbell
    seen: list[int] = []
    try:
        while 2 not in seen:
            assert doorbell.wait(WAIT_S), f"no wake-up for the long handler's result: {seen}"
            seen += [RESULT_DECODER.decode(raw).slot for raw in up.get_many()]
        assert 3 not in seen  # the third handler is still running
    finally:
        release.set()
        seat.counters[C.CONTROL] = C.CONTROL_DRAIN
        seat.down.producer().notify()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    seen += [RESULT_DECODER.decode(raw).slot for raw in up.get_many()]
    assert seen == [1, 2, 3]
    assert seat.counters[C.SUCCEEDED] == 3 and seat.counters[C.STARTED] == 3
