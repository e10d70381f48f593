"""The engine's background tasks: the acker, lease keeping, throttle expiry and supervision.

They exist as one list because the lifecycle treats them alike: each is started once the parts
are wired, named so a log line says which one failed, watched so that one ending by anything but
cancellation stops the engine, and cancelled together at the end. The receive pipeline is not
among them: it starts last, once the rest can take what it brings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from goraxfast.config import Config
from goraxfast.engine.build import Parts
from goraxfast.engine.timers import expire_throttled, keep_leases
from goraxfast.engine.workforce import Workforce

__all__ = ["start_background"]


def start_background(
    loop: asyncio.AbstractEventLoop, cfg: Config, parts: Parts, workforce: Workforce
) -> list[asyncio.Task[Any]]:
    """Start the acker, the lease keeper, the throttle expiry and the supervisor, in order,
    and the memory watch when WORKER_MAX_MEMORY_MB asks for one."""
    dispatcher = parts.dispatcher
    tasks = [
        loop.create_task(parts.acker.run(), name="goraxfast-acker"),
        loop.create_task(
            keep_leases(
                dispatcher,
                parts.acker,
                visibility_timeout_s=cfg.visibility_timeout_s,
                clock=time.monotonic,
                sleep=asyncio.sleep,
            ),
            name="goraxfast-leases",
        ),
        loop.create_task(
            expire_throttled(
                dispatcher,
                max_wait_s=cfg.throttle_max_wait_s,
                clock=time.monotonic,
                waiting=parts.throttle_waiting,
            ),
            name="goraxfast-throttle",
        ),
        loop.create_task(workforce.supervise(), name="goraxfast-supervise"),
    ]
    if workforce.recycler.watches_memory:
        tasks.append(
            loop.create_task(
                workforce.recycler.watch_memory(workforce.states), name="goraxfast-memory"
            )
        )
    return tasks
