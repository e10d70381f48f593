"""Shared memory and doorbells across real forks: records arrive in order, intact, and wake-ups
reach both a blocking waiter and an event loop. Every child ends with os._exit and is reaped."""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import sys
import traceback
import zlib
from collections.abc import Callable, Iterator

import pytest
import uvloop

from goraxfast.ipc.rings import Doorbell, Seat, SharedRegion, create_seats, fence

HANG_GUARD_S = 20.0  # only ever reached when something is broken


class Children:
    """Forks children that run a function and report through their exit code."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def fork(self, child: Callable[[], int]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 70
            try:
                code = child()
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(code)
        self.pids.append(pid)
        return pid

    def join(self, pid: int) -> int:
        """The child's exit code; a child still running after the hang guard is killed."""
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], HANG_GUARD_S)
            if not ready:
                os.kill(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self.pids.remove(pid)
        return os.waitstatus_to_exitcode(status)

    def kill_all(self) -> None:
        for pid in list(self.pids):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.pids.remove(pid)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.kill_all()


@pytest.fixture
def seat() -> Iterator[Seat]:
    (one,) = create_seats(1, ring_bytes=64 * 1024, counter_slots=4)
    yield one
    one.close()


def make_record(rng: random.Random, serial: int) -> bytes:
    payload = rng.randbytes(rng.choice((0, 1, 7, 8, rng.randrange(2048), rng.randrange(9000))))
    return serial.to_bytes(8, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload


def check_record(record: bytes, serial: int) -> None:
    assert int.from_bytes(record[:8], "little") == serial
    assert int.from_bytes(record[8:12], "little") == zlib.crc32(record[12:])


def test_records_from_a_child_arrive_in_order_and_intact(seat: Seat, children: Children) -> None:
    count, seed = 20_000, 1234
    space = Doorbell()

    def producer_child() -> int:
        up = seat.up.producer()
        rng = random.Random(seed)
        for serial in range(count):
            record = make_record(rng, serial)
            while not up.put(record):
                space.wait(1.0)
            if serial % 32 == 31:
                up.notify()
        up.notify()
        return 0

    pid = children.fork(producer_child)
    rng = random.Random(seed)
    consumer = seat.up.consumer()
    received = 0
    while received < count:
        assert consumer.wait(HANG_GUARD_S), f"stalled after {received} records"
        for record in consumer.get_many():
            assert record == make_record(rng, received)
            received += 1
        space.ring()
    assert children.join(pid) == 0
    assert consumer.is_empty()
    space.close()


def test_both_directions_at_once_echo_every_record(seat: Seat, children: Children) -> None:
    count, window = 5_000, 64  # 64 frames of <= 512 bytes always fit the 64 KiB up ring

    def echo_child() -> int:
        down, up = seat.down.consumer(), seat.up.producer()
        echoed = 0
        while echoed < count:
            if not down.wait(HANG_GUARD_S):
                return 3
            for record in down.get_many():
                if not up.put(record[::-1]):
                    return 4
                echoed += 1
            up.notify()
        return 0

    pid = children.fork(echo_child)
    down, up = seat.down.producer(), seat.up.consumer()
    rng = random.Random(99)
    sent: list[bytes] = []
    received = 0
    while received < count:
        while len(sent) < count and len(sent) - received < window:
            record = rng.randbytes(rng.randrange(500))
            assert down.put(record)
            sent.append(record)
        down.notify()
        assert up.wait(HANG_GUARD_S), f"stalled after {received} echoes"
        for reply in up.get_many():
            assert reply == sent[received][::-1]
            received += 1
    assert children.join(pid) == 0


@pytest.mark.parametrize("pipe", [False, True], ids=["eventfd", "pipe"])
def test_doorbell_rung_by_a_child_wakes_the_parent_wait(children: Children, pipe: bool) -> None:
    bell = Doorbell(pipe=pipe)

    def child() -> int:
        bell.ring()
        return 0

    pid = children.fork(child)
    assert bell.wait(HANG_GUARD_S)
    assert children.join(pid) == 0
    bell.close()


@pytest.mark.parametrize("pipe", [False, True], ids=["eventfd", "pipe"])
def test_doorbell_wait_times_out_unrung_and_is_drained_after_a_wake(pipe: bool) -> None:
    bell = Doorbell(pipe=pipe)
    assert not bell.wait(0)
    bell.ring()
    bell.ring()
    assert bell.wait(0)
    assert not bell.wait(0)
    bell.close()


@pytest.mark.parametrize("pipe", [False, True], ids=["eventfd", "pipe"])
def test_doorbell_drain_clears_a_ring(pipe: bool) -> None:
    bell = Doorbell(pipe=pipe)
    bell.ring()
    bell.drain()
    bell.drain()  # draining an unrung doorbell does not block
    assert not bell.wait(0)
    bell.close()


def test_pipe_doorbell_rung_many_times_never_blocks_the_ringer() -> None:
    bell = Doorbell(pipe=True)
    for _ in range(100_000):  # more than a pipe buffer holds
        bell.ring()
    assert bell.wait(0)
    assert not bell.wait(0)
    bell.close()


def test_counters_written_by_a_child_are_read_by_the_parent(seat: Seat, children: Children) -> None:
    def child() -> int:
        for slot in range(seat.counter_slots):
            seat.counters[slot] = (slot + 1) * 1_000_000_007
        fence()
        seat.up.producer().notify()
        return 0

    pid = children.fork(child)
    assert seat.up.consumer().wait(HANG_GUARD_S)
    assert children.join(pid) == 0
    assert list(seat.counters) == [(s + 1) * 1_000_000_007 for s in range(4)]


def test_shared_region_is_shared_with_a_forked_child(children: Children) -> None:
    region = SharedRegion(4096)

    def child() -> int:
        region.view[100:105] = b"child"
        return 0

    assert children.join(children.fork(child)) == 0
    assert bytes(region.view[100:105]) == b"child"
    region.close()


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_event_loop_reader_on_the_up_doorbell_fires_when_a_child_rings(
    seat: Seat, children: Children, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    def child() -> int:  # forked before any loop exists, as the engine does
        if not seat.down.consumer().wait(HANG_GUARD_S):
            return 3
        up = seat.up.producer()
        up.put(b"hello from the child")
        up.notify()
        return 0

    pid = children.fork(child)

    async def parent() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[list[bytes]] = loop.create_future()
        up = seat.up.consumer()

        def on_readable() -> None:
            up.clear()
            records = up.get_many()
            if records and not got.done():
                got.set_result(records)

        loop.add_reader(up.fileno(), on_readable)
        try:
            seat.down.producer().notify()  # the go signal: the reader is in place
            return await asyncio.wait_for(got, HANG_GUARD_S)
        finally:
            loop.remove_reader(up.fileno())

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(parent()) == [b"hello from the child"]
    assert children.join(pid) == 0


def test_refused_put_wakes_the_consumer_for_what_was_already_put(seat: Seat) -> None:
    producer, consumer = seat.down.producer(), seat.down.consumer()
    record = b"x" * 1000
    while producer.put(record):
        pass
    assert seat.down.doorbell.wait(0)  # nobody called notify(), yet the consumer is woken
    assert len(consumer.get_many()) == 64 * 1024 // 1008


def test_refused_put_many_wakes_the_consumer_too(seat: Seat) -> None:
    producer = seat.down.producer()
    batch = [b"x" * 1000] * 100
    assert producer.put_many(batch) == 65
    assert seat.down.doorbell.wait(0)
    assert len(seat.down.consumer().get_many()) == 65


def test_seat_reset_empties_rings_zeroes_counters_and_resyncs_endpoints(seat: Seat) -> None:
    producer, consumer = seat.up.producer(), seat.up.consumer()
    producer.put(b"from the dead worker")
    producer.notify()
    seat.counters[0] = 7
    seat.reset()
    assert consumer.get_many() == []
    assert not seat.up.doorbell.wait(0)
    assert list(seat.counters) == [0, 0, 0, 0]
    assert producer.put(b"from the replacement")
    assert consumer.get_many() == [b"from the replacement"]


def test_seats_do_not_share_memory_or_doorbells() -> None:
    first, second = create_seats(2, ring_bytes=4096, counter_slots=2)
    first.down.producer().put(b"first")
    first.counters[1] = 5
    assert second.down.consumer().get_many() == []
    assert list(second.counters) == [0, 0]
    assert len({s.down.doorbell.fileno() for s in (first, second)}) == 2
    first.close()
    second.close()


def test_channel_endpoints_are_created_once(seat: Seat) -> None:
    assert seat.down.producer() is seat.down.producer()
    assert seat.up.consumer() is seat.up.consumer()


def test_seat_close_unmaps_after_use() -> None:
    (one,) = create_seats(1, ring_bytes=4096, counter_slots=1)
    one.down.producer().put(b"x")
    one.down.consumer().get_many()
    one.close()  # would raise BufferError if any view into the mapping were left
    with pytest.raises(ValueError):
        one.counters[0]
