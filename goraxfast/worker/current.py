"""The delivery a worker is running a handler on, for whatever wants to know without being
handed it: log records (message and execution ids in every line a handler logs) and spans
(the producer's trace context).

A context variable, not a global, because an ``async def`` handler's deliveries run
concurrently on one loop, each in its own task (and so its own context); the sync loop sets it
once per message, which costs one ``ContextVar.set`` (~40 ns). The loop sets it after decoding
the body, so a reader gets the message too; a delivery whose body did not decode is never
handed to a handler.
"""

from __future__ import annotations

from contextvars import ContextVar

from goraxfast.core.message import ExecutionMessage
from goraxfast.core.records import Delivery

__all__ = ["RUNNING", "running"]

#: (delivery, decoded message) of the handler running in this context, or None between them.
RUNNING: ContextVar[tuple[Delivery, ExecutionMessage] | None] = ContextVar(
    "goraxfast_running", default=None
)


def running() -> tuple[Delivery, ExecutionMessage] | None:
    """The delivery and message whose handler is running here, or None outside a handler."""
    return RUNNING.get()
