"""Per-tenant concurrency limits: exact counts, a bounded FIFO wait per tenant.

gorax checked then added (racy) and leaked slots after timeouts; here one call both
decides and counts, and the only way a running slot ends is :meth:`TenantLimiter.release`, which
either frees it or hands it straight to that tenant's oldest waiting item. A tenant at its cap
waits instead of bouncing the message back; only when the waiting bounds are full is
an item refused, and the caller releases it with a delay (never dead-letters it).

Invariants: ``0 <= running <= cap`` for every tenant; a tenant has waiting items only while it is
at its cap; a tenant with nothing running and nothing waiting has no state at all, so a stream of
one-off tenants cannot grow memory. ``now`` is expected not to go backwards.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["Admission", "TenantLimiter"]

T = TypeVar("T")


class Admission(enum.Enum):
    ADMITTED = "admitted"  # dispatch it now: it holds one of the tenant's running slots
    WAITING = "waiting"  # held in the tenant's queue until release() hands it a slot
    OVERFLOW = "overflow"  # not held: release the message with a delay


class _Tenant(Generic[T]):
    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[tuple[float, int, T]] = deque()  # (enqueued_at, serial, item)


class TenantLimiter(Generic[T]):
    """Running counts and waiting queues per tenant; items are opaque (e.g. slot ids)."""

    def __init__(
        self,
        default_cap: int,
        overrides: Mapping[str, int] | None = None,
        *,
        max_waiting_per_tenant: int,
        max_waiting_total: int,
    ) -> None:
        caps = dict(overrides or {})
        for name, value in [("default_cap", default_cap), *caps.items()]:
            if value < 0:
                raise ValueError(f"tenant cap must be >= 0, got {name}={value}")
        if max_waiting_per_tenant < 0 or max_waiting_total < 0:
            raise ValueError("waiting bounds must be >= 0")
        self.default_cap = default_cap
        self._caps = caps
        self.max_waiting_per_tenant = max_waiting_per_tenant
        self.max_waiting_total = max_waiting_total
        self._tenants: dict[str, _Tenant[T]] = {}
        self._waiting_total = 0
        self._serial = 0  # breaks ties between equal enqueue times: admission order

    def cap(self, tenant: str) -> int:
        return self._caps.get(tenant, self.default_cap)

    def admit(self, tenant: str, item: T, now: float) -> Admission:
        """Take a running slot for ``item`` if the tenant has one free, else queue or refuse it."""
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        if state.running < self._caps.get(tenant, self.default_cap) and not state.waiting:
            state.running += 1
            return Admission.ADMITTED
        if (
            len(state.waiting) >= self.max_waiting_per_tenant
            or self._waiting_total >= self.max_waiting_total
        ):
            self._forget_if_idle(tenant, state)
            return Admission.OVERFLOW
        state.waiting.append((now, self._serial, item))
        self._serial += 1
        self._waiting_total += 1
        return Admission.WAITING

    def release(self, tenant: str) -> T | None:
        """End one running slot; returns the tenant's oldest waiting item, now holding it.

        A release with nothing running is a bookkeeping bug in the caller: ValueError.
        """
        state = self._tenants.get(tenant)
        if state is None or state.running == 0:
            raise ValueError(f"release for tenant {tenant!r} with nothing running")
        if state.waiting:  # the slot passes straight on: running stays the same
            self._waiting_total -= 1
            return state.waiting.popleft()[2]
        state.running -= 1
        self._forget_if_idle(tenant, state)
        return None

    def expired(self, now: float, max_wait_s: float) -> list[T]:
        """Remove and return items that waited ``max_wait_s`` or more, oldest first."""
        out: list[tuple[float, int, T]] = []
        limit = now - max_wait_s
        for tenant, state in list(self._tenants.items()):
            waiting = state.waiting
            while waiting and waiting[0][0] <= limit:
                out.append(waiting.popleft())
            self._forget_if_idle(tenant, state)
        self._waiting_total -= len(out)
        out.sort(key=_order)
        return [item for _, _, item in out]

    def oldest_waiting_since(self) -> float | None:
        """Enqueue time of the oldest waiting item, for scheduling the next :meth:`expired`."""
        return min((s.waiting[0][0] for s in self._tenants.values() if s.waiting), default=None)

    def remove_waiting(self, tenant: str, item: T) -> bool:
        """Drop one waiting item (equal to ``item``); False when it is not waiting there."""
        state = self._tenants.get(tenant)
        if state is None:
            return False
        for queued in state.waiting:
            if queued[2] == item:
                state.waiting.remove(queued)
                self._waiting_total -= 1
                self._forget_if_idle(tenant, state)
                return True
        return False

    def take_all_waiting(self) -> list[T]:
        """Shutdown: remove every waiting item, oldest first; running counts are untouched."""
        out = [queued for state in self._tenants.values() for queued in state.waiting]
        for tenant, state in list(self._tenants.items()):
            state.waiting.clear()
            self._forget_if_idle(tenant, state)
        self._waiting_total = 0
        out.sort(key=_order)
        return [item for _, _, item in out]

    def running(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return 0 if state is None else state.running

    def running_by_tenant(self) -> dict[str, int]:
        return {tenant: s.running for tenant, s in self._tenants.items() if s.running}

    def waiting(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return 0 if state is None else len(state.waiting)

    def waiting_total(self) -> int:
        return self._waiting_total

    def tenant_count(self) -> int:
        """Tenants with any state (running or waiting): bounded by activity, not by history."""
        return len(self._tenants)

    def _forget_if_idle(self, tenant: str, state: _Tenant[T]) -> None:
        if not state.running and not state.waiting:
            del self._tenants[tenant]


def _order(queued: tuple[float, int, object]) -> tuple[float, int]:
    return queued[0], queued[1]
