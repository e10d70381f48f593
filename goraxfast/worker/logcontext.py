"""The ids of the message a worker is running, on every log record it writes meanwhile.

:class:`MessageContext` is a :class:`logging.Filter` for a *handler* (so it sees the records of
every logger, the application's own too): while a handler runs, it reads
:data:`goraxfast.worker.current.RUNNING` and sets ``message_id``, ``execution_id``,
``tenant_id`` and ``receive_count`` on the record; in a worker process it sets ``worker`` (the
index) always. A value the call gave itself with ``extra=`` is kept.

It costs nothing per message: the context variable is set by the worker loops anyway, and read
only when a record is written. The ``goraxfast`` command installs it; an application that
embeds the engine can add it to its own handler (``handler.addFilter(MessageContext())``).
"""

from __future__ import annotations

import logging

from goraxfast.worker.current import RUNNING

__all__ = ["MessageContext", "in_worker", "worker_index"]

_worker_index: int | None = None


def in_worker(index: int) -> None:
    """Called in a newly forked worker: its records carry ``worker=index`` from now on."""
    global _worker_index
    _worker_index = index


def worker_index() -> int | None:
    """This process's worker index, None outside a worker (the parent, the zygote)."""
    return _worker_index


class MessageContext(logging.Filter):
    """Adds the running message's ids and the worker's index to a record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        running = RUNNING.get()
        if running is not None:
            delivery, message = running
            attrs.setdefault("message_id", delivery.message_id)
            attrs.setdefault("execution_id", message.execution_id)
            attrs.setdefault("tenant_id", message.tenant_id)
            attrs.setdefault("receive_count", delivery.receive_count)
        if _worker_index is not None:
            attrs.setdefault("worker", _worker_index)
        return True
