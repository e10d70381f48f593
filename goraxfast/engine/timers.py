"""The engine's two clocks, each a task beside the dispatcher that sleeps until its next deadline.

- :func:`keep_leases`: visibility extensions, due from :class:`goraxfast.core.leases.LeaseBook`;
- :func:`expire_throttled`: messages that waited past ``WORKER_THROTTLE_MAX_WAIT_SECONDS`` for
  their tenant's slot, due from the limiter's oldest waiting message; it sleeps without a timer
  while nothing waits and is woken when something starts waiting.

Neither polls: each computes when it must next act, and the decisions stay in the dispatcher
and the pure core.
"""

from __future__ import annotations

from collections.abc import Callable

from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.wakeup import Wakeup

#: Shortest sleep of either clock: a deadline already past is acted on, then slept past.
MIN_SLEEP_S = 0.01


def lease_check_cap_s(visibility_timeout_s: int) -> float:
    """The longest the lease keeper sleeps: new leases may come due sooner than the next one it
    knows of (a quarter of the visibility timeout, between 50 ms and 1 s)."""
    return max(0.05, min(1.0, visibility_timeout_s / 4))


async def keep_leases(
    dispatcher: Dispatcher,
    acker: Acker,
    *,
    visibility_timeout_s: int,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> None:
    """Extend every lease when due, and wake the acker to send them."""
    leases = dispatcher.leases
    cap_s = lease_check_cap_s(visibility_timeout_s)
    while True:
        now = clock()
        if dispatcher.renew_leases(now):
            acker.wake()
        deadline = leases.next_deadline()
        sleep_s = cap_s if deadline is None else min(cap_s, max(MIN_SLEEP_S, deadline - now))
        await sleep(sleep_s)  # type: ignore[misc]


async def expire_throttled(
    dispatcher: Dispatcher,
    *,
    max_wait_s: float,
    clock: Callable[[], float],
    waiting: Wakeup,
) -> None:
    """Release, with a delay, the throttled messages that waited ``max_wait_s``; ``waiting`` is
    set by the dispatcher when a message starts waiting for its tenant's slot."""
    limiter = dispatcher.limiter
    while True:
        waiting.clear()
        oldest = limiter.oldest_waiting_since()
        if oldest is None:
            await waiting.wait()
            continue
        now = clock()
        due = oldest + max_wait_s
        if due <= now:
            dispatcher.expire_throttled(now, max_wait_s)
            continue
        await waiting.wait(max(MIN_SLEEP_S, due - now))
