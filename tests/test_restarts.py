"""When a dead worker is replaced and when the engine gives up; how capacity is shared."""

from __future__ import annotations

import pytest

from goraxfast.core import counters as C
from goraxfast.core.records import (
    DELIVERY_DECODER,
    DELIVERY_ENCODER,
    RESULT_DECODER,
    RESULT_ENCODER,
    Delivery,
    Result,
)
from goraxfast.core.restarts import RestartPolicy, Verdict
from goraxfast.engine.workforce import split_capacity


def test_a_worker_that_ran_handlers_is_always_replaced() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=3)
    for now in (0.0, 0.1, 0.2, 0.3):
        policy.spawned(0, now)
        assert policy.exited(0, now + 0.01, started_any=True) is Verdict.RESPAWN


def test_a_worker_that_lived_long_enough_is_replaced_even_if_idle() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=1)
    policy.spawned(0, 0.0)
    assert policy.exited(0, 5.0, started_any=False) is Verdict.RESPAWN


def test_repeated_start_failures_give_up_after_the_limit() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=3)
    verdicts = []
    for i in range(3):
        policy.spawned(0, float(i))
        verdicts.append(policy.exited(0, i + 0.1, started_any=False))
    assert verdicts == [Verdict.RESPAWN, Verdict.RESPAWN, Verdict.GIVE_UP]


def test_a_successful_start_resets_the_failure_count() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=2)
    policy.spawned(0, 0.0)
    assert policy.exited(0, 0.1, started_any=False) is Verdict.RESPAWN
    policy.spawned(0, 1.0)
    assert policy.exited(0, 9.0, started_any=False) is Verdict.RESPAWN
    assert policy.start_failures(0) == 0


def test_seats_fail_independently() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=2)
    policy.spawned(0, 0.0)
    policy.spawned(1, 0.0)
    assert policy.exited(0, 0.1, started_any=False) is Verdict.RESPAWN
    assert policy.exited(1, 0.1, started_any=False) is Verdict.RESPAWN


@pytest.mark.parametrize(
    ("total", "workers", "caps"),
    [(10, 2, [5, 5]), (10, 3, [4, 3, 3]), (1, 1, [1]), (7, 7, [1] * 7)],
)
def test_concurrency_is_shared_evenly_among_workers(
    total: int, workers: int, caps: list[int]
) -> None:
    assert split_capacity(total, workers) == caps
    assert sum(split_capacity(total, workers)) == total


@pytest.mark.parametrize(
    ("duration_ns", "bucket"),
    [(0, 0), (500_000, 0), (500_001, 1), (10**12, len(C.LATENCY_BUCKETS_S))],
)
def test_durations_land_in_the_bucket_whose_bound_covers_them(
    duration_ns: int, bucket: int
) -> None:
    assert C.bucket_index(duration_ns) == bucket


def test_worker_totals_sum_blocks_and_make_cumulative_buckets() -> None:
    block = [0] * C.COUNTER_SLOTS
    block[C.SUCCEEDED] = 3
    block[C.HIST_BASE] = 2
    block[C.HIST_BASE + 2] = 1
    totals = C.WorkerTotals.zero()
    totals.add_block(block)
    totals.add_block(block)
    assert totals.counts["succeeded"] == 6
    assert totals.cumulative()[:3] == [4, 4, 6]


def test_ring_records_round_trip_with_binary_bodies() -> None:
    d = Delivery(7, "mid", 2, 123, 456, b'{"a":"\xc3\xa9"}')
    assert DELIVERY_DECODER.decode(DELIVERY_ENCODER.encode(d)) == d
    r = Result(7, 3, -1.0, "ValueError: x", 1500, 99)
    assert RESULT_DECODER.decode(RESULT_ENCODER.encode(r)) == r


def test_a_worker_that_never_got_past_its_init_failed_to_start_however_long_it_tried() -> None:
    policy = RestartPolicy(min_uptime_s=1.0, max_start_failures=2)
    policy.spawned(0, 0.0)
    assert policy.exited(0, 60.0, started_any=False, ready=False) is Verdict.RESPAWN
    policy.spawned(0, 60.0)
    assert policy.exited(0, 120.0, started_any=False, ready=False) is Verdict.GIVE_UP
