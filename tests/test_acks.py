"""The ack batcher: batches by size or age, kinds kept apart, one ack per delivery."""

from __future__ import annotations

import pytest

from goraxfast.core.acks import AckBatch, AckBatcher, AckEntry, AckKind

DELETE, VISIBILITY, DEAD_LETTER = AckKind.DELETE, AckKind.VISIBILITY, AckKind.DEAD_LETTER


def entry(key: int, timeout_s: int = 0, handle: str | None = None) -> AckEntry:
    return AckEntry(key, handle or f"rh-{key}", visibility_timeout_s=timeout_s)


def keys(batches: list[AckBatch]) -> list[tuple[AckKind, list[int]]]:
    return [(b.kind, [e.key for e in b.entries]) for b in batches]


def test_nothing_pending_means_nothing_due_and_no_deadline() -> None:
    batcher = AckBatcher()
    assert batcher.due(100.0) == []
    assert batcher.flush() == []
    assert batcher.next_deadline() is None
    assert batcher.pending() == 0


def test_ten_entries_make_a_batch_at_once() -> None:
    batcher = AckBatcher(max_batch=10, max_age_s=5.0)
    for key in range(10):
        batcher.add(DELETE, entry(key), now=0.0)
    assert keys(batcher.due(0.0)) == [(DELETE, list(range(10)))]
    assert batcher.pending() == 0


def test_full_batches_leave_the_young_remainder_pending() -> None:
    batcher = AckBatcher(max_batch=10, max_age_s=5.0)
    for key in range(23):
        batcher.add(DELETE, entry(key), now=0.0)
    assert keys(batcher.due(1.0)) == [(DELETE, list(range(10))), (DELETE, list(range(10, 20)))]
    assert batcher.pending() == 3


@pytest.mark.parametrize(
    ("added_at", "now", "is_due"),
    [(0.0, 0.0, False), (0.0, 0.019, False), (0.0, 0.02, True), (1.0, 1.5, True)],
)
def test_partial_batch_is_due_once_its_oldest_entry_is_max_age_old(
    added_at: float, now: float, is_due: bool
) -> None:
    batcher = AckBatcher(max_batch=10, max_age_s=0.02)
    batcher.add(DELETE, entry(1), now=added_at)
    assert bool(batcher.due(now)) is is_due


def test_age_is_judged_by_the_oldest_entry_and_takes_the_whole_partial_batch() -> None:
    batcher = AckBatcher(max_batch=10, max_age_s=1.0)
    batcher.add(DELETE, entry(1), now=0.0)
    batcher.add(DELETE, entry(2), now=0.9)
    assert keys(batcher.due(1.0)) == [(DELETE, [1, 2])]


def test_max_age_zero_makes_every_entry_due_at_once() -> None:
    batcher = AckBatcher(max_age_s=0.0)
    batcher.add(VISIBILITY, entry(1, 30), now=5.0)
    assert batcher.next_deadline() == 5.0
    assert keys(batcher.due(5.0)) == [(VISIBILITY, [1])]


def test_next_deadline_is_the_oldest_partial_batch_plus_max_age() -> None:
    batcher = AckBatcher(max_age_s=0.5)
    batcher.add(DELETE, entry(1), now=2.0)
    batcher.add(VISIBILITY, entry(2, 30), now=1.0)
    assert batcher.next_deadline() == 1.5
    assert keys(batcher.due(1.5)) == [(VISIBILITY, [2])]
    assert batcher.next_deadline() == 2.5


def test_next_deadline_of_a_full_batch_is_already_past() -> None:
    batcher = AckBatcher(max_batch=2, max_age_s=10.0)
    batcher.add(DELETE, entry(1), now=3.0)
    batcher.add(DELETE, entry(2), now=4.0)
    assert batcher.next_deadline() == 3.0


def test_flush_returns_everything_in_batches_of_at_most_max_batch() -> None:
    batcher = AckBatcher(max_batch=10, max_age_s=60.0)
    for key in range(12):
        batcher.add(DELETE, entry(key), now=0.0)
    batcher.add(DEAD_LETTER, entry(100), now=0.0)
    assert keys(batcher.flush()) == [
        (DELETE, list(range(10))),
        (DELETE, [10, 11]),
        (DEAD_LETTER, [100]),
    ]
    assert batcher.pending() == 0


def test_kinds_are_batched_apart() -> None:
    batcher = AckBatcher(max_age_s=0.0)
    batcher.add(DELETE, entry(1), now=0.0)
    batcher.add(VISIBILITY, entry(2, 30), now=0.0)
    batcher.add(DEAD_LETTER, entry(3), now=0.0)
    assert keys(batcher.due(0.0)) == [(DELETE, [1]), (VISIBILITY, [2]), (DEAD_LETTER, [3])]


def test_pending_by_kind_counts_every_kind() -> None:
    batcher = AckBatcher()
    batcher.add(DELETE, entry(1), now=0.0)
    batcher.add(DELETE, entry(2), now=0.0)
    batcher.add(VISIBILITY, entry(3, 30), now=0.0)
    assert batcher.pending_by_kind() == {DELETE: 2, VISIBILITY: 1, DEAD_LETTER: 0}
    assert batcher.pending() == 3


def test_newer_visibility_replaces_older_but_keeps_its_place_and_age() -> None:
    batcher = AckBatcher(max_age_s=1.0)
    batcher.add(VISIBILITY, entry(1, 30), now=0.0)
    batcher.add(VISIBILITY, entry(2, 30), now=0.5)
    batcher.add(VISIBILITY, entry(1, 90), now=0.9)
    (batch,) = batcher.due(1.0)
    assert [(e.key, e.visibility_timeout_s) for e in batch.entries] == [(1, 90), (2, 30)]


def test_delete_removes_a_pending_visibility_change() -> None:
    batcher = AckBatcher()
    batcher.add(VISIBILITY, entry(1, 30), now=0.0)
    batcher.add(DELETE, entry(1), now=0.1)
    assert keys(batcher.flush()) == [(DELETE, [1])]


def test_visibility_after_a_pending_delete_is_dropped() -> None:
    batcher = AckBatcher()
    batcher.add(DELETE, entry(1), now=0.0)
    batcher.add(VISIBILITY, entry(1, 30), now=0.1)
    assert keys(batcher.flush()) == [(DELETE, [1])]


@pytest.mark.parametrize("kind", [DELETE, DEAD_LETTER])
def test_the_same_delivery_twice_is_kept_once(kind: AckKind) -> None:
    batcher = AckBatcher()
    batcher.add(kind, entry(1), now=0.0)
    batcher.add(kind, entry(1), now=0.1)
    assert keys(batcher.flush()) == [(kind, [1])]


def test_a_reused_key_with_another_receipt_handle_is_another_delivery() -> None:
    batcher = AckBatcher()
    batcher.add(VISIBILITY, entry(7, 120, handle="first"), now=0.0)
    batcher.add(DELETE, entry(7, handle="second"), now=0.1)
    batcher.add(DELETE, entry(7, handle="third"), now=0.2)
    assert [(b.kind, [e.receipt_handle for e in b.entries]) for b in batcher.flush()] == [
        (DELETE, ["second", "third"]),
        (VISIBILITY, ["first"]),
    ]


def test_a_batch_never_holds_one_delivery_twice() -> None:
    batcher = AckBatcher(max_batch=10)
    for round_ in range(5):
        for key in range(8):
            batcher.add(VISIBILITY, entry(key, 30 + round_), now=float(round_))
    for batch in batcher.flush():
        deliveries = [(e.key, e.receipt_handle) for e in batch.entries]
        assert len(deliveries) == len(set(deliveries))


def test_a_retried_entry_keeps_its_payload_and_attempts() -> None:
    batcher = AckBatcher(max_age_s=0.0)
    retried = AckEntry(4, "rh-4", payload={"reason": "poison"}, attempts=2)
    batcher.add(DEAD_LETTER, retried, now=0.0)
    assert batcher.due(0.0) == [AckBatch(DEAD_LETTER, (retried,))]


@pytest.mark.parametrize(("max_batch", "max_age_s"), [(0, 0.02), (11, 0.02), (10, -1.0)])
def test_rejects_settings_outside_sqs_limits(max_batch: int, max_age_s: float) -> None:
    with pytest.raises(ValueError):
        AckBatcher(max_batch=max_batch, max_age_s=max_age_s)


def test_add_says_to_wake_the_sender_only_when_something_became_due_sooner() -> None:
    b = AckBatcher(max_batch=3, max_age_s=0.02)
    assert b.add(AckKind.DELETE, entry(1), now=0.0) is True  # first of its kind: a new deadline
    assert b.add(AckKind.DELETE, entry(2), now=0.0) is False  # joins the pending batch
    assert b.add(AckKind.DELETE, entry(3), now=0.0) is True  # the batch is full: due now
    assert b.add(AckKind.DELETE, entry(3), now=0.0) is False  # a duplicate changes nothing
    assert b.add(AckKind.VISIBILITY, entry(9, 30), now=0.0) is True
    assert b.add(AckKind.VISIBILITY, entry(9, 60), now=0.0) is False  # replaced, same age
    assert b.add(AckKind.VISIBILITY, entry(1, 30), now=0.0) is False  # its delete is pending
