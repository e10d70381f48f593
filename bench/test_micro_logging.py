"""What the log context costs: on the hot path (a handler that does not log), and per line.

A worker sets :data:`goraxfast.worker.current.RUNNING` around each handler (two
``ContextVar.set`` calls); that is all logging adds per message when nothing is logged. The
filter and the formatters run only for a record that is written. One round is 10,000 messages
or records; ``extra_info`` has the cost of one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from goraxfast.core.message import ExecutionMessage
from goraxfast.core.records import Delivery
from goraxfast.ops.logs import JsonFormatter, OneWriteHandler, TextFormatter
from goraxfast.worker.current import RUNNING
from goraxfast.worker.logcontext import MessageContext

ROUND = 10_000
GROUP = f"logging: per message or record, {ROUND} per round"


def running() -> tuple[Delivery, ExecutionMessage]:
    delivery = Delivery(1, "2f1c7a4e-0b7d-4c1e-9a55-3f2b1d0c9e8a", 1, 0, 0, b"")
    message = ExecutionMessage(
        execution_id="exec-1", tenant_id="t1", workflow_id="w", workflow_version=1, trigger_type="x"
    )
    return delivery, message


def per_item(benchmark: Any) -> None:
    if benchmark.stats is not None:  # None when benchmarks are disabled (make test runs it once)
        benchmark.extra_info["us_per_item"] = benchmark.stats.stats.median / ROUND * 1e6


def test_context_variable_set_around_each_handler(benchmark: Any) -> None:
    """What the sync worker loop pays per message for the ids: set before, clear after."""
    value = running()
    set_running = RUNNING.set

    def run() -> int:
        for _ in range(ROUND):
            set_running(value)
            set_running(None)
        return ROUND

    benchmark.group = GROUP
    assert benchmark(run) == ROUND
    per_item(benchmark)


def test_a_debug_call_below_the_level(benchmark: Any) -> None:
    """A handler's ``log.debug`` while the level is INFO: the logging module's own check."""
    log = logging.getLogger("bench.below")
    log.setLevel(logging.INFO)

    def run() -> int:
        for _ in range(ROUND):
            log.debug("detail %s", "x")
        return ROUND

    benchmark.group = GROUP
    assert benchmark(run) == ROUND
    per_item(benchmark)


@pytest.fixture
def devnull() -> Iterator[Any]:
    with open(os.devnull, "w") as stream:
        yield stream


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter], ids=["text", "json"])
def test_a_line_written_with_the_ids(
    benchmark: Any, devnull: Any, formatter: Callable[[], logging.Formatter]
) -> None:
    """A handler's ``log.info`` inside a handler: filter, format, one write to /dev/null."""
    handler = OneWriteHandler(devnull)
    handler.setFormatter(formatter())
    handler.addFilter(MessageContext())
    log = logging.Logger("bench.written", logging.INFO)
    log.addHandler(handler)
    token = RUNNING.set(running())

    def run() -> int:
        for _ in range(ROUND):
            log.info("handling %s", "exec-1")
        return ROUND

    try:
        benchmark.group = GROUP
        assert benchmark(run) == ROUND
    finally:
        RUNNING.reset(token)
    per_item(benchmark)
