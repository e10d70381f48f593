"""The FIFO ordering rule's cost on the parent's CPU: arrive + succeeded for every message.

One round is 10,000 messages, each of a group drawn at random (seeded) from 1,000 groups (nearly
every arrival is its group's head and runs at once) or from 10 (a receive batch of 10 brings
several of a group: most arrivals wait, and each success hands the group to the next), arriving
in receive batches of 10 and succeeding in arrival order, as a drained FIFO queue would. Divide
the round's time by 10,000 for the cost per message (``extra_info`` has it).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from goraxfast.core.ordering import GroupOrder

MESSAGES = 10_000


def workload(groups: int) -> list[str]:
    rng = random.Random(7)
    return [f"group-{rng.randrange(groups):04d}" for _ in range(MESSAGES)]


def drain(groups: list[str]) -> int:
    """arrive() each receive batch of 10, then succeeded() each of it (the heads run first)."""
    order: GroupOrder[int] = GroupOrder()
    ran = 0
    for start in range(0, len(groups), 10):
        batch = range(start, start + 10)
        for key in batch:
            order.arrive(key, groups[key])
        for key in batch:
            order.succeeded(key)
            ran += 1
    assert len(order) == 0
    return ran


@pytest.mark.parametrize("groups", [1_000, 10])
def test_arrive_and_succeeded_per_message(benchmark: Any, groups: int) -> None:
    names = workload(groups)
    benchmark.group = f"GroupOrder: arrive + succeeded, {MESSAGES} messages"
    assert benchmark(drain, names) == MESSAGES
    if benchmark.stats is not None:  # None when benchmarks are disabled (make test runs it once)
        benchmark.extra_info["us_per_message"] = benchmark.stats.stats.median / MESSAGES * 1e6


def test_dict_floor_per_message(benchmark: Any) -> None:
    """The floor any per-message bookkeeping pays: one dict insert and one pop."""
    names = workload(1_000)

    def run() -> int:
        held: dict[int, str] = {}
        for start in range(0, MESSAGES, 10):
            for key in range(start, start + 10):
                held[key] = names[key]
            for key in range(start, start + 10):
                del held[key]
        return MESSAGES

    benchmark.group = f"GroupOrder: arrive + succeeded, {MESSAGES} messages"
    assert benchmark(run) == MESSAGES
