"""Recycling workers after so many messages or past a memory limit: the rule, table by table,
then the dispatcher's side with real shared-memory seats."""

from __future__ import annotations

import pytest
from engine_support import live_seats

from goraxfast.core import counters as C
from goraxfast.core.recycling import (
    MIB,
    NO_BUDGET_LIMIT,
    MemoryVerdict,
    memory_verdict,
    message_budget,
    reason_kind,
    recycle_reason,
)
from goraxfast.engine.recycler import Recycler, resident_bytes


@pytest.mark.parametrize(
    ("max_messages", "rand", "budget"),
    [
        (0, 0.5, NO_BUDGET_LIMIT),  # off: no worker ever reaches it
        (-1, 0.0, NO_BUDGET_LIMIT),
        (1000, 0.0, 1000),  # never before the limit
        (1000, 0.5, 1050),
        (1000, 0.999, 1099),  # never a tenth or more after it
        (5, 0.999, 5),  # a tenth of 5 rounds down: exactly 5
        (1, 0.7, 1),
    ],
)
def test_a_workers_budget_is_its_limit_plus_up_to_a_tenth(
    max_messages: int, rand: float, budget: int
) -> None:
    assert message_budget(max_messages, rand) == budget


def test_budgets_drawn_for_workers_forked_together_spread_over_the_tenth() -> None:
    budgets = {message_budget(10_000, i / 100) for i in range(100)}
    assert len(budgets) == 100 and min(budgets) == 10_000 and max(budgets) < 11_000


@pytest.mark.parametrize(
    ("rss_mib", "fresh_mib", "limit_mib", "verdict"),
    [
        (900, 50, 0, MemoryVerdict.KEEP),  # no limit
        (100, 50, 200, MemoryVerdict.KEEP),
        (199, 50, 200, MemoryVerdict.KEEP),
        (200, 50, 200, MemoryVerdict.RECYCLE),  # reached
        (800, 50, 200, MemoryVerdict.RECYCLE),
        (250, 250, 200, MemoryVerdict.LIMIT_BELOW_FRESH),  # fresh already over: a fork loop
        (250, 200, 200, MemoryVerdict.LIMIT_BELOW_FRESH),
    ],
)
def test_memory_is_judged_against_the_limit_and_the_workers_fresh_size(
    rss_mib: int, fresh_mib: int, limit_mib: int, verdict: MemoryVerdict
) -> None:
    assert memory_verdict(rss_mib * MIB, fresh_mib * MIB, limit_mib * MIB) is verdict


def test_the_reason_names_the_limit_and_the_figure_that_reached_it() -> None:
    assert recycle_reason(messages=1000, max_messages=1000) == (
        "ran 1000 messages (WORKER_MAX_MESSAGES=1000)"
    )
    assert recycle_reason(
        messages=7, max_messages=0, rss_bytes=300 * MIB, limit_bytes=256 * MIB
    ) == ("resident memory 300 MiB reached WORKER_MAX_MEMORY_MB=256 after 7 messages")


def test_resident_bytes_reads_a_live_process_and_none_for_a_gone_one() -> None:
    import os

    rss = resident_bytes(os.getpid())
    assert rss is not None and rss > 1 * MIB
    assert resident_bytes(2**22 + 12345) is None  # above pid_max's default: never a process


def test_a_seat_out_of_budget_is_told_to_exit_only_once_it_holds_nothing() -> None:
    recycler = Recycler(3, 0, rand=lambda: 0.0)
    with live_seats(1, cap=4, shallow_cap=4) as (seat,):
        recycler.fresh(seat)
        assert seat.budget == 3
        seat.budget, seat.slots = 0, {1}
        seat.seat.counters[C.STARTED] = 3
        recycler.spend(seat)
        assert seat.seat.counters[C.CONTROL] != C.CONTROL_DRAIN and not seat.recycling
        seat.slots.clear()
        recycler.spend(seat)
        assert seat.seat.counters[C.CONTROL] == C.CONTROL_DRAIN
        assert seat.recycling == "ran 3 messages (WORKER_MAX_MESSAGES=3)"
        assert (
            recycler.recycled(seat, seat.pid, clean_exit=True)
            == "ran 3 messages (WORKER_MAX_MESSAGES=3)"
        )
        assert recycler.counts == {"messages": 1, "memory": 0}


def test_a_recycling_worker_that_dies_instead_is_not_counted_as_recycled() -> None:
    recycler = Recycler(3, 0, rand=lambda: 0.0)
    with live_seats(1, cap=4, shallow_cap=4) as (seat,):
        recycler.fresh(seat)
        seat.budget = 0
        seat.seat.counters[C.STARTED] = 3
        recycler.spend(seat)
        assert recycler.recycled(seat, seat.pid, clean_exit=False) == ""
        assert recycler.counts == {"messages": 0, "memory": 0}
        assert not seat.recycling and not seat.recycling_reason


def test_a_worker_over_the_memory_limit_gets_no_more_work_and_is_told_to_exit_at_once() -> None:
    readings = {1000: [50 * MIB, 120 * MIB, 260 * MIB]}
    recycler = Recycler(0, 256, read_rss=lambda pid: readings[pid].pop(0))
    with live_seats(1, cap=4, shallow_cap=4) as (seat,):
        seat.ready = True
        recycler.fresh(seat)
        seat.slots = {7}
        recycler.check_memory([seat])  # fresh: 50 MiB
        recycler.check_memory([seat])  # 120 MiB
        assert seat.budget == NO_BUDGET_LIMIT
        recycler.check_memory([seat])  # 260 MiB: told at once, though it holds a delivery
        assert seat.budget == 0 and seat.seat.counters[C.CONTROL] == C.CONTROL_DRAIN
        assert "resident memory 260 MiB reached WORKER_MAX_MEMORY_MB=256" in seat.recycling
        assert recycler.recycled(seat, seat.pid, clean_exit=True).startswith(
            "resident memory 260 MiB"
        )
        assert recycler.counts == {"messages": 0, "memory": 1}


def test_a_memory_limit_below_a_fresh_worker_is_reported_once_and_not_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recycler = Recycler(0, 10, read_rss=lambda pid: 80 * MIB)
    with live_seats(2, cap=4, shallow_cap=4) as seats:
        for seat in seats:
            seat.ready = True
            recycler.fresh(seat)
        for _ in range(5):
            recycler.check_memory(seats)
        assert all(s.budget == NO_BUDGET_LIMIT and not s.recycling for s in seats)
    lines = [r.getMessage() for r in caplog.records if "WORKER_MAX_MEMORY_MB" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("WORKER_MAX_MEMORY_MB=10 is below what a fresh worker holds")


def test_the_fresh_size_is_read_when_the_worker_is_ready_not_at_the_first_check() -> None:
    readings = [60 * MIB, 900 * MIB]  # ready (after its init), then one message leaked 840 MiB
    recycler = Recycler(0, 512, read_rss=lambda pid: readings.pop(0))
    with live_seats(1, cap=4, shallow_cap=4) as (seat,):
        recycler.fresh(seat)
        seat.ready = True
        recycler.ready(seat)
        recycler.check_memory([seat])
        assert seat.budget == 0 and seat.recycling.startswith("resident memory 900 MiB")


def test_the_metric_label_of_a_reason_is_the_limit_it_names() -> None:
    assert reason_kind(recycle_reason(messages=5, max_messages=5)) == "messages"
    memory = recycle_reason(messages=5, max_messages=5, rss_bytes=9 * MIB, limit_bytes=8 * MIB)
    assert reason_kind(memory) == "memory"
