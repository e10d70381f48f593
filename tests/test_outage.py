"""The outage rule: shared backoff, one log line per state change plus a summary, health."""

from __future__ import annotations

import pytest

from goraxfast.core.outage import Outage, format_duration


def outage() -> Outage:
    return Outage("SQS ReceiveMessage", base_s=0.1, cap_s=20, summary_every_s=60)


def test_the_first_failure_says_so_once() -> None:
    o = outage()
    first = o.failed(0.0, "ConnectError", "connection refused", rand=0.0)
    assert first.line is not None and "SQS ReceiveMessage failing: connection refused" in first.line
    assert o.failed(1.0, "ConnectError", "connection refused", rand=0.0).line is None
    assert o.failing and o.attempts == 2


@pytest.mark.parametrize(
    ("attempt", "rand", "delay_s"),
    [(1, 0.0, 0.05), (1, 1.0, 0.1), (2, 0.0, 0.1), (5, 1.0, 1.6), (9, 1.0, 20.0), (50, 0.5, 15.0)],
)
def test_the_backoff_doubles_with_equal_jitter_up_to_the_cap(
    attempt: int, rand: float, delay_s: float
) -> None:
    o = outage()
    for i in range(attempt - 1):
        o.failed(float(i), "E", "e", rand=0.0)
    assert o.failed(float(attempt), "E", "e", rand=rand).delay_s == pytest.approx(delay_s)


def test_a_different_error_is_a_state_change_worth_a_line() -> None:
    o = outage()
    o.failed(0.0, "ConnectError", "refused", rand=0.0)
    line = o.failed(1.0, "AccessDenied", "access denied", rand=0.0).line
    assert line is not None and "another error: access denied" in line


def test_a_long_outage_is_summed_up_once_a_minute_never_per_attempt() -> None:
    o = outage()
    lines = [o.failed(t * 0.5, "E", "down", rand=0.0).line for t in range(0, 300)]  # 150 s
    written = [line for line in lines if line is not None]
    assert len(written) == 3  # the start, then at 60 s and 120 s
    assert "failing for 1m00s, 121 attempts; last error: down" in written[1]


def test_recovery_is_one_line_with_how_long_and_how_often() -> None:
    o = outage()
    for t in range(37):
        o.failed(float(t) * 3.5, "E", "down", rand=0.0)
    assert (
        o.succeeded(130.0)
        == "SQS ReceiveMessage answering again after 2m10s and 37 failed attempts"
    )
    assert o.succeeded(131.0) is None and not o.failing


@pytest.mark.parametrize(
    ("failing_for_s", "healthy"),
    [(None, True), (0.0, True), (4.9, True), (5.0, False), (600, False)],
)
def test_health_tolerates_a_blip_but_not_an_outage(
    failing_for_s: float | None, healthy: bool
) -> None:
    o = Outage("acks", unhealthy_after_s=5.0)
    if failing_for_s is not None:
        o.failed(100.0, "E", "e", rand=0.0)
    assert o.healthy(100.0 + (failing_for_s or 0.0)) is healthy


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.24, "4.2s"), (60, "1m00s"), (130, "2m10s"), (3780, "1h03m")]
)
def test_durations_read_as_an_operator_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_backoff_that_cannot_grow_is_refused() -> None:
    with pytest.raises(ValueError):
        Outage("x", base_s=0, cap_s=1)
