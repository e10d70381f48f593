"""What counts as an attempt when a worker dies: one row per case."""

from __future__ import annotations

import pytest

from goraxfast.core.retry import Outcome
from goraxfast.core.worker_loss import ALL_SLOTS, NOT_TIMED_OUT, lost_outcome

ROWS = [
    # slot, started, timed_out_slot, forced -> outcome
    (
        "never taken off the ring: released, no attempt",
        7,
        False,
        NOT_TIMED_OUT,
        False,
        Outcome.RELEASED,
    ),
    ("never taken, even when forced: released", 7, False, NOT_TIMED_OUT, True, Outcome.RELEASED),
    ("never taken, worker killed for another slot's timeout", 7, False, 3, False, Outcome.RELEASED),
    ("started, worker crashed: a crashed attempt", 7, True, NOT_TIMED_OUT, False, Outcome.CRASH),
    ("started, killed for this slot's timeout", 7, True, 7, False, Outcome.TIMEOUT),
    ("started, killed for another slot's timeout: crashed", 7, True, 3, False, Outcome.CRASH),
    (
        "started, killed for a blocked event loop: every slot timed out",
        7,
        True,
        ALL_SLOTS,
        False,
        Outcome.TIMEOUT,
    ),
    ("started, forced stop: left to the visibility timeout", 7, True, NOT_TIMED_OUT, True, None),
    ("started, forced stop while timing out: still left alone", 7, True, 7, True, None),
]


@pytest.mark.parametrize(
    ("slot", "started", "timed_out_slot", "forced", "expected"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_a_lost_delivery_is_settled_by_the_table(
    slot: int, started: bool, timed_out_slot: int, forced: bool, expected: Outcome | None
) -> None:
    assert (
        lost_outcome(slot, started=started, timed_out_slot=timed_out_slot, forced=forced)
        is expected
    )


def test_only_a_started_delivery_counts_as_an_attempt() -> None:
    attempts = {Outcome.CRASH, Outcome.TIMEOUT}
    for _, slot, started, timed_out_slot, forced, _expected in ROWS:
        outcome = lost_outcome(slot, started=started, timed_out_slot=timed_out_slot, forced=forced)
        assert (outcome in attempts) <= started
