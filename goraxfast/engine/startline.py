"""The engine's start line: one log line an operator reads first when a deploy misbehaves.

It exists apart from the lifecycle because it is a description, not a step: from the config and
a few facts of the running engine (the client in use, the workers, the handler, the receive
pipeline's limits, the health port) it builds the ``engine`` facts and logs them with the whole
effective configuration (credentials masked), as ``config`` (a JSON object, or ``KEY=value``
pairs in the text format). Nothing here changes what the engine does.
"""

from __future__ import annotations

import logging
from typing import Any

from goraxfast.config import Config
from goraxfast.engine.build import Parts, handlers_at_once
from goraxfast.ops.logs import package_version
from goraxfast.worker.handler import BoundHandler

__all__ = ["log_start", "start_facts"]

log = logging.getLogger("goraxfast.engine")


def start_facts(
    cfg: Config,
    parts: Parts,
    *,
    workers: int,
    bound: BoundHandler,
    client: str,
    health_port: int | None,
) -> dict[str, Any]:
    """The ``engine`` facts of the start line: version, client, queues, workers, retries."""
    limits = parts.limits
    pipeline = (
        f"fixed ({limits.fixed_pollers} in flight, prefetch {limits.fixed_prefetch})"
        if limits.fixed_pollers is not None
        else f"auto ({limits.min_pollers}-{limits.max_pollers} in flight, prefetch up to "
        f"{limits.max_prefetch})"
    )
    return {
        "version": package_version(),
        "client": client,
        "region": cfg.aws_region,
        "endpoint": cfg.aws_endpoint or None,
        "queue_url": cfg.queue_url,
        "dlq_url": cfg.dlq_url or None,
        "fifo": parts.dispatcher.order is not None,
        "workers": workers,
        "handler": bound.describe(),
        "handler_kind": "async" if bound.is_async else "sync",
        "handlers_at_once": handlers_at_once(cfg, bound, workers),
        "max_retries": cfg.max_retries,
        "retry_base_s": cfg.retry_base_s,
        "retry_max_s": cfg.retry_max_s,
        "pipeline": pipeline,
        "health_port": health_port,
    }


def log_start(cfg: Config, engine: dict[str, Any]) -> None:
    """Log the start line: ``engine`` (from :func:`start_facts`) and the effective config."""
    log.info(
        "engine running: goraxfast %s, %d worker(s) (%s handler %s), %d handlers at once, "
        "%s client, region %s, %s queue %s, %s, retries: dead-lettered at receive %d, "
        "backoff %g-%g s, receive pipeline %s",
        engine["version"],
        engine["workers"],
        engine["handler_kind"],
        engine["handler"],
        engine["handlers_at_once"],
        engine["client"],
        cfg.aws_region,
        "FIFO (one message of a group at a time, in order)" if engine["fifo"] else "standard",
        cfg.queue_url,
        f"DLQ {cfg.dlq_url}" if cfg.dlq_url else "no DLQ (left to the redrive policy)",
        cfg.max_retries,
        cfg.retry_base_s,
        cfg.retry_max_s,
        engine["pipeline"],
        extra={"engine": engine, "config": cfg.effective_settings()},
    )
