"""Shared memory and wake-ups around the pure ring: everything one worker shares with the parent.

Memory is an anonymous ``MAP_SHARED`` mapping made before fork and inherited by the children:
no name to unlink, no resource tracker, nothing left behind if the parent is SIGKILLed. (A
replacement started by ``forkserver`` cannot inherit it; see the README, "How it works".)

Wake-ups go through an eventfd (a pipe where there is none). The ring itself needs no lock, but
the ordering between "data published" on one side and "woken, now read" on the other is backed by
:func:`fence` on both sides: producer ``put..put, fence, ring``; consumer ``wake, fence, read``.

Lost wake-ups cannot happen as long as a consumer clears its doorbell *before* reading the ring:
a record published after the read rings a doorbell that is then still set.
"""

from __future__ import annotations

import mmap
import os
import select
import threading
from collections.abc import Sequence

from goraxfast.core.ring import (
    RingConsumer,
    RingProducer,
    reset_ring,
    ring_region_bytes,
)

__all__ = [
    "Channel",
    "ChannelConsumer",
    "ChannelProducer",
    "Doorbell",
    "Seat",
    "SharedRegion",
    "create_seats",
    "fence",
]

_fence_lock = threading.Lock()


def _new_fence_lock() -> None:
    global _fence_lock
    _fence_lock = threading.Lock()


# A child forked while another thread was inside fence() would inherit a held lock.
os.register_at_fork(after_in_child=_new_fence_lock)


def fence() -> None:
    """A full memory barrier: an uncontended lock acquire/release (a locked instruction)."""
    _fence_lock.acquire()
    _fence_lock.release()


class SharedRegion:
    """An anonymous shared mapping: create it before fork, and every child sees the same bytes."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"shared region size must be positive, got {size}")
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        self.view = memoryview(self._map)

    @property
    def size(self) -> int:
        return len(self._map)

    def close(self) -> None:
        """Unmap; every view derived from :attr:`view` must have been released first."""
        self.view.release()
        self._map.close()


class Doorbell:
    """A counter one side rings and the other waits on; rings before the wait are not lost."""

    def __init__(self, *, pipe: bool = False) -> None:
        """An eventfd; a pipe when ``pipe`` is set or the platform has no eventfd."""
        if not pipe and hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK)
            self._read_fd, self._write_fd = fd, fd
        else:
            self._read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
        self._poll = select.poll()
        self._poll.register(self._read_fd, select.POLLIN)

    @property
    def is_eventfd(self) -> bool:
        return self._read_fd == self._write_fd

    def fileno(self) -> int:
        """The readable side, for ``loop.add_reader``: readable while rung and not drained."""
        return self._read_fd

    def ring(self) -> None:
        """Mark the doorbell rung; ringing a rung doorbell is a no-op (counter or full pipe)."""
        try:
            if self.is_eventfd:
                os.eventfd_write(self._write_fd, 1)
            else:
                os.write(self._write_fd, b"\x01")
        except BlockingIOError:
            pass

    def drain(self) -> None:
        """Clear the rung state without blocking."""
        try:
            if self.is_eventfd:
                os.eventfd_read(self._read_fd)
            else:
                while os.read(self._read_fd, 4096):
                    pass
        except BlockingIOError:
            pass

    def wait(self, timeout_s: float) -> bool:
        """Block until rung or ``timeout_s`` passes; True (and drained) if it was rung."""
        timeout_ms = max(0, int(timeout_s * 1000 + 0.999))
        if not self._poll.poll(timeout_ms):
            return False
        self.drain()
        return True

    def close(self) -> None:
        self._poll.unregister(self._read_fd)
        os.close(self._read_fd)
        if self._write_fd != self._read_fd:
            os.close(self._write_fd)


class ChannelProducer:
    """Puts records and wakes the other side once per burst."""

    def __init__(self, ring: RingProducer, doorbell: Doorbell) -> None:
        self.ring = ring
        self._doorbell = doorbell
        self._notified_head = ring.head

    def put(self, record: bytes | bytearray | memoryview) -> bool:
        """Copy one record in; False when full. A refusal wakes the consumer, who must drain."""
        if self.ring.try_put(record):
            return True
        if self.ring.head != self._notified_head:
            self.notify()
        return False

    def put_many(self, records: Sequence[bytes | bytearray | memoryview]) -> int:
        """Put leading records until one does not fit; how many went in. Faster than put()."""
        count = self.ring.try_put_many(records)
        if count < len(records) and self.ring.head != self._notified_head:
            self.notify()
        return count

    def notify(self) -> None:
        """Make everything put so far visible and wake the consumer: call once per batch."""
        self._notified_head = self.ring.head
        fence()
        self._doorbell.ring()

    def free_bytes(self) -> int:
        return self.ring.free_bytes()

    def resync(self) -> None:
        self.ring.resync()
        self._notified_head = self.ring.head


class ChannelConsumer:
    """Takes records; blocks (worker) or is watched by an event loop (parent) when empty."""

    def __init__(self, ring: RingConsumer, doorbell: Doorbell) -> None:
        self.ring = ring
        self._doorbell = doorbell

    def fileno(self) -> int:
        return self._doorbell.fileno()

    def clear(self) -> None:
        """For ``add_reader`` callbacks: clear the wake-up, then read with :meth:`get_many`."""
        self._doorbell.drain()
        fence()

    def get_many(self, limit: int | None = None) -> list[bytes]:
        return self.ring.get_many(limit)

    def is_empty(self) -> bool:
        return self.ring.is_empty()

    def wait(self, timeout_s: float) -> bool:
        """True when there may be records to read: at once if the ring has some, else when rung."""
        fence()
        if not self.ring.is_empty():
            return True
        rung = self._doorbell.wait(timeout_s)
        fence()
        return rung

    def resync(self) -> None:
        self.ring.resync()


class Channel:
    """One direction: a ring in shared memory plus the doorbell that announces its records.

    Each side asks for its endpoint once (the object is cached), so :meth:`reset` can bring an
    endpoint the parent keeps back in step with the zeroed ring.
    """

    def __init__(self, region: memoryview, doorbell: Doorbell) -> None:
        self.region = region
        self.doorbell = doorbell
        self._producer: ChannelProducer | None = None
        self._consumer: ChannelConsumer | None = None

    def producer(self) -> ChannelProducer:
        if self._producer is None:
            self._producer = ChannelProducer(RingProducer(self.region), self.doorbell)
        return self._producer

    def consumer(self) -> ChannelConsumer:
        if self._consumer is None:
            self._consumer = ChannelConsumer(RingConsumer(self.region), self.doorbell)
        return self._consumer

    def reset(self) -> None:
        """Empty the ring and drop stale wake-ups; only while the other side is not running."""
        reset_ring(self.region)
        self.doorbell.drain()
        for end in (self._producer, self._consumer):
            if end is not None:
                end.resync()

    def release(self) -> None:
        """Drop every view into the shared memory (needed before it can be unmapped)."""
        for end in (self._producer, self._consumer):
            if end is not None:
                end.ring.release()
        self._producer = self._consumer = None
        self.region.release()


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


class Seat:
    """What one worker shares with the parent: two channels and its counters, in one mapping."""

    def __init__(self, ring_bytes: int, counter_slots: int) -> None:
        ring_size = ring_region_bytes(ring_bytes)
        self.ring_bytes = ring_bytes
        self.counter_slots = counter_slots
        down_at, up_at = 0, _align(ring_size)
        counters_at = up_at + _align(ring_size)
        self.shared = SharedRegion(counters_at + max(8, counter_slots * 8))
        view = self.shared.view
        self.down = Channel(view[down_at : down_at + ring_size], Doorbell())
        self.up = Channel(view[up_at : up_at + ring_size], Doorbell())
        self.counters = view[counters_at : counters_at + counter_slots * 8].cast("Q")

    def reset(self) -> None:
        """Zero both rings and the counters, before a replacement worker attaches."""
        self.down.reset()
        self.up.reset()
        for i in range(self.counter_slots):
            self.counters[i] = 0

    def close(self) -> None:
        """Release every view, unmap, close both doorbells (in this process only)."""
        self.down.release()
        self.up.release()
        self.counters.release()
        self.down.doorbell.close()
        self.up.doorbell.close()
        self.shared.close()


def create_seats(n: int, ring_bytes: int, counter_slots: int) -> list[Seat]:
    """Seats for ``n`` workers; ``ring_bytes`` is each ring's data capacity (multiple of 8).

    Call before forking; the mapping is ``2 * ring_bytes + 8 * counter_slots`` plus headers.
    """
    if n < 0 or counter_slots < 0:
        raise ValueError(f"need n >= 0 and counter_slots >= 0, got {n} and {counter_slots}")
    return [Seat(ring_bytes, counter_slots) for _ in range(n)]
