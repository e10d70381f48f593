"""The dispatcher's warning lines: failed attempts, messages left to the redrive policy, leases
at SQS's visibility cap.

Each line carries what an operator needs to find the message (its id, execution, tenant,
receive count, queue) and what happens to it next; failed attempts and redrives are each within
a budget (:class:`~goraxfast.core.ratelimit.LogBudget`), so that a failing deploy cannot flood
the log, the lines over it counted in one summary line. Kept apart from
:mod:`goraxfast.engine.dispatch` so that its bookkeeping reads without the wording; the words
and the budget are :mod:`goraxfast.core.attempts`, and the logger stays ``goraxfast.dispatch``.
"""

from __future__ import annotations

import logging

from goraxfast.core.attempts import (
    FAILED_ATTEMPTS,
    FAILURE_LINE,
    FAILURE_LOG_BURST,
    FAILURE_LOG_REFILL_S,
    FAILURE_SUMMARY,
    REDRIVE_LINE,
    REDRIVE_SUMMARY,
    VISIBILITY_CAPPED_LINE,
    next_step,
)
from goraxfast.core.message import decode_message
from goraxfast.core.ratelimit import LogBudget
from goraxfast.core.retry import Action, Outcome
from goraxfast.engine.held import Held

__all__ = ["DispatchLog"]

log = logging.getLogger("goraxfast.dispatch")


class DispatchLog:
    """The budgeted warning lines of one dispatcher's queue (times are the dispatcher's)."""

    __slots__ = ("_failures", "_redrives", "queue_url")

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self._failures = LogBudget(burst=FAILURE_LOG_BURST, refill_s=FAILURE_LOG_REFILL_S)
        self._redrives = LogBudget(burst=FAILURE_LOG_BURST, refill_s=FAILURE_LOG_REFILL_S)

    def failure(self, h: Held, outcome: Outcome, reason: str, action: Action, now: float) -> None:
        """One line per failed attempt (``outcome`` one of ``FAILED_ATTEMPTS``), with what an
        operator needs to find the message and what happens to it next; within a budget."""
        admission = self._failures.admit(now)
        if admission.summary is not None:
            log.warning(
                FAILURE_SUMMARY,
                admission.summary.count,
                self.queue_url,
                admission.summary.window_s,
            )
        if not admission.full:
            return
        try:
            execution_id = decode_message(h.body, validate=False).execution_id
        except Exception:
            execution_id = "?"
        log.warning(
            FAILURE_LINE,
            FAILED_ATTEMPTS[outcome],
            h.message_id,
            execution_id,
            h.tenant,
            h.receive_count,
            self.queue_url,
            reason or "no detail",
            next_step(action),
            extra={
                "message_id": h.message_id,
                "execution_id": execution_id,
                "tenant_id": h.tenant,
                "receive_count": h.receive_count,
            },
        )

    def redrive(self, h: Held, action: Action, now: float) -> None:
        """A message due for the DLQ with no DLQ set: left to the queue's redrive policy."""
        admission = self._redrives.admit(now)
        if admission.summary is not None:
            log.warning(
                REDRIVE_SUMMARY,
                admission.summary.count,
                self.queue_url,
                admission.summary.window_s,
            )
        if admission.full:
            log.warning(
                REDRIVE_LINE,
                h.message_id,
                self.queue_url,
                action.reason,
                extra={
                    "message_id": h.message_id,
                    "tenant_id": h.tenant,
                    "receive_count": h.receive_count,
                },
            )

    def visibility_capped(self, h: Held) -> None:
        """``h`` reached SQS's 12 h visibility cap while held (not budgeted)."""
        log.warning(
            VISIBILITY_CAPPED_LINE,
            h.message_id,
            self.queue_url,
            extra={"message_id": h.message_id, "tenant_id": h.tenant},
        )
