"""Hand-off cost of 500-byte records: shared-memory ring vs multiprocessing.Queue vs os.pipe.

In one process (pytest-benchmark, one round = a batch of 100 records in and out):
    .venv/bin/pytest bench/test_ring_bench.py --benchmark-enable
Across processes (a forked producer, this process consuming; records/s printed):
    .venv/bin/python bench/test_ring_bench.py [records]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from goraxfast.core.ring import RingConsumer, RingProducer, ring_region_bytes
from goraxfast.ipc.rings import Doorbell, create_seats

RECORD = bytes(range(250)) * 2  # 500 bytes
BATCH = 100
RING_BYTES = 4 << 20


def _frame_batch(records: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(4, "little") + r for r in records)


def _split_frames(blob: bytes) -> list[bytes]:
    out, at, view = [], 0, memoryview(blob)
    while at < len(blob):
        n = int.from_bytes(view[at : at + 4], "little")
        out.append(view[at + 4 : at + 4 + n].tobytes())
        at += 4 + n
    return out


def test_ring_put_get_batched(benchmark: Any) -> None:
    region = memoryview(bytearray(ring_region_bytes(RING_BYTES)))
    producer, consumer = RingProducer(region), RingConsumer(region)

    def round_trip() -> list[bytes]:
        for _ in range(BATCH):
            producer.try_put(RECORD)
        return consumer.get_many()

    assert len(benchmark(round_trip)) == BATCH


def test_ring_put_many_get_batched(benchmark: Any) -> None:
    region = memoryview(bytearray(ring_region_bytes(RING_BYTES)))
    producer, consumer = RingProducer(region), RingConsumer(region)
    batch = [RECORD] * BATCH

    def round_trip() -> list[bytes]:
        producer.try_put_many(batch)
        return consumer.get_many()

    assert len(benchmark(round_trip)) == BATCH


def test_ring_channel_with_doorbell_batched(benchmark: Any) -> None:
    (seat,) = create_seats(1, RING_BYTES, counter_slots=0)
    producer, consumer = seat.up.producer(), seat.up.consumer()
    batch = [RECORD] * BATCH

    def round_trip() -> list[bytes]:
        producer.put_many(batch)
        producer.notify()
        consumer.wait(1.0)
        return consumer.get_many()

    assert len(benchmark(round_trip)) == BATCH
    seat.close()


@pytest.fixture
def mp_queue() -> Iterator[Any]:
    queue: Any = multiprocessing.get_context("fork").Queue()
    yield queue
    queue.close()
    queue.join_thread()


def test_multiprocessing_queue_put_get(benchmark: Any, mp_queue: Any) -> None:
    def round_trip() -> list[bytes]:
        for _ in range(BATCH):
            mp_queue.put(RECORD)
        return [mp_queue.get() for _ in range(BATCH)]

    assert len(benchmark(round_trip)) == BATCH


def test_pipe_write_read_batched(benchmark: Any) -> None:
    read_fd, write_fd = os.pipe()

    def round_trip() -> list[bytes]:
        blob = _frame_batch([RECORD] * BATCH)  # ~50 KB: under the 64 KiB pipe buffer
        os.write(write_fd, blob)
        got = b""
        while len(got) < len(blob):
            got += os.read(read_fd, len(blob) - len(got))
        return _split_frames(got)

    assert len(benchmark(round_trip)) == BATCH
    os.close(read_fd)
    os.close(write_fd)


# --- across processes --------------------------------------------------------------------------


def _fork(child: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    return pid


def ring_cross_process(count: int, *, put_many: bool = True) -> float:
    """Records/s from a forked producer through a seat's up channel, one wake-up per 64."""
    (seat,) = create_seats(1, RING_BYTES, counter_slots=0)
    space, go = Doorbell(), Doorbell()

    def child() -> None:
        up = seat.up.producer()
        go.wait(10.0)
        sent = 0
        while sent < count:  # bursts of up to 64, one wake-up each
            burst = [RECORD] * min(64, count - sent)
            if put_many:
                sent += up.put_many(burst)
            else:
                for record in burst:
                    if not up.put(record):
                        break
                    sent += 1
            up.notify()
            if up.free_bytes() < 64 * 512:
                space.wait(1.0)

    pid = _fork(child)
    consumer = seat.up.consumer()
    got = 0
    started = time.perf_counter()
    go.ring()
    while got < count:
        consumer.wait(1.0)
        got += len(consumer.get_many())
        space.ring()
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    seat.close()
    return count / elapsed


def ring_cross_process_per_record(count: int) -> float:
    return ring_cross_process(count, put_many=False)


def queue_cross_process(count: int) -> float:
    """Records/s from a forked producer through a multiprocessing.Queue (one put per record)."""
    queue: Any = multiprocessing.get_context("fork").Queue(maxsize=10_000)
    go = Doorbell()

    def child() -> None:
        go.wait(10.0)
        for _ in range(count):
            queue.put(RECORD)
        queue.close()
        queue.join_thread()

    pid = _fork(child)
    started = time.perf_counter()
    go.ring()
    for _ in range(count):
        queue.get()
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    return count / elapsed


def pipe_cross_process(count: int) -> float:
    """Records/s from a forked producer writing framed batches of 64 records to a pipe."""
    read_fd, write_fd = os.pipe()
    go = Doorbell()

    def child() -> None:
        os.close(read_fd)
        go.wait(10.0)
        blob = _frame_batch([RECORD] * 64)
        sent = 0
        while sent < count:
            n = min(64, count - sent)
            os.write(write_fd, blob if n == 64 else _frame_batch([RECORD] * n))
            sent += n

    pid = _fork(child)
    os.close(write_fd)
    got, pending = 0, b""
    started = time.perf_counter()
    go.ring()
    while got < count:
        pending += os.read(read_fd, 1 << 20)
        whole = len(pending) - len(pending) % (4 + len(RECORD))
        got += len(_split_frames(pending[:whole]))
        pending = pending[whole:]
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    os.close(read_fd)
    return count / elapsed


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 1_000_000
    print(f"{count} records of {len(RECORD)} bytes, forked producer -> this process")
    for name, run in [
        ("ring, put_many", ring_cross_process),
        ("ring, put per record", ring_cross_process_per_record),
        ("os.pipe, batches of 64", pipe_cross_process),
        ("multiprocessing.Queue", queue_cross_process),
    ]:
        rates = sorted(run(count) for _ in range(3))
        print(f"  {name:30s} median {rates[1] / 1e6:.2f} M records/s (of 3 runs)")


if __name__ == "__main__":
    main(sys.argv)
