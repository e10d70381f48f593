"""What a worker's death means for each delivery it held: an attempt or not, and which.

One rule, read by the dispatcher when the workforce reports a death; the workforce only records
*why* the worker died (it killed it for a timeout, or the engine was forced to stop). A delivery
the worker never took off its ring never started, so its death costs that message nothing: it is
released, visible again at once, and its receive count is SQS's only trace of it. What had
started failed, and the attempt counts toward ``QUEUE_MAX_RETRIES`` like a handler error.
"""

from __future__ import annotations

from goraxfast.core.retry import Outcome

#: ``timed_out_slot`` of a worker killed because its whole event loop stopped (an async worker
#: whose handler blocked the loop): every delivery it had started timed out.
ALL_SLOTS = -2
#: ``timed_out_slot`` of a worker that was not killed for a timeout.
NOT_TIMED_OUT = -1


def lost_outcome(slot: int, *, started: bool, timed_out_slot: int, forced: bool) -> Outcome | None:
    """The outcome to settle ``slot`` with, or None to leave it alone.

    - never started (still in the worker's ring): RELEASED, not an attempt;
    - the engine was forced to stop (second signal, grace over): None, the message comes back
      through its visibility timeout and no attempt is counted (nothing is sent on its behalf);
    - the parent killed the worker for overrunning QUEUE_PROCESS_TIMEOUT on this slot (or on
      every slot): TIMEOUT;
    - anything else (a crash, an OOM kill, ``kill -9`` from outside): CRASH.
    """
    if not started:
        return Outcome.RELEASED
    if forced:
        return None
    if timed_out_slot == ALL_SLOTS or slot == timed_out_slot:
        return Outcome.TIMEOUT
    return Outcome.CRASH


def lost_reason(outcome: Outcome, how: str) -> str:
    """The failed attempt's reason, from how the workforce says the worker died: a timeout's
    says the parent killed it, anything else is what happened to it."""
    return f"worker killed ({how})" if outcome is Outcome.TIMEOUT else how
