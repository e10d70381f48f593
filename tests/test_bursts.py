"""Run lengths: whole batches for short handlers, one at a time for long or unknown ones."""

from __future__ import annotations

import pytest

from goraxfast.core.bursts import BurstSizer


def test_before_any_duration_is_known_deliveries_are_dealt_one_at_a_time() -> None:
    assert BurstSizer().run_length() == 1


def test_short_handlers_get_runs_as_long_as_the_burst_they_fill() -> None:
    sizer = BurstSizer(burst_ns=1_000_000)
    sizer.observe(5_000)
    assert sizer.run_length() == 200


def test_handlers_longer_than_the_burst_are_dealt_one_at_a_time() -> None:
    sizer = BurstSizer(burst_ns=1_000_000)
    sizer.observe(60_000_000_000)
    assert sizer.run_length() == 1


def test_the_mean_follows_a_change_of_handler_duration() -> None:
    sizer = BurstSizer(burst_ns=1_000_000, weight=0.5)
    sizer.observe(2_000)
    for _ in range(20):
        sizer.observe(2_000_000)
    assert sizer.run_length() == 1


def test_a_zero_duration_does_not_divide_by_zero() -> None:
    sizer = BurstSizer(burst_ns=1_000)
    sizer.observe(0)
    assert sizer.run_length() == 1_000


@pytest.mark.parametrize("kwargs", [{"burst_ns": 0}, {"weight": 0.0}, {"weight": 1.5}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BurstSizer(**kwargs)  # type: ignore[arg-type]
