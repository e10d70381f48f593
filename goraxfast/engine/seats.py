"""The parent's record of one worker seat: shared by the dispatcher (what the worker holds) and
the workforce (whether it is alive, its pid, why it was killed), owned by neither."""

from __future__ import annotations

from dataclasses import dataclass, field

from goraxfast.core.recycling import NO_BUDGET_LIMIT
from goraxfast.core.worker_loss import ALL_SLOTS, NOT_TIMED_OUT
from goraxfast.ipc.rings import ChannelConsumer, ChannelProducer, Seat

__all__ = ["ALL_SLOTS", "NOT_TIMED_OUT", "SeatState"]


@dataclass(slots=True, eq=False)
class SeatState:
    """One worker seat as the parent sees it."""

    index: int
    seat: Seat
    cap: int  # most deliveries this worker may hold at once while handlers are short
    shallow_cap: int  # ... while they are long: its share of QUEUE_CONCURRENT_WORKERS
    producer: ChannelProducer
    consumer: ChannelConsumer
    slots: set[int] = field(default_factory=set)
    pid: int = 0
    alive: bool = False
    ready: bool = False  # past worker_init (seen once its pid is in its counter block)
    #: set when the parent kills it for QUEUE_PROCESS_TIMEOUT (ALL_SLOTS: every one)
    timed_out_slot: int = NOT_TIMED_OUT
    #: deliveries it may still be given before it is recycled (WORKER_MAX_MESSAGES, memory)
    budget: int = NO_BUDGET_LIMIT
    recycling_reason: str = ""  # why it is due for recycling (it gets no more work)
    recycling: str = ""  # the same, once it was told to exit

    @classmethod
    def of(cls, index: int, seat: Seat, cap: int, shallow_cap: int | None = None) -> SeatState:
        shallow = cap if shallow_cap is None else min(cap, shallow_cap)
        return cls(index, seat, cap, shallow, seat.down.producer(), seat.up.consumer())
