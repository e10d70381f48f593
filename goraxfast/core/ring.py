"""Single-producer single-consumer ring framing over a memoryview (no I/O, no waiting).

The region is shared between two processes, so correctness rests on a few invariants:

- ``head`` (offset 0) is written only by the producer and ``tail`` (offset 64) only by the
  consumer; each side caches the other's index and re-reads it only when it has to.
- Indices are total byte counts that only grow; a position is ``index % capacity``. So
  ``head - tail`` is the number of bytes in use and an empty ring is ``head == tail``.
- A record is a u32 length then the payload, padded to 8 bytes, so every length word is aligned
  and there are always at least 8 bytes before the end of the data area.
- A record that does not fit before the end is preceded by a wrap marker (length ``WRAP``); the
  skipped bytes count as used until the consumer passes the marker.
- An index is published with one aligned 8-byte store through a ``cast("Q")`` view, after the
  bytes it covers are written (``struct.pack_into`` zeroes first: readers saw 0). This ordering
  holds on x86 (total store order); tests/test_shm.py drives it across real processes.

A ring whose record does not fit contiguously publishes the wrap marker on its own even when the
record itself does not fit yet, so the next attempt starts at offset 0 and a record as large as
the whole data area (minus its length word) can always get in once the consumer catches up. That
is why a False from :meth:`RingProducer.try_put` may still have published bytes: the caller must
wake the consumer after a False, as it must after any put.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "HEADER_BYTES",
    "WRAP",
    "RingConsumer",
    "RingCorruptError",
    "RingProducer",
    "frame_bytes",
    "reset_ring",
    "ring_capacity_for",
    "ring_region_bytes",
]

HEADER_BYTES = 128
WRAP = 0xFFFFFFFF

_HEAD = 0  # u64 slot of head in the header (byte offset 0)
_TAIL = 8  # u64 slot of tail in the header (byte offset 64: its own cache line)
_LEN = 4  # bytes of the length word


class RingCorruptError(RuntimeError):
    """A length word the producer cannot have written: the region was overwritten or misused."""


def frame_bytes(payload_bytes: int) -> int:
    """Bytes a payload occupies in the ring: its length word plus padding to 8."""
    return (payload_bytes + _LEN + 7) & ~7


def ring_region_bytes(data_capacity: int) -> int:
    """Size of the region (header and data) that a ring with ``data_capacity`` needs."""
    _check_capacity(data_capacity)
    return HEADER_BYTES + data_capacity


def ring_capacity_for(max_record_bytes: int) -> int:
    """Smallest data capacity whose rings accept records of ``max_record_bytes``."""
    return frame_bytes(max_record_bytes)


def reset_ring(region: memoryview) -> None:
    """Zero both indices so a new producer/consumer pair starts from an empty ring.

    Only safe while neither side is running; endpoints attached before must :meth:`resync`.
    """
    idx = region[:HEADER_BYTES].cast("Q")
    idx[_HEAD] = 0
    idx[_TAIL] = 0
    idx.release()


def _check_capacity(capacity: int) -> None:
    if capacity <= 0 or capacity % 8:
        raise ValueError(f"ring data capacity must be a positive multiple of 8, got {capacity}")


class _Endpoint:
    """The views both sides share; cached because building them costs more than a record."""

    __slots__ = ("_cap", "_data", "_idx", "_max", "_u32")

    def __init__(self, region: memoryview) -> None:
        if region.format != "B" or region.ndim != 1:
            region = region.cast("B")
        cap = len(region) - HEADER_BYTES
        _check_capacity(cap)
        self._cap = cap
        self._idx = region[:HEADER_BYTES].cast("Q")
        self._data = region[HEADER_BYTES:]
        self._u32 = self._data.cast("I")
        self._max = cap - _LEN

    @property
    def capacity(self) -> int:
        """Bytes in the data area (records, padding and wrap markers share it)."""
        return self._cap

    @property
    def max_record_bytes(self) -> int:
        """Largest payload that fits once the ring is empty (the whole area but a length word)."""
        return self._max

    def release(self) -> None:
        """Drop the views so the underlying mapping can be closed."""
        self._u32.release()
        self._data.release()
        self._idx.release()


class RingProducer(_Endpoint):
    """The writing side: owns ``head``, reads ``tail`` only when its cached copy says full."""

    __slots__ = ("_head", "_tail")

    def __init__(self, region: memoryview) -> None:
        super().__init__(region)
        self.resync()

    def resync(self) -> None:
        """Re-read both indices from the region (after :func:`reset_ring`)."""
        self._head = self._idx[_HEAD]
        self._tail = self._idx[_TAIL]

    @property
    def head(self) -> int:
        """Total bytes published so far (what the consumer will see)."""
        return self._head

    def free_bytes(self) -> int:
        """Bytes free right now, including any that a wrap would skip."""
        self._tail = self._idx[_TAIL]
        return self._cap - (self._head - self._tail)

    def try_put(self, record: bytes | bytearray | memoryview) -> bool:
        """Copy ``record`` in and publish it; False (nothing written for it) when full now.

        A full ring is the ordinary backpressure signal, so it is a return value; a record that
        could never fit is a caller bug and raises ValueError.
        """
        if type(record) is memoryview and (record.format != "B" or record.ndim != 1):
            record = record.cast("B")
        n = len(record)
        if n > self._max:
            raise ValueError(f"record of {n} bytes exceeds max_record_bytes={self._max}")
        frame = (n + 11) & ~7
        cap = self._cap
        head = self._head
        pos = head % cap
        room = cap - pos  # contiguous bytes before the end
        need = frame if frame <= room else room + frame
        if cap - (head - self._tail) < need:
            self._tail = self._idx[_TAIL]
            free = cap - (head - self._tail)
            if free < need:
                if frame > room and free >= room:
                    # Publish the wrap on its own: the next try starts at offset 0 and can use
                    # the whole area once the consumer has drained.
                    self._u32[pos >> 2] = WRAP
                    head += room
                    self._head = head
                    self._idx[_HEAD] = head
                return False
        if frame > room:
            self._u32[pos >> 2] = WRAP
            head += room
            pos = 0
        self._u32[pos >> 2] = n
        start = pos + _LEN
        self._data[start : start + n] = record
        head += frame
        self._head = head
        self._idx[_HEAD] = head
        return True

    def try_put_many(self, records: Iterable[bytes | bytearray | memoryview]) -> int:
        """Put records in order until one does not fit; how many went in. Head is published once.

        Same rules as :meth:`try_put`; on a record over ``max_record_bytes`` the ones before it
        are published, then ValueError is raised.
        """
        cap = self._cap
        maxp = self._max
        u32 = self._u32
        data = self._data
        head = self._head
        tail = self._tail
        count = 0
        try:
            for record in records:
                if type(record) is memoryview and (record.format != "B" or record.ndim != 1):
                    record = record.cast("B")
                n = len(record)
                if n > maxp:
                    raise ValueError(f"record of {n} bytes exceeds max_record_bytes={maxp}")
                frame = (n + 11) & ~7
                pos = head % cap
                room = cap - pos
                need = frame if frame <= room else room + frame
                if cap - (head - tail) < need:
                    tail = self._tail = self._idx[_TAIL]
                    if cap - (head - tail) < need:
                        if frame > room and cap - (head - tail) >= room:
                            u32[pos >> 2] = WRAP
                            head += room
                        break
                if frame > room:
                    u32[pos >> 2] = WRAP
                    head += room
                    pos = 0
                u32[pos >> 2] = n
                start = pos + _LEN
                data[start : start + n] = record
                head += frame
                count += 1
        finally:
            if head != self._head:
                self._head = head
                self._idx[_HEAD] = head
        return count


class RingConsumer(_Endpoint):
    """The reading side: owns ``tail``, reads ``head`` only when its cached copy says empty."""

    __slots__ = ("_head", "_tail")

    def __init__(self, region: memoryview) -> None:
        super().__init__(region)
        self.resync()

    def resync(self) -> None:
        """Re-read both indices from the region (after :func:`reset_ring`)."""
        self._tail = self._idx[_TAIL]
        self._head = self._idx[_HEAD]

    def is_empty(self) -> bool:
        """True when :meth:`get` would return None (a lone wrap marker is consumed here)."""
        tail = self._tail
        if tail == self._head:
            self._head = self._idx[_HEAD]
            if tail == self._head:
                return True
        pos = tail % self._cap
        if self._u32[pos >> 2] != WRAP:
            return False
        tail += self._cap - pos
        self._tail = tail
        self._idx[_TAIL] = tail
        return self.is_empty()

    def get(self) -> bytes | None:
        """A copy of the next record (the slot is reused once tail moves), or None when empty.

        The worker's per-message call, so it re-reads ``head`` only when its cached copy says
        empty, and publishes ``tail`` per record (a dead consumer leaves the rest readable).
        """
        tail = self._tail
        if tail == self._head:
            self._head = self._idx[_HEAD]
            if tail == self._head:
                return None
        cap = self._cap
        pos = tail % cap
        n = self._u32[pos >> 2]
        start = pos + _LEN
        if start + n > cap:
            if n != WRAP:
                raise RingCorruptError(f"length word {n:#x} at ring offset {pos}")
            self._tail = tail + cap - pos
            self._idx[_TAIL] = self._tail
            return self.get()
        record = self._data[start : start + n].tobytes()
        tail += (n + 11) & ~7
        self._tail = tail
        self._idx[_TAIL] = tail
        return record

    def get_many(self, limit: int | None = None) -> list[bytes]:
        """Copies of every record published now (up to ``limit``), publishing tail once.

        One tail store per batch keeps the producer's cache line quiet; a caller that passes a
        limit must come back for the rest, since the wake-up that announced them is spent.
        """
        tail = self._tail
        head = self._idx[_HEAD]
        self._head = head
        out: list[bytes] = []
        if tail == head:
            return out
        remaining = -1 if limit is None else limit
        cap = self._cap
        u32 = self._u32
        data = self._data
        append = out.append
        while tail != head and remaining:
            pos = tail % cap
            n = u32[pos >> 2]
            start = pos + _LEN
            end = start + n
            if end > cap:
                if n != WRAP:
                    raise RingCorruptError(f"length word {n:#x} at ring offset {pos}")
                tail += cap - pos
                continue
            append(data[start:end].tobytes())
            tail += (n + 11) & ~7
            remaining -= 1
        if tail != self._tail:
            self._tail = tail
            self._idx[_TAIL] = tail
        return out
