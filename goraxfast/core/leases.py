"""Visibility lease bookkeeping: which held or running messages need their visibility extended.

gorax never extended visibility, so a handler slower than the timeout ran twice.
A lease is renewed once its remaining time falls to ``visibility_timeout_s * renew_fraction``,
by ``ChangeMessageVisibility(timeout_s)``, never past ``max_visibility_s`` after the receive.

Batching: every lease due at one tick is returned together, and so is every lease that would come
due within the next ``group_window_s`` (renewed that much early). A renewal resets a lease to
``now + timeout``, so leases renewed together stay together: a steady load settles into a few
batches per renewal period instead of one call per message.

The 12 h cap: a renewal that the cap shortens is the last one (a later renewal could not end any
later), and a lease that reaches its renewal time with nothing left to grant (``timeout_s <= 0``)
is not returned at all. Either way the key is reported once by :meth:`LeaseBook.take_capped` and
stays in the book until removed (the message is still held): its visibility will lapse at
``expires_at`` and SQS will deliver it again.

Efficiency: keys received together (one receive batch) share one lease, so the per-message cost
is a dict insert and a dict pop. A heap of (due time, serial, lease) with lazy deletion: an entry
is live only while its serial matches the lease's and some key still points at the lease. The
heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S

__all__ = ["SQS_MAX_VISIBILITY_S", "LeaseBook", "Renewal"]


@dataclass(frozen=True, slots=True)
class Renewal:
    """Send ``ChangeMessageVisibility(timeout_s)`` for ``key`` now."""

    key: int
    timeout_s: int


class _Lease:
    """One lease, shared by every key received together (one receive batch).

    Keys received at one moment expire together and are renewed together, so they share one
    lease and one heap entry: adding a batch of ten costs one heap push, not ten. ``live`` counts
    the keys still pointing at this lease; a lease whose keys are all gone is skipped when due.
    """

    __slots__ = ("expires_at", "keys", "live", "received_at", "serial")

    def __init__(self, received_at: float, expires_at: float, keys: list[int]) -> None:
        self.received_at = received_at
        self.expires_at = expires_at
        self.keys = keys
        self.live = len(keys)
        self.serial = -1  # of its live heap entry; -1 once it can no longer be renewed


class LeaseBook:
    """Leases by key; time is passed in, renewals are returned."""

    def __init__(
        self,
        visibility_timeout_s: int,
        *,
        renew_fraction: float = 0.5,
        max_visibility_s: int = SQS_MAX_VISIBILITY_S,
        safety_s: float = 1.0,
        group_window_s: float | None = None,
    ) -> None:
        """``group_window_s`` defaults to a tenth of the renewal margin, at most 1 s."""
        if visibility_timeout_s < 0 or max_visibility_s < 0 or safety_s < 0:
            raise ValueError("visibility timeouts and safety_s must be >= 0")
        if not 0.0 < renew_fraction < 1.0:
            raise ValueError(f"renew_fraction must be in (0, 1), got {renew_fraction}")
        margin = visibility_timeout_s * renew_fraction
        if group_window_s is None:
            group_window_s = min(1.0, margin / 10)
        if not 0.0 <= group_window_s <= margin:
            raise ValueError(f"group_window_s must be in [0, {margin}], got {group_window_s}")
        self.visibility_timeout_s = visibility_timeout_s
        self.max_visibility_s = max_visibility_s
        self.safety_s = safety_s
        self._margin_s = margin
        self._window_s = group_window_s
        self._leases: dict[int, _Lease] = {}
        self._heap: list[tuple[float, int, _Lease]] = []
        self._serial = 0
        self._live_leases = 0  # leases with at least one key
        self._capped: list[tuple[int, _Lease]] = []

    def add(self, key: int, now: float) -> None:
        """A message received at ``now`` (a key added again starts a fresh lease)."""
        self.add_many((key,), now)

    def add_many(self, keys: Iterable[int], now: float) -> None:
        """Messages received together at ``now``: one shared lease, renewed together."""
        keys = list(dict.fromkeys(keys))  # a key given twice is one message
        if not keys:
            return
        lease = _Lease(now, now + self.visibility_timeout_s, keys)
        leases = self._leases
        for key in keys:
            old = leases.get(key)
            if old is not None:
                self._drop(old)
            leases[key] = lease
        self._live_leases += 1
        if self.visibility_timeout_s:
            self._schedule(lease)

    def remove(self, key: int) -> None:
        """Forget a lease (acked or released); unknown keys are fine."""
        lease = self._leases.pop(key, None)
        if lease is not None:
            lease.live -= 1  # _drop, inline: this runs once per message
            if lease.live == 0:
                self._live_leases -= 1
                if len(self._heap) > 2 * self._live_leases + 64:
                    self._compact()

    def due(self, now: float) -> list[Renewal]:
        """Renewals to send now; each renewed lease then expires at ``now + timeout_s``."""
        out: list[Renewal] = []
        heap = self._heap
        leases = self._leases
        horizon = now + self._window_s
        while heap and heap[0][0] <= horizon:
            _, serial, lease = heapq.heappop(heap)
            if lease.serial != serial or not lease.live:
                continue
            keys = [key for key in lease.keys if leases.get(key) is lease]
            lease.keys = keys
            left = self.max_visibility_s - (now - lease.received_at) - self.safety_s
            timeout_s = min(self.visibility_timeout_s, math.floor(left))
            lease.serial = -1
            if timeout_s > 0:
                lease.expires_at = now + timeout_s
                out.extend(Renewal(key, timeout_s) for key in keys)
            if timeout_s == self.visibility_timeout_s:
                self._schedule(lease)
            else:
                self._capped.extend((key, lease) for key in keys)
        return out

    def next_deadline(self) -> float | None:
        """When the earliest lease reaches its margin: call :meth:`due` then.

        ``due`` may return leases a little before (those within the group window), and at this
        time it may find only a lease the cap has ended.
        """
        heap = self._heap
        while heap:
            _, serial, lease = heap[0]
            if lease.serial == serial and lease.live:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def take_capped(self) -> list[int]:
        """Keys whose lease the 12 h cap ended since the last call (still held), each once."""
        capped = [key for key, lease in self._capped if self._leases.get(key) is lease]
        self._capped.clear()
        return capped

    def expires_at(self, key: int) -> float | None:
        lease = self._leases.get(key)
        return None if lease is None else lease.expires_at

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, key: object) -> bool:
        return key in self._leases

    def _schedule(self, lease: _Lease) -> None:
        lease.serial = self._serial
        self._serial += 1
        heapq.heappush(self._heap, (lease.expires_at - self._margin_s, lease.serial, lease))

    def _drop(self, lease: _Lease) -> None:
        """One key stopped pointing at ``lease``."""
        lease.live -= 1
        if lease.live == 0:
            self._live_leases -= 1
            if len(self._heap) > 2 * self._live_leases + 64:
                self._compact()

    def _compact(self) -> None:
        self._heap = [
            entry for entry in self._heap if entry[2].live and entry[2].serial == entry[1]
        ]
        heapq.heapify(self._heap)
