"""What to do with a message once its handler has spoken, or could not be asked.

gorax treated every failure alike and deleted messages over the retry limit.
Here every "try again or dead-letter, and with what" answer comes from :class:`RetryPolicy`: a
handler's outcome, a poison body, a receive path that failed, and what dead-lettering means
when no DLQ is configured. A message over the limit is dead-lettered, never deleted unprocessed.
The letter itself (its content and how it is made to fit) is :mod:`goraxfast.core.deadletter`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S


class Outcome(enum.IntEnum):
    """What became of one delivery. Values travel through the up ring, so they are fixed."""

    SUCCESS = 0
    RETRY = 1  # the handler raised Retry(delay_s)
    REJECT = 2  # the handler raised Reject(reason): dead-letter now
    FAIL = 3  # any other exception
    TIMEOUT = 4  # over QUEUE_PROCESS_TIMEOUT (worker killed, or async task cancelled)
    CRASH = 5  # the worker died while running it
    RELEASED = 6  # never started (draining, or its worker died first): not an attempt


class ActionKind(enum.Enum):
    DELETE = "delete"
    CHANGE_VISIBILITY = "change_visibility"
    DEAD_LETTER = "dead_letter"
    NOTHING = "nothing"  # QUEUE_DELETE_AFTER_PROCESS=false: let the visibility timeout run out
    # Due for the DLQ but none is configured: never deleted unprocessed; the visibility is set
    # to the backoff and the queue's redrive policy (maxReceiveCount) moves it.
    REDRIVE = "redrive"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    visibility_timeout_s: int = 0
    reason: str = ""


_DELETE = Action(ActionKind.DELETE)
_NOTHING = Action(ActionKind.NOTHING)
_RELEASE = Action(ActionKind.CHANGE_VISIBILITY, 0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base_s * 2**(receive_count-1)`` capped at ``max_s``, until ``max_retries`` attempts.

    SQS's receive count is the attempt number: it survives visibility changes (unlike a
    re-publish), so the backoff and the limit need no state of ours.
    """

    max_retries: int = 3
    base_s: float = 30.0
    max_s: float = 300.0
    delete_after_process: bool = True
    has_dlq: bool = True  # AWS_SQS_DLQ_URL set: dead letters are sent there by the engine

    def backoff_s(self, receive_count: int) -> int:
        exponent = max(0, receive_count - 1)
        delay = self.max_s if exponent >= 64 else min(self.max_s, self.base_s * (2.0**exponent))
        return min(SQS_MAX_VISIBILITY_S, math.ceil(delay))

    def decide(
        self,
        outcome: Outcome,
        receive_count: int,
        *,
        delay_s: float | None = None,
        reason: str = "",
    ) -> Action:
        """The single action for ``outcome`` on the ``receive_count``-th delivery."""
        if outcome is Outcome.SUCCESS:
            return _DELETE if self.delete_after_process else _NOTHING
        if outcome is Outcome.RELEASED:
            return _RELEASE
        if outcome is Outcome.RETRY:
            wanted = 0.0 if delay_s is None else delay_s
            seconds = min(SQS_MAX_VISIBILITY_S, max(0, math.ceil(wanted)))
            return Action(ActionKind.CHANGE_VISIBILITY, seconds)
        if outcome is Outcome.REJECT:
            return self._dead_letter(reason or "rejected by handler", receive_count)
        # FAIL, TIMEOUT, CRASH: an attempt that failed
        label = {
            Outcome.FAIL: "handler failed",
            Outcome.TIMEOUT: "handler timed out",
            Outcome.CRASH: "worker died while handling it",
        }[outcome]
        detail = f"{label}: {reason}" if reason else label
        return self._attempt_failed(detail, receive_count)

    def poison(self, problem: str, receive_count: int) -> Action:
        """A body that cannot be decoded or validated: no retry can fix it, dead-letter now."""
        return self._dead_letter(f"poison message: {problem}", receive_count)

    def intake_failed(self, problem: str, receive_count: int) -> Action:
        """The engine itself failed between receive and dispatch (a bug): an attempt that
        failed, so a message that keeps hitting the bug ends in the DLQ, not in a loop."""
        return self._attempt_failed(f"receive path failed: {problem}", receive_count)

    def _attempt_failed(self, detail: str, receive_count: int) -> Action:
        if receive_count >= self.max_retries:
            return self._dead_letter(
                f"{detail} (attempt {receive_count} of {self.max_retries})", receive_count
            )
        return Action(ActionKind.CHANGE_VISIBILITY, self.backoff_s(receive_count), detail)

    def _dead_letter(self, reason: str, receive_count: int) -> Action:
        if self.has_dlq:
            # the backoff is what the original gets if only a stub of it fits the DLQ
            return Action(ActionKind.DEAD_LETTER, self.backoff_s(receive_count), reason)
        return Action(ActionKind.REDRIVE, self.backoff_s(receive_count), reason)
