"""The retry policy: one action per outcome, backoff by receive count, dead-letter at the limit."""

from __future__ import annotations

import pytest

from goraxfast.core.retry import SQS_MAX_VISIBILITY_S, Action, ActionKind, Outcome, RetryPolicy

POLICY = RetryPolicy(max_retries=3, base_s=30, max_s=300)


@pytest.mark.parametrize(
    ("receive_count", "delay_s"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 300), (6, 300), (100, 300), (0, 30)],
)
def test_backoff_doubles_by_receive_count_and_is_capped(receive_count: int, delay_s: int) -> None:
    assert POLICY.backoff_s(receive_count) == delay_s


def test_success_deletes() -> None:
    assert POLICY.decide(Outcome.SUCCESS, 1) == Action(ActionKind.DELETE)


def test_success_leaves_the_message_when_delete_after_process_is_off() -> None:
    policy = RetryPolicy(delete_after_process=False)
    assert policy.decide(Outcome.SUCCESS, 1).kind is ActionKind.NOTHING


def test_a_failure_below_the_limit_is_delayed_by_the_backoff() -> None:
    action = POLICY.decide(Outcome.FAIL, 2, reason="KeyError: x")
    assert action == Action(ActionKind.CHANGE_VISIBILITY, 60, "handler failed: KeyError: x")


@pytest.mark.parametrize("outcome", [Outcome.FAIL, Outcome.TIMEOUT, Outcome.CRASH])
def test_a_failed_attempt_at_the_limit_is_dead_lettered_with_its_reason(outcome: Outcome) -> None:
    action = POLICY.decide(outcome, 3, reason="boom")
    assert action.kind is ActionKind.DEAD_LETTER
    assert "boom" in action.reason and "attempt 3 of 3" in action.reason


def test_reject_dead_letters_at_once_with_the_handlers_reason() -> None:
    assert POLICY.decide(Outcome.REJECT, 1, reason="bad input") == Action(
        ActionKind.DEAD_LETTER, reason="bad input"
    )


@pytest.mark.parametrize(
    ("asked", "given"), [(0, 0), (1.2, 2), (90, 90), (10**9, SQS_MAX_VISIBILITY_S)]
)
def test_retry_sets_visibility_to_the_asked_delay_within_sqs_limits(
    asked: float, given: int
) -> None:
    assert POLICY.decide(Outcome.RETRY, 7, delay_s=asked) == Action(
        ActionKind.CHANGE_VISIBILITY, given
    )


def test_retry_never_dead_letters_even_past_the_retry_limit() -> None:
    assert POLICY.decide(Outcome.RETRY, 99, delay_s=5).kind is ActionKind.CHANGE_VISIBILITY


def test_a_released_delivery_is_visible_again_at_once_and_not_counted_as_an_attempt() -> None:
    assert POLICY.decide(Outcome.RELEASED, 3) == Action(ActionKind.CHANGE_VISIBILITY, 0)


def test_a_zero_base_retries_immediately() -> None:
    assert RetryPolicy(base_s=0, max_s=0).backoff_s(5) == 0
