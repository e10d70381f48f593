"""Handlers for ``goraxfast run --handler cli_handlers:...`` in subprocess tests (trace via env)."""

from __future__ import annotations

import logging
import os
import time

from engine_support import append


def slow(msg, info):  # type: ignore[no-untyped-def]
    append(os.environ["GORAXFAST_TEST_TRACE"], "start", msg.execution_id, os.getpid())
    time.sleep(float(os.environ.get("GORAXFAST_TEST_SLEEP", "1.0")))
    append(os.environ["GORAXFAST_TEST_TRACE"], "end", msg.execution_id, os.getpid())


def fail(msg, info):  # type: ignore[no-untyped-def]
    """Always raises, naming the execution; traces ``fail <execution_id> <message_id> <receive>``."""
    append(
        os.environ["GORAXFAST_TEST_TRACE"],
        "fail",
        msg.execution_id,
        info.message_id,
        info.receive_count,
    )
    raise ValueError(f"boom-{msg.execution_id}")


def logs_then_fails(msg, info):  # type: ignore[no-untyped-def]
    """Logs through the app's own logger at three levels, then raises."""
    log = logging.getLogger("myapp.jobs")
    log.debug("debug detail of %s", msg.execution_id)
    log.info("handling %s", msg.execution_id)
    log.warning("about to fail on %s", msg.execution_id)
    raise ValueError(f"bad input in {msg.execution_id}")


def init_worker(worker_index):  # type: ignore[no-untyped-def]
    """A ``--worker-init``: traces ``init <worker_index> <pid>`` once per new worker."""
    append(os.environ["GORAXFAST_TEST_TRACE"], "init", worker_index, os.getpid())


def init_takes_nothing():  # type: ignore[no-untyped-def]
    """Not a worker_init: it cannot take the worker's index."""


async def init_async(worker_index):  # type: ignore[no-untyped-def]
    """Not a worker_init: a worker calls it before any event loop exists."""
