"""Handlers for ``goraxfast run --handler cli_handlers:...`` in subprocess tests (trace via env)."""

from __future__ import annotations

import os
import time

from engine_support import append


def slow(msg, info):  # type: ignore[no-untyped-def]
    append(os.environ["GORAXFAST_TEST_TRACE"], "start", msg.execution_id, os.getpid())
    time.sleep(float(os.environ.get("GORAXFAST_TEST_SLEEP", "1.0")))
    append(os.environ["GORAXFAST_TEST_TRACE"], "end", msg.execution_id, os.getpid())
