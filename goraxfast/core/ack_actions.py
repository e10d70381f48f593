"""Which acknowledgement a settled message's action stages: the last step of the lifecycle.

The retry policy (:mod:`goraxfast.core.retry`) says *what* happens to a message; this says
which SQS call carries it: a delete, a visibility change (a retry's delay, the failure backoff,
and a REDRIVE, which has no DLQ to go to and waits out the backoff for the queue's redrive
policy), or a dead letter (its letter built only then, since most messages never need one).
NOTHING (``QUEUE_DELETE_AFTER_PROCESS=false``) stages nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from goraxfast.core.acks import AckEntry, AckKind
from goraxfast.core.deadletter import DeadLetter
from goraxfast.core.retry import Action, ActionKind

__all__ = ["ack_for"]


def ack_for(
    action: Action, key: int, receipt_handle: str, letter: Callable[[], DeadLetter]
) -> tuple[AckKind, AckEntry] | None:
    """The ack to stage for ``action`` on the message ``key``, or None for none."""
    kind = action.kind
    if kind is ActionKind.DELETE:
        return AckKind.DELETE, AckEntry(key, receipt_handle)
    if kind is ActionKind.CHANGE_VISIBILITY or kind is ActionKind.REDRIVE:
        return AckKind.VISIBILITY, AckEntry(key, receipt_handle, action.visibility_timeout_s)
    if kind is ActionKind.DEAD_LETTER:
        return AckKind.DEAD_LETTER, AckEntry(key, receipt_handle, payload=letter())
    return None
