"""How the dispatcher hands deliveries to workers: in runs for short handlers, dealt for long.

Real shared-memory seats and the real dispatcher, no workers: each test reads what landed in
which worker's ring. The acker is never reached by a pump, so its data plane is a stub.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from engine_support import live_seats

from goraxfast.core import counters as C
from goraxfast.core.acks import AckBatcher
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.records import DELIVERY_DECODER, RESULT_ENCODER, Result
from goraxfast.core.recycling import NO_BUDGET_LIMIT
from goraxfast.core.retry import Outcome, RetryPolicy
from goraxfast.core.sqs_model import ReceivedMessage
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.seats import SeatState

SHORT_NS = 5_000  # a no-op handler
LONG_NS = 2_000_000_000  # a two-second job


@pytest.fixture
def seats() -> Iterator[list[SeatState]]:
    with live_seats(2, cap=10, shallow_cap=1) as states:
        yield states


def dispatcher(seats: list[SeatState]) -> Dispatcher:
    acker = Acker(
        AckBatcher(),
        object(),
        queue_url="q",
        dlq_url="",
        clock=time.monotonic,  # type: ignore[arg-type]
    )
    return Dispatcher(
        seats=seats,
        acker=acker,
        leases=LeaseBook(30),
        limiter=TenantLimiter(100, max_waiting_per_tenant=100, max_waiting_total=100),
        policy=RetryPolicy(),
        clock=time.monotonic,
        queue_url="q",
        throttle_release_delay_s=5,
    )


def receive(d: Dispatcher, count: int) -> None:
    body = encode_message(
        ExecutionMessage.new(tenant_id="t", workflow_id="w", workflow_version=1, trigger_type="x")
    )
    d.on_received([ReceivedMessage(f"m{i}", f"rh{i}", body, 1, 0, 0, {}) for i in range(count)])


def held_by_seat(seats: list[SeatState]) -> list[int]:
    return [len(s.slots) for s in seats]


def test_before_any_handler_finished_deliveries_are_dealt_one_per_worker(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    receive(d, 10)
    assert held_by_seat(seats) == [1, 1]  # the shallow share: the rest wait in the parent
    assert len(d.ready) == 8


def test_short_handlers_get_a_whole_receive_in_one_worker(seats: list[SeatState]) -> None:
    d = dispatcher(seats)
    d.bursts.observe(SHORT_NS)
    receive(d, 10)
    assert sorted(held_by_seat(seats)) == [0, 10]
    assert not d.ready


def test_long_handlers_are_dealt_to_the_least_loaded_worker_and_held_back_beyond(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    d.bursts.observe(LONG_NS)
    receive(d, 4)
    assert held_by_seat(seats) == [1, 1]
    assert len(d.ready) == 2  # not queued behind a two-second job in a worker's ring


def test_a_worker_still_in_its_init_gets_nothing_until_it_is_ready(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    seats[1].seat.counters[C.PID] = 0  # worker 1 is still loading its model
    d.bursts.observe(LONG_NS)
    receive(d, 4)
    assert held_by_seat(seats) == [1, 0]
    seats[1].seat.counters[C.PID] = seats[1].pid
    assert d.on_results(seats[1]) == 0  # its wake-up with an empty ring
    assert held_by_seat(seats) == [1, 1]


def test_a_worker_is_given_no_more_than_its_recycling_budget(seats: list[SeatState]) -> None:
    d = dispatcher(seats)
    d.bursts.observe(SHORT_NS)
    seats[0].budget, seats[1].budget = 3, 4
    receive(d, 10)
    assert sorted(held_by_seat(seats)) == [3, 4] and len(d.ready) == 3  # the rest wait
    assert [s.budget for s in seats] == [0, 0]


def test_without_a_recycling_limit_the_budget_never_holds_a_worker_back(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    d.bursts.observe(SHORT_NS)
    receive(d, 10)
    assert sorted(held_by_seat(seats)) == [0, 10]
    assert sorted(s.budget for s in seats) == [NO_BUDGET_LIMIT - 10, NO_BUDGET_LIMIT]


def test_a_worker_out_of_budget_is_reported_spent_once_its_last_result_is_in(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    d.bursts.observe(SHORT_NS)
    spent: list[int] = []
    d.on_spent = lambda seat: spent.append(seat.index)
    seats[0].budget = 2
    seats[1].seat.counters[C.PID] = 0  # still in its init: everything goes to worker 0
    receive(d, 4)
    assert held_by_seat(seats) == [2, 0] and len(d.ready) == 2
    taken = [DELIVERY_DECODER.decode(r) for r in seats[0].seat.down.consumer().get_many()]
    up = seats[0].seat.up.producer()
    assert up.put(RESULT_ENCODER.encode(Result(taken[0].slot, int(Outcome.SUCCESS))))
    assert d.on_results(seats[0]) == 1
    assert spent == []  # it still holds one
    assert up.put(RESULT_ENCODER.encode(Result(taken[1].slot, int(Outcome.SUCCESS))))
    assert d.on_results(seats[0]) == 1
    assert spent == [0] and held_by_seat(seats) == [0, 0]
    assert len(d.ready) == 2  # waiting for a worker that may take them, not given to worker 0


def test_what_a_recycled_worker_hands_back_unstarted_goes_to_another_worker_not_to_sqs(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)
    d.bursts.observe(SHORT_NS)
    seats[1].seat.counters[C.PID] = 0  # still in its init
    receive(d, 4)
    assert held_by_seat(seats) == [4, 0]
    seats[0].budget, seats[0].recycling_reason = 0, "resident memory over the limit"
    taken = [DELIVERY_DECODER.decode(r) for r in seats[0].seat.down.consumer().get_many()]
    up = seats[0].seat.up.producer()
    assert up.put(RESULT_ENCODER.encode(Result(taken[0].slot, int(Outcome.SUCCESS))))
    for t in taken[1:]:  # what a draining worker writes for each delivery it never started
        assert up.put(RESULT_ENCODER.encode(Result(t.slot, int(Outcome.RELEASED))))
    seats[1].seat.counters[C.PID] = seats[1].pid  # the other worker is ready now
    assert d.on_results(seats[0]) == 4
    assert held_by_seat(seats) == [0, 3]
    assert d.counters.released == 0 and d.acker.pending == 1  # one delete, no visibility change
    assert sorted(seats[1].slots) == sorted(t.slot for t in taken[1:])
