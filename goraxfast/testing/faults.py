"""Scripted faults of the in-memory queue: the next calls of one operation fail as SQS's would.

A test of the engine's error paths needs SQS to fail on cue (throttling, a server error, an
answer lost after SQS acted); this module holds the script of those faults, per operation, and
the error a real client raises for each SQS error code, so the engine reads them as it reads
a real client's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from goraxfast.core.sqs_model import QUEUE_MISSING_CODES
from goraxfast.errors import QueueDoesNotExistError, ReceiptHandleInvalidError, SQSError

__all__ = [
    "AWS_NAMES",
    "Fault",
    "Operation",
    "fault_error",
    "next_fault",
    "script_faults",
    "sqs_error",
]

#: The data-plane calls a fault can be scripted for (the method names).
Operation = Literal["receive", "delete_batch", "change_visibility_batch", "send_batch"]
AWS_NAMES: dict[str, str] = {
    "receive": "ReceiveMessage",
    "delete_batch": "DeleteMessageBatch",
    "change_visibility_batch": "ChangeMessageVisibilityBatch",
    "send_batch": "SendMessageBatch",
}


@dataclass(slots=True)
class Fault:
    code: str | None
    detail: str
    carried_out: bool


def script_faults(
    faults: dict[str, deque[Fault]],
    operation: Operation,
    code: str | None,
    *,
    times: int,
    detail: str,
    carried_out: bool,
) -> None:
    """Add ``times`` faults of ``operation`` to the script (see ``InMemoryQueue.fail_next``)."""
    if operation not in AWS_NAMES:
        raise ValueError(f"no such operation {operation!r}: one of {sorted(AWS_NAMES)}")
    queue = faults.setdefault(operation, deque())
    queue.extend(Fault(code, detail, carried_out) for _ in range(times))


def next_fault(faults: dict[str, deque[Fault]], operation: str) -> Fault | None:
    """The next scripted fault of ``operation``, taken off the script; None if there is none."""
    script = faults.get(operation)
    if not script:
        return None
    fault = script.popleft()
    if not script:
        del faults[operation]
    return fault


def fault_error(operation: str, url: str, fault: Fault) -> SQSError:
    """The error a scripted fault of ``operation`` raises."""
    return sqs_error(AWS_NAMES[operation], url, fault.detail, fault.code)


def sqs_error(operation: str, url: str, detail: str, code: str | None) -> SQSError:
    """The error class a real client raises for ``code``."""
    if code in QUEUE_MISSING_CODES:
        return QueueDoesNotExistError(operation, url, detail, code)
    if code is not None and code.endswith("ReceiptHandleIsInvalid"):
        return ReceiptHandleInvalidError(operation, url, detail, code)
    return SQSError(operation, url, detail, code)
