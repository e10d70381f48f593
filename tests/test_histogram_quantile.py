"""Quantiles read off a bucketed histogram, as Prometheus' histogram_quantile reads them."""

from __future__ import annotations

import pytest

from goraxfast.core.counters import histogram_quantile

BOUNDS = (0.001, 0.01, 0.1)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0, 0, 0, 0], 0.5, None),
        ([10, 0, 0, 0], 0.5, 0.0005),
        ([10, 0, 0, 0], 1.0, 0.001),
        ([0, 10, 0, 0], 0.5, 0.0055),
        ([5, 5, 0, 0], 0.5, 0.001),
        ([5, 5, 0, 0], 0.75, 0.0055),
        ([98, 0, 1, 1], 0.99, 0.1),
        ([0, 0, 0, 4], 0.5, 0.1),
        ([1, 0, 0, 0], 0.0, 0.0),
    ],
    ids=[
        "empty: no quantile",
        "median inside the first bucket, from zero",
        "the maximum is the bucket's bound",
        "median inside a middle bucket",
        "median on a bucket edge",
        "upper quartile in the second bucket",
        "p99 in the last finite bucket",
        "in +Inf: the highest finite bound",
        "q=0 is the lower edge",
    ],
)
def test_a_quantile_is_interpolated_inside_its_bucket(
    counts: list[int], q: float, expected: float | None
) -> None:
    result = histogram_quantile(BOUNDS, counts, q)
    assert result == (None if expected is None else pytest.approx(expected))


def test_counts_must_match_the_bounds_and_inf() -> None:
    with pytest.raises(ValueError, match="3 counts for 3 bounds"):
        histogram_quantile(BOUNDS, [1, 2, 3], 0.5)
