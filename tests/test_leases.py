"""Lease bookkeeping: renew at the margin, in groups, never past the 12 h cap."""

from __future__ import annotations

import pytest

from goraxfast.core.leases import SQS_MAX_VISIBILITY_S, LeaseBook, Renewal


def book(timeout_s: int = 30, **kwargs: float) -> LeaseBook:
    kwargs.setdefault("group_window_s", 0.0)
    return LeaseBook(timeout_s, **kwargs)  # type: ignore[arg-type]


def test_new_lease_expires_one_timeout_after_receive() -> None:
    leases = book(30)
    leases.add(1, now=100.0)
    assert leases.expires_at(1) == 130.0
    assert 1 in leases
    assert len(leases) == 1


def test_lease_is_not_due_before_its_remaining_time_reaches_the_margin() -> None:
    leases = book(30, renew_fraction=0.5)
    leases.add(1, now=0.0)
    assert leases.due(14.9) == []


def test_lease_is_renewed_for_a_full_timeout_when_the_margin_is_reached() -> None:
    leases = book(30, renew_fraction=0.5)
    leases.add(1, now=0.0)
    assert leases.due(15.0) == [Renewal(1, 30)]
    assert leases.expires_at(1) == 45.0
    assert leases.due(15.0) == []


def test_renewal_that_runs_late_still_renews_from_now() -> None:
    leases = book(30)
    leases.add(1, now=0.0)
    assert leases.due(20.0) == [Renewal(1, 30)]
    assert leases.expires_at(1) == 50.0
    assert leases.next_deadline() == 35.0


def test_next_deadline_is_the_earliest_renewal() -> None:
    leases = book(30)
    assert leases.next_deadline() is None
    leases.add(1, now=4.0)
    leases.add(2, now=2.0)
    assert leases.next_deadline() == 17.0
    assert leases.due(17.0) == [Renewal(2, 30)]
    assert leases.next_deadline() == 19.0


def test_all_leases_due_at_one_tick_come_back_together() -> None:
    leases = book(30)
    for key in range(5):
        leases.add(key, now=float(key))
    assert sorted(r.key for r in leases.due(20.0)) == [0, 1, 2, 3, 4]


def test_leases_due_within_the_group_window_are_renewed_early_together() -> None:
    leases = LeaseBook(30, group_window_s=1.0)
    leases.add(1, now=0.0)  # due at 15.0
    leases.add(2, now=0.8)  # due at 15.8: within the window
    leases.add(3, now=1.5)  # due at 16.5: outside it
    assert leases.next_deadline() == 15.0
    assert leases.due(15.0) == [Renewal(1, 30), Renewal(2, 30)]
    assert leases.expires_at(2) == 45.0
    assert leases.next_deadline() == 16.5


def test_leases_renewed_together_stay_together() -> None:
    leases = LeaseBook(30, group_window_s=1.0)
    leases.add(1, now=0.0)
    leases.add(2, now=0.8)
    leases.due(15.0)
    assert leases.next_deadline() == 30.0
    assert [r.key for r in leases.due(30.0)] == [1, 2]


def test_default_group_window_is_a_tenth_of_the_margin_capped_at_a_second() -> None:
    leases = LeaseBook(30)
    leases.add(1, now=0.0)
    leases.add(2, now=1.0)  # due at 16.0: within one second of lease 1
    assert len(leases.due(15.0)) == 2
    short = LeaseBook(4)  # margin 2 s, window 0.2 s
    short.add(1, now=0.0)
    short.add(2, now=0.25)
    assert [r.key for r in short.due(2.0)] == [1]


def test_removed_lease_is_never_renewed() -> None:
    leases = book(30)
    leases.add(1, now=0.0)
    leases.add(2, now=0.0)
    leases.remove(1)
    leases.remove(1)  # idempotent
    assert 1 not in leases
    assert leases.expires_at(1) is None
    assert leases.due(100.0) == [Renewal(2, 30)]


def test_removing_the_earliest_lease_moves_next_deadline() -> None:
    leases = book(30)
    leases.add(1, now=0.0)
    leases.add(2, now=5.0)
    leases.remove(1)
    assert leases.next_deadline() == 20.0
    leases.remove(2)
    assert leases.next_deadline() is None


def test_re_adding_a_key_starts_a_fresh_lease() -> None:
    leases = book(30)
    leases.add(1, now=0.0)
    leases.add(1, now=10.0)
    assert leases.due(15.0) == []
    assert leases.due(25.0) == [Renewal(1, 30)]
    assert len(leases) == 1


def test_zero_timeout_never_renews() -> None:
    leases = LeaseBook(0)
    leases.add(1, now=0.0)
    assert 1 in leases
    assert leases.expires_at(1) == 0.0
    assert leases.next_deadline() is None
    assert leases.due(1e9) == []


def test_renewal_is_shortened_by_the_12_hour_cap_and_is_then_the_last() -> None:
    leases = book(600, safety_s=1.0)
    leases.add(1, now=0.0)
    now = 0.0
    renewals: list[Renewal] = []
    while (deadline := leases.next_deadline()) is not None:
        now = deadline
        renewals.extend(leases.due(now))
    last = renewals[-1]
    assert all(r.timeout_s == 600 for r in renewals[:-1])
    assert 0 < last.timeout_s < 600
    assert leases.expires_at(1) == now + last.timeout_s
    assert leases.expires_at(1) <= SQS_MAX_VISIBILITY_S - 1.0  # type: ignore[operator]
    assert leases.take_capped() == [1]
    assert leases.take_capped() == []
    assert 1 in leases  # still held: only the caller's remove() forgets it


def test_lease_with_nothing_left_under_the_cap_is_not_returned_but_reported() -> None:
    leases = book(30, max_visibility_s=100, safety_s=1.0)
    leases.add(1, now=0.0)
    assert leases.due(99.5) == []
    assert leases.take_capped() == [1]
    assert leases.next_deadline() is None


def test_cap_report_skips_keys_removed_or_re_added_since() -> None:
    leases = book(30, max_visibility_s=100)
    leases.add(1, now=0.0)
    leases.add(2, now=0.0)
    leases.due(99.5)
    leases.remove(1)
    leases.add(2, now=99.5)
    assert leases.take_capped() == []


def test_ten_thousand_leases_renew_once_each_per_period() -> None:
    leases = book(30)
    for key in range(10_000):
        leases.add(key, now=key / 1000)  # received over 10 s
    renewed = [r.key for r in leases.due(25.0)]
    assert sorted(renewed) == list(range(10_000))
    for key in range(0, 10_000, 2):
        leases.remove(key)
    assert len(leases) == 5_000
    assert sorted(r.key for r in leases.due(40.0)) == list(range(1, 10_000, 2))
    assert leases.due(40.0) == []


def test_heap_stays_bounded_under_add_remove_churn() -> None:
    leases = book(30)
    for key in range(50_000):
        leases.add(key, now=0.0)
        leases.remove(key)
    assert len(leases) == 0
    assert len(leases._heap) <= 64 + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"renew_fraction": 0.0},
        {"renew_fraction": 1.0},
        {"safety_s": -1.0},
        {"group_window_s": 20.0},
    ],
)
def test_rejects_settings_that_could_not_keep_a_lease(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeaseBook(30, **kwargs)  # type: ignore[arg-type]


def test_keys_received_together_are_renewed_together_without_the_removed_ones() -> None:
    leases = book(30)
    leases.add_many([1, 2, 3], now=0.0)
    leases.remove(2)
    assert sorted(r.key for r in leases.due(15.0)) == [1, 3]
    assert leases.expires_at(1) == leases.expires_at(3) == 45.0


def test_a_batch_whose_keys_are_all_gone_is_never_renewed() -> None:
    leases = book(30)
    leases.add_many([1, 2], now=0.0)
    leases.remove(1)
    leases.remove(2)
    assert leases.next_deadline() is None
    assert leases.due(100.0) == []


def test_a_key_moved_to_a_newer_batch_is_renewed_with_that_batch_only() -> None:
    leases = book(30)
    leases.add_many([1, 2], now=0.0)
    leases.add_many([2], now=10.0)
    assert [r.key for r in leases.due(15.0)] == [1]
    assert [r.key for r in leases.due(25.0)] == [2]


def test_batch_churn_keeps_the_heap_bounded() -> None:
    leases = book(30)
    for start in range(0, 50_000, 10):
        keys = range(start, start + 10)
        leases.add_many(keys, now=0.0)
        for key in keys:
            leases.remove(key)
    assert len(leases) == 0
    assert len(leases._heap) <= 64 + 1
