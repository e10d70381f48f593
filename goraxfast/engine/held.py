"""The parent's record of each message it holds, and the dispatcher's counters.

:mod:`goraxfast.engine.dispatch` makes one :class:`Held` per message received and keeps it
until the message's outcome is acknowledged; its fields are what the lifecycle needs (the
receipt handle for acks, the tenant for its slot, the group for FIFO order, the receive time
for dwell) and what a worker's delivery or a dead letter carries. These are plain records,
free of I/O, kept apart from the orchestration that moves them between states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from goraxfast.core import counters as C
from goraxfast.core.deadletter import DeadLetter
from goraxfast.core.records import DELIVERY_DECODER
from goraxfast.core.retry import Action, Outcome
from goraxfast.core.sqs_model import ReceivedMessage

__all__ = ["STAGED", "DispatchCounters", "Held", "dead_letter_of", "delivery_slot", "held_of"]


class Held(msgspec.Struct, gc=False):
    """A message the parent holds, from receipt to ack. A Struct: one is made per message
    received, in ~0.08 us against ~0.22 us for a slotted dataclass (and nothing in it can form
    a reference cycle, so the garbage collector need not track it)."""

    slot: int
    message_id: str
    receipt_handle: str
    receive_count: int
    first_received_ms: int
    sent_ms: int
    body: bytes
    attributes: Mapping[str, dict[str, Any]]
    tenant: str
    seat: int = -1
    received_s: float = 0.0  # the dispatcher's clock when it took the message (for dwell)
    group: str = ""  # its MessageGroupId ("" when none)


def held_of(m: ReceivedMessage, slot: int, tenant: str, received_s: float = 0.0) -> Held:
    """The record of ``m``, received at ``received_s``, under ``slot`` for ``tenant``."""
    return Held(
        slot,
        m.message_id,
        m.receipt_handle,
        m.receive_count,
        m.first_received_ms,
        m.sent_ms,
        m.body,
        m.message_attributes,
        tenant,
        -1,
        received_s,
        m.group_id,
    )


STAGED = -3  # Held.seat of a message settled without a worker (poison, throttle release)


@dataclass(slots=True)
class DispatchCounters:
    """What the dispatcher counts (:mod:`goraxfast.engine.stats` reads them for the metrics)."""

    received: int = 0
    poison: int = 0
    dispatched: int = 0
    completed: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    released: int = 0  # handed back with visibility 0 (shutdown, never started)
    throttled: int = 0  # waited for a tenant slot
    throttle_released: int = 0  # released with a delay (waiting bound or wait time exceeded)
    dead_letter_no_dlq: int = 0  # due for the DLQ, left to the redrive policy (no DLQ URL)
    released_on_arrival: int = 0  # brought by a long poll that ended while draining
    intake_failures: int = 0  # receive batches on_received failed on (a bug), recovered
    lease_renewals: int = 0
    e2e_histogram: list[int] = field(default_factory=lambda: [0] * (len(C.LATENCY_BUCKETS_S) + 1))
    e2e_sum_ms: int = 0
    #: receive -> handler start, per bucket of C.DWELL_BUCKETS_S (+Inf last)
    dwell_sum_s: float = 0.0
    dwell_histogram: list[int] = field(default_factory=lambda: [0] * (len(C.DWELL_BUCKETS_S) + 1))


def dead_letter_of(h: Held, action: Action, source_queue: str) -> DeadLetter:
    """The letter a held message's DEAD_LETTER action sends: its body and attributes whole,
    with the action's reason (built only when the action is one)."""
    return DeadLetter(
        body=h.body.decode("utf-8", "replace"),
        attributes=h.attributes,
        reason=action.reason,
        receive_count=h.receive_count,
        message_id=h.message_id,
        source_queue=source_queue,
        keep_visibility_s=action.visibility_timeout_s,
        group_id=h.group,
    )


def delivery_slot(raw: bytes) -> int:
    """The slot of an encoded delivery (one a dead worker never took off its ring)."""
    return DELIVERY_DECODER.decode(raw).slot
