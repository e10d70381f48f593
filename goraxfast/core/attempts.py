"""What a settled attempt is called and what an operator is told happens to it next.

The dispatcher settles every message it holds and logs each failed attempt with the next step
its policy chose; a FIFO group moves on only once its message will not be delivered again. These
are decisions about words and outcomes, not about I/O, so they live here, pure and testable on
their own, and :mod:`goraxfast.engine.dispatch` only looks them up (constants and a table, so the
per-message path gains no call). Nothing here reads a clock or logs.
"""

from __future__ import annotations

from goraxfast.core.retry import Action, ActionKind, Outcome

__all__ = [
    "FAILED_ATTEMPTS",
    "FAILURE_LINE",
    "FAILURE_LOG_BURST",
    "FAILURE_LOG_REFILL_S",
    "FAILURE_SUMMARY",
    "N_OUTCOMES",
    "OUTCOMES",
    "REDRIVE_LINE",
    "REDRIVE_SUMMARY",
    "SETTLED_FOR_GOOD",
    "VISIBILITY_CAPPED_LINE",
    "next_step",
]

#: Failed attempts logged one line each: a burst of this many, then one a ``REFILL_S``, so that
#: a failing deploy cannot flood the log (the lines over it are counted in one summary line).
FAILURE_LOG_BURST = 50
FAILURE_LOG_REFILL_S = 0.1

#: The outcomes by their value, as a result record carries it: ``Outcome(i)`` is slow, and a
#: result is decoded per message.
OUTCOMES: tuple[Outcome, ...] = tuple(sorted(Outcome, key=int))
assert all(int(o) == i for i, o in enumerate(OUTCOMES))
N_OUTCOMES = len(OUTCOMES)

#: What a FIFO group can move on after: the message will not be delivered again.
SETTLED_FOR_GOOD = frozenset({ActionKind.DELETE, ActionKind.DEAD_LETTER})

#: The outcomes that are a failed attempt, by what their log line calls them.
FAILED_ATTEMPTS = {
    Outcome.FAIL: "handler failed",
    Outcome.TIMEOUT: "handler timed out",
    Outcome.CRASH: "worker died",
}

#: A failed attempt: what it was, message id, execution id, tenant, receive count, queue URL,
#: the reason (or "no detail"), and :func:`next_step`.
FAILURE_LINE = "%s: message %s (execution %s, tenant %s, receive %d) on %s: %s; %s"
#: The failed attempts over the budget: how many, queue URL, the window they were counted in.
FAILURE_SUMMARY = "%d more failed attempts on %s in the last %.0f s (not logged one by one)"
#: A message due for the DLQ with no DLQ set: message id, queue URL, the policy's reason.
REDRIVE_LINE = (
    "message %s on %s should be dead-lettered (%s) but AWS_SQS_DLQ_URL is not "
    "set; leaving it to the queue's redrive policy"
)
REDRIVE_SUMMARY = (
    "%d more messages due for the DLQ left to the redrive policy of %s in the last %.0f s"
)
#: A message held past SQS's 12 h visibility cap: message id, queue URL.
VISIBILITY_CAPPED_LINE = (
    "message %s on %s reached SQS's 12 h visibility cap while held; it will be "
    "visible again (and may run twice) if its handler is still running"
)


def next_step(action: Action) -> str:
    """What happens to a failed attempt's message next, in the words of its log line."""
    if action.kind is ActionKind.DEAD_LETTER:
        return "dead-lettered"
    if action.kind is ActionKind.REDRIVE:
        return (
            f"due for the DLQ, left to the queue's redrive policy (no AWS_SQS_DLQ_URL); "
            f"visible again in {action.visibility_timeout_s} s"
        )
    return f"retry in {action.visibility_timeout_s} s"
