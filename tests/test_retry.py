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
    action = POLICY.decide(Outcome.REJECT, 1, reason="bad input")
    assert (action.kind, action.reason) == (ActionKind.DEAD_LETTER, "bad input")


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


NO_DLQ = RetryPolicy(max_retries=3, base_s=30, max_s=300, has_dlq=False)


# Every "try again or dead-letter, and with what" answer, in one table: (policy, question,
# receive count) -> (kind, visibility, words the reason must hold). A dead letter's visibility
# is what the original gets if only a stub of it fits the DLQ (it stays for the redrive policy).
@pytest.mark.parametrize(
    ("policy", "ask", "receive_count", "kind", "visibility_s", "reason_has"),
    [
        (
            POLICY,
            lambda p, n: p.poison("MessageDecodeError: bad", n),
            1,
            ActionKind.DEAD_LETTER,
            30,
            "poison message: MessageDecodeError: bad",
        ),
        (POLICY, lambda p, n: p.poison("x", n), 9, ActionKind.DEAD_LETTER, 300, "poison"),
        (NO_DLQ, lambda p, n: p.poison("x", n), 1, ActionKind.REDRIVE, 30, "poison"),
        (
            POLICY,
            lambda p, n: p.intake_failed("KeyError: k", n),
            1,
            ActionKind.CHANGE_VISIBILITY,
            30,
            "receive path failed: KeyError: k",
        ),
        (
            POLICY,
            lambda p, n: p.intake_failed("KeyError: k", n),
            3,
            ActionKind.DEAD_LETTER,
            120,
            "attempt 3 of 3",
        ),
        (
            NO_DLQ,
            lambda p, n: p.intake_failed("KeyError: k", n),
            3,
            ActionKind.REDRIVE,
            120,
            "attempt 3 of 3",
        ),
        (
            NO_DLQ,
            lambda p, n: p.decide(Outcome.REJECT, n, reason="no"),
            1,
            ActionKind.REDRIVE,
            30,
            "no",
        ),
        (
            NO_DLQ,
            lambda p, n: p.decide(Outcome.FAIL, n, reason="e"),
            2,
            ActionKind.CHANGE_VISIBILITY,
            60,
            "handler failed: e",
        ),
        (
            NO_DLQ,
            lambda p, n: p.decide(Outcome.TIMEOUT, n),
            3,
            ActionKind.REDRIVE,
            120,
            "handler timed out",
        ),
        (
            NO_DLQ,
            lambda p, n: p.decide(Outcome.CRASH, n),
            4,
            ActionKind.REDRIVE,
            240,
            "worker died",
        ),
        (NO_DLQ, lambda p, n: p.decide(Outcome.SUCCESS, n), 1, ActionKind.DELETE, 0, ""),
        (
            NO_DLQ,
            lambda p, n: p.decide(Outcome.RETRY, n, delay_s=5),
            9,
            ActionKind.CHANGE_VISIBILITY,
            5,
            "",
        ),
    ],
)
def test_the_policy_answers_every_dead_letter_question(
    policy: RetryPolicy,
    ask: object,
    receive_count: int,
    kind: ActionKind,
    visibility_s: int,
    reason_has: str,
) -> None:
    action = ask(policy, receive_count)  # type: ignore[operator]
    assert (action.kind, action.visibility_timeout_s) == (kind, visibility_s)
    assert reason_has in action.reason


def test_without_a_dlq_nothing_is_ever_dead_lettered_by_the_engine() -> None:
    for outcome in Outcome:
        for receive_count in (1, 3, 100):
            action = NO_DLQ.decide(outcome, receive_count, reason="r")
            assert action.kind is not ActionKind.DEAD_LETTER
    assert NO_DLQ.poison("p", 1).kind is ActionKind.REDRIVE
