"""When a healthy worker is replaced anyway: after so many messages, or once it holds too much
memory (``WORKER_MAX_MESSAGES``, ``WORKER_MAX_MEMORY_MB``).

Long-lived Python processes that run other people's code grow: a C extension that leaks, a
cache nobody bounds, an allocator that fragments. Celery (``worker_max_tasks_per_child``,
``worker_max_memory_per_child``) and gunicorn (``max_requests``) answer with recycling, and so
does this engine, without losing or re-running anything: a worker due for recycling is given no
new delivery and, once it has run what it holds (past the memory limit: the handler it runs,
handing the rest to another worker), exits, and a fresh one is forked from the zygote. Nothing
goes back to SQS for it.

The rules here are pure (the parent's :mod:`goraxfast.engine.recycler` reads the memory and
carries them out):

- each worker's message budget is drawn once, at its fork, between ``max_messages`` and
  ``max_messages`` plus a tenth: workers forked together, which run at the same rate, would
  otherwise all be recycled at the same moment and leave the engine with none (gunicorn's
  ``max_requests_jitter``, made automatic);
- memory is judged against what the worker held when it was fresh: a limit below that would
  recycle every worker the moment it starts, forever (a fork loop that runs no message), so
  such a limit is reported once and not applied.
"""

from __future__ import annotations

import enum
import sys

__all__ = [
    "JITTER_FRACTION",
    "NO_BUDGET_LIMIT",
    "MemoryVerdict",
    "memory_verdict",
    "message_budget",
    "reason_kind",
    "recycle_reason",
]

#: A budget no worker reaches: recycling after messages is off.
NO_BUDGET_LIMIT = sys.maxsize
#: How much later than ``max_messages`` a worker may be recycled, as a fraction of it.
JITTER_FRACTION = 0.1
MIB = 1024 * 1024


def message_budget(max_messages: int, rand: float) -> int:
    """How many deliveries a worker just forked may be given before it is recycled.

    ``rand`` is uniform in [0, 1): the budget is ``max_messages`` plus up to a tenth of it, so
    that workers started together spread their recycling out. 0 (the default) never recycles.
    """
    if max_messages <= 0:
        return NO_BUDGET_LIMIT
    return max_messages + int(max_messages * JITTER_FRACTION * rand)


class MemoryVerdict(enum.Enum):
    KEEP = "keep"  # under the limit, or no limit
    RECYCLE = "recycle"  # grew past the limit
    LIMIT_BELOW_FRESH = "limit_below_fresh"  # a fresh worker already holds more: not applied


def memory_verdict(rss_bytes: int, fresh_rss_bytes: int, limit_bytes: int) -> MemoryVerdict:
    """What a worker's resident memory says, against the limit and its own size when fresh."""
    if limit_bytes <= 0:
        return MemoryVerdict.KEEP
    if fresh_rss_bytes >= limit_bytes:
        return MemoryVerdict.LIMIT_BELOW_FRESH
    if rss_bytes >= limit_bytes:
        return MemoryVerdict.RECYCLE
    return MemoryVerdict.KEEP


def recycle_reason(
    *, messages: int, max_messages: int, rss_bytes: int = 0, limit_bytes: int = 0
) -> str:
    """The log line's reason: which limit, and the figure that reached it."""
    if limit_bytes and rss_bytes >= limit_bytes:
        return (
            f"resident memory {rss_bytes / MIB:.0f} MiB reached WORKER_MAX_MEMORY_MB="
            f"{limit_bytes // MIB} after {messages} messages"
        )
    return f"ran {messages} messages (WORKER_MAX_MESSAGES={max_messages})"


def reason_kind(reason: str) -> str:
    """Which limit a :func:`recycle_reason` names: ``memory`` or ``messages`` (the metric's label)."""
    return "memory" if "WORKER_MAX_MEMORY_MB" in reason else "messages"
