"""The ring's framing, read as a specification: what goes in comes out, in order, intact."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goraxfast.core.ring import (
    HEADER_BYTES,
    WRAP,
    RingConsumer,
    RingCorruptError,
    RingProducer,
    frame_bytes,
    reset_ring,
    ring_capacity_for,
    ring_region_bytes,
)

MiB = 1 << 20


def make_ring(capacity: int) -> tuple[memoryview, RingProducer, RingConsumer]:
    region = memoryview(bytearray(ring_region_bytes(capacity)))
    return region, RingProducer(region), RingConsumer(region)


def head_tail(region: memoryview) -> tuple[int, int]:
    idx = region[:HEADER_BYTES].cast("Q")
    return idx[0], idx[8]


def test_region_is_header_plus_capacity() -> None:
    assert ring_region_bytes(4096) == HEADER_BYTES + 4096


@pytest.mark.parametrize("capacity", [0, -8, 12, 4097])
def test_capacity_must_be_a_positive_multiple_of_8(capacity: int) -> None:
    with pytest.raises(ValueError):
        ring_region_bytes(capacity)


def test_endpoint_rejects_region_with_unaligned_capacity() -> None:
    with pytest.raises(ValueError):
        RingProducer(memoryview(bytearray(HEADER_BYTES + 12)))


@pytest.mark.parametrize(("payload", "frame"), [(0, 8), (1, 8), (4, 8), (5, 16), (12, 16)])
def test_frame_is_length_word_plus_payload_padded_to_8(payload: int, frame: int) -> None:
    assert frame_bytes(payload) == frame


def test_new_ring_is_empty() -> None:
    _, producer, consumer = make_ring(64)
    assert consumer.is_empty()
    assert consumer.get() is None
    assert consumer.get_many() == []
    assert producer.free_bytes() == 64


def test_record_round_trips_as_a_copy() -> None:
    _, producer, consumer = make_ring(64)
    assert producer.try_put(b"hello")
    assert not consumer.is_empty()
    got = consumer.get()
    assert got == b"hello"
    assert type(got) is bytes
    assert consumer.is_empty()


def test_records_come_out_in_order() -> None:
    _, producer, consumer = make_ring(256)
    for i in range(10):
        assert producer.try_put(bytes([i]) * i)
    assert consumer.get_many() == [bytes([i]) * i for i in range(10)]


def test_accepts_bytearray_and_memoryview_of_any_format() -> None:
    _, producer, consumer = make_ring(256)
    wide = memoryview(bytearray(range(16))).cast("I")
    assert producer.try_put(bytearray(b"ab"))
    assert producer.try_put(memoryview(b"cd"))
    assert producer.try_put(wide)
    assert consumer.get_many() == [b"ab", b"cd", bytes(range(16))]


def test_zero_length_records_take_one_frame_each() -> None:
    _, producer, consumer = make_ring(64)
    for _ in range(8):
        assert producer.try_put(b"")
    assert not producer.try_put(b"")
    assert consumer.get_many() == [b""] * 8


def test_full_ring_returns_false_then_accepts_after_a_get() -> None:
    _, producer, consumer = make_ring(64)
    assert producer.try_put(b"a" * 28)  # 32-byte frame
    assert producer.try_put(b"b" * 28)
    assert producer.free_bytes() == 0
    assert not producer.try_put(b"c")
    assert consumer.get() == b"a" * 28
    assert producer.try_put(b"c")
    assert consumer.get_many() == [b"b" * 28, b"c"]


def test_failed_put_leaves_the_ring_unchanged_when_no_wrap_is_involved() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 28)  # 0..32
    consumer.get()
    producer.try_put(b"b" * 20)  # 32..56
    producer.try_put(b"c" * 4)  # 56..64: next write at offset 0, 32 bytes free there
    before = head_tail(region)
    assert not producer.try_put(b"d" * 36)  # 40-byte frame
    assert head_tail(region) == before


def test_record_that_does_not_fit_before_the_end_wraps_behind_a_marker() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 36)  # frame 40: next write at offset 40
    assert consumer.get() == b"a" * 36
    assert producer.try_put(b"b" * 28)  # frame 32 > 24 left: marker at 40, record at 0
    data = region[HEADER_BYTES:].cast("I")
    assert data[40 // 4] == WRAP
    assert data[0] == 28
    assert head_tail(region) == (40 + 24 + 32, 40)
    assert consumer.get() == b"b" * 28
    assert consumer.is_empty()


def test_skipped_bytes_count_against_free_space() -> None:
    _, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 36)  # offset 0..40
    producer.try_put(b"")  # offset 40..48
    assert consumer.get() == b"a" * 36
    # 56 bytes free in total, but a 32-byte frame needs 16 skipped + 32 at the start = 48 > 40.
    assert producer.free_bytes() == 56
    assert producer.try_put(b"b" * 28)
    assert consumer.get_many() == [b"", b"b" * 28]


def test_lone_wrap_marker_is_published_so_the_next_try_can_use_the_whole_ring() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 28)  # offset 0..32
    producer.try_put(b"b" * 4)  # offset 32..40
    consumer.get_many()
    assert not producer.try_put(b"c" * 60)  # whole-ring frame: cannot fit at offset 40
    assert head_tail(region)[0] == 64  # but the 24-byte wrap was published
    assert consumer.get_many() == []  # the consumer steps over the marker
    assert producer.try_put(b"c" * 60)
    assert consumer.get() == b"c" * 60


def test_is_empty_steps_over_a_lone_wrap_marker() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 28)
    consumer.get()
    producer.try_put(b"b" * 60)  # only the marker goes in
    assert consumer.is_empty()
    assert head_tail(region) == (64, 64)


def test_max_record_bytes_is_the_data_area_minus_the_length_word() -> None:
    _, producer, consumer = make_ring(64)
    assert producer.max_record_bytes == consumer.max_record_bytes == 60
    assert producer.try_put(b"m" * 60)
    assert consumer.get() == b"m" * 60


def test_record_beyond_max_record_bytes_is_a_value_error() -> None:
    _, producer, _ = make_ring(64)
    with pytest.raises(ValueError):
        producer.try_put(b"m" * 61)


@pytest.mark.parametrize("offset", [0, 8, MiB // 2, MiB + 8, 2 * MiB - 8])
def test_largest_sqs_message_with_framing_fits_a_2_mib_ring_from_any_offset(offset: int) -> None:
    record = bytes(range(256)) * (MiB // 256) + b"framing-" * 8
    _, producer, consumer = make_ring(2 * MiB)
    if offset:
        producer.try_put(b"w" * (offset - 4))
        consumer.get_many()
    # At most one refusal: it publishes the wrap, after which the record goes in at offset 0.
    if not producer.try_put(record):
        assert consumer.get_many() == []
        assert producer.try_put(record)
    assert consumer.get_many() == [record]
    assert consumer.is_empty()


def test_ring_capacity_for_accepts_exactly_that_record() -> None:
    capacity = ring_capacity_for(MiB + 100)
    _, producer, _ = make_ring(capacity)
    assert producer.max_record_bytes >= MiB + 100
    assert producer.max_record_bytes - (MiB + 100) < 8


def test_put_many_puts_in_order_and_publishes_head_once() -> None:
    region, producer, consumer = make_ring(256)
    assert producer.try_put_many([b"a", b"", b"bc"]) == 3
    assert head_tail(region) == (24, 0)
    assert consumer.get_many() == [b"a", b"", b"bc"]


def test_put_many_stops_at_the_first_record_that_does_not_fit() -> None:
    _, producer, consumer = make_ring(64)
    assert producer.try_put_many([b"a" * 28, b"b" * 20, b"c" * 28, b"d"]) == 2
    assert consumer.get_many() == [b"a" * 28, b"b" * 20]


def test_put_many_publishes_a_lone_wrap_like_try_put() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"a" * 28)
    consumer.get()
    assert producer.try_put_many([b"c" * 60]) == 0
    assert head_tail(region)[0] == 64
    assert consumer.get_many() == []
    assert producer.try_put_many([b"c" * 60]) == 1


def test_put_many_publishes_the_records_before_an_oversized_one_then_raises() -> None:
    _, producer, consumer = make_ring(64)
    with pytest.raises(ValueError):
        producer.try_put_many([b"ok", b"x" * 61, b"never"])
    assert consumer.get_many() == [b"ok"]


def test_get_many_honours_limit_and_leaves_the_rest() -> None:
    _, producer, consumer = make_ring(256)
    for i in range(5):
        producer.try_put(bytes([i]))
    assert consumer.get_many(2) == [b"\x00", b"\x01"]
    assert consumer.get_many(0) == []
    assert consumer.get_many() == [b"\x02", b"\x03", b"\x04"]


def test_get_many_publishes_tail_once_per_batch() -> None:
    region, producer, consumer = make_ring(256)
    for _ in range(4):
        producer.try_put(b"1234")
    consumer.get_many()
    assert head_tail(region) == (32, 32)


def test_reset_empties_the_ring_and_resync_reattaches_endpoints() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"stale")
    reset_ring(region)
    assert head_tail(region) == (0, 0)
    producer.resync()
    consumer.resync()
    assert consumer.is_empty()
    assert producer.try_put(b"fresh")
    assert consumer.get_many() == [b"fresh"]


def test_fresh_endpoints_after_reset_see_an_empty_ring() -> None:
    region, producer, _ = make_ring(64)
    producer.try_put(b"stale")
    reset_ring(region)
    assert RingConsumer(region).is_empty()
    assert RingProducer(region).free_bytes() == 64


def test_garbage_length_word_raises_ring_corrupt() -> None:
    region, producer, consumer = make_ring(64)
    producer.try_put(b"abc")
    region[HEADER_BYTES:].cast("I")[0] = 1000
    with pytest.raises(RingCorruptError):
        consumer.get_many()


def test_release_lets_the_buffer_be_resized() -> None:
    buffer = bytearray(ring_region_bytes(64))
    region = memoryview(buffer)
    producer, consumer = RingProducer(region), RingConsumer(region)
    producer.release()
    consumer.release()
    region.release()
    buffer.extend(b"x")  # raises BufferError while any view is alive


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(min_value=0, max_value=300)),
        st.tuples(st.just("put_many"), st.integers(min_value=0, max_value=8)),
        st.tuples(st.just("get"), st.none() | st.integers(min_value=0, max_value=5)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.sampled_from([64, 128, 312, 1024]), script=ops)
def test_interleaved_puts_and_gets_deliver_every_accepted_record_once_in_order(
    capacity: int, script: list[tuple[str, int | None]]
) -> None:
    _, producer, consumer = make_ring(capacity)
    in_flight: deque[bytes] = deque()
    serial = 0
    for op, arg in script:
        if op == "put_many":
            assert arg is not None
            batch = [serial.to_bytes(4, "little") * (i * 7) for i in range(arg)]
            serial += 1
            batch = [r[: producer.max_record_bytes] for r in batch]
            accepted = producer.try_put_many(batch)
            in_flight.extend(batch[:accepted])
        elif op == "put":
            assert arg is not None
            size = min(arg, producer.max_record_bytes)
            record = (serial.to_bytes(4, "little") * (size // 4 + 1))[:size]
            serial += 1
            if producer.try_put(record):
                in_flight.append(record)
                continue
            assert producer.free_bytes() < capacity  # never refused by an empty ring...
            for _attempt in range(2):  # ...and accepted after at most two drains (one wraps)
                assert consumer.get_many() == list(in_flight)
                in_flight.clear()
                if producer.try_put(record):
                    in_flight.append(record)
                    break
            else:
                pytest.fail(f"a {size}-byte record never fit")
        else:
            got = consumer.get_many(arg)
            expected = [in_flight.popleft() for _ in range(len(got))]
            assert got == expected
            if arg is None:
                assert not in_flight
    assert consumer.get_many() == list(in_flight)
    assert consumer.is_empty()
    assert producer.free_bytes() == capacity
