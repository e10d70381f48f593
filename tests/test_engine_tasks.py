"""A core task of the engine that dies of a bug stops the engine loudly instead of stalling it.

Before this was checked, an exception in the dispatcher ended the poller task that called it:
nothing was logged, nothing more was received, and the engine reported itself running. The data
plane is :class:`goraxfast.testing.InMemoryQueue`, and for the poller a subclass that answers
with the shape of a bug, which no real server does. The last test is the example of
:mod:`goraxfast.testing`'s docstring: how a user tests a handler with it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage
from goraxfast.engine.engine import Engine
from goraxfast.errors import EngineError
from goraxfast.testing import DEFAULT_DLQ_URL, DEFAULT_QUEUE_URL, InMemoryQueue


def offline_config(**changes: Any) -> Config:
    """One worker, no HTTP server, queue URLs nothing contacts: the data plane is in memory."""
    config = Config(
        queue_url=DEFAULT_QUEUE_URL,
        dlq_url=DEFAULT_DLQ_URL,
        worker_processes=1,
        health_port=0,
        shutdown_grace_s=5,
    )
    return config.with_(**changes)


def messages(count: int) -> list[ExecutionMessage]:
    return [
        ExecutionMessage.new(tenant_id="t", workflow_id="w", workflow_version=1, trigger_type="x")
        for _ in range(count)
    ]


class _ReceivesWhatNobodyCanRead(InMemoryQueue):
    """Answers ReceiveMessage with an object the dispatcher cannot read; acks succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.receives = 0

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Any]:
        self.receives += 1
        return [object()]


async def test_a_poller_killed_by_a_bug_stops_the_engine_with_exit_code_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = offline_config(pollers=1)
    plane = _ReceivesWhatNobodyCanRead()
    engine = Engine(config, lambda msg: None, data_plane=plane, serve_http=False)
    with caplog.at_level(logging.ERROR, logger="goraxfast"):
        await engine.start()
        await asyncio.wait_for(engine.wait(), 30)
    assert plane.receives == 1
    assert isinstance(engine.fatal_error, EngineError)
    assert "goraxfast-poller-0 failed" in str(engine.fatal_error)
    assert engine.exit_code == 1
    assert any("goraxfast-poller-0 failed" in r.getMessage() for r in caplog.records)


async def test_a_bug_in_reading_results_stops_the_engine_with_exit_code_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Results are read by an event-loop callback, not a task: asyncio alone would only log."""
    from goraxfast.engine.dispatch import Dispatcher

    original = Dispatcher.on_results
    calls = []

    def broken(self: Dispatcher, seat: Any) -> int:
        calls.append(seat)
        if len(calls) == 1:  # once: the engine must stop because of it, then stop quickly
            raise RuntimeError("bookkeeping bug")
        return original(self, seat)

    monkeypatch.setattr(Dispatcher, "on_results", broken)
    config = offline_config()
    queue = InMemoryQueue()
    queue.publish_many(messages(20))
    engine = Engine(config, lambda msg: None, data_plane=queue, serve_http=False)
    await engine.start()
    await asyncio.wait_for(engine.wait(), 30)
    assert isinstance(engine.fatal_error, EngineError)
    assert "bookkeeping bug" in str(engine.fatal_error)
    assert engine.exit_code == 1


@pytest.mark.slow
async def test_a_worker_that_gives_up_while_the_engine_is_still_starting_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """start() returns before a slow worker_init ends; if that init then fails three times
    while the engine is still starting (its HTTP server slow to come up, here), the failure
    must still stop the engine once it runs, not leave it running without workers."""
    import time

    from goraxfast.ops.http import HealthServer

    def init_fails_slowly(index: int) -> None:
        time.sleep(1.2)  # longer than the 1 s start() waits for an init
        raise RuntimeError("no database")

    started = HealthServer.start

    async def slow_start(self: HealthServer) -> None:
        await asyncio.sleep(5)
        await started(self)

    monkeypatch.setattr(HealthServer, "start", slow_start)
    config = offline_config()
    engine = Engine(
        config, lambda msg: None, data_plane=InMemoryQueue(), worker_init=init_fails_slowly
    )
    await engine.start()
    await asyncio.wait_for(engine.wait(), 30)
    assert isinstance(engine.fatal_error, EngineError)
    assert "failed to start 3 times in a row" in str(engine.fatal_error)
    assert engine.exit_code == 1


def handle(message: ExecutionMessage) -> None:
    if message.workflow_version < 2:
        raise RuntimeError("workflow version 1 is retired")


async def test_an_old_workflow_ends_in_the_dlq() -> None:
    """The example of goraxfast.testing's docstring, as a user would write it."""
    queue = InMemoryQueue()
    for version in (1, 2):
        queue.publish(
            ExecutionMessage.new(
                tenant_id="t1", workflow_id="w", workflow_version=version, trigger_type="manual"
            )
        )
    config = queue.config(worker_processes=1, max_retries=1)  # dead-letter at once
    async with Engine(config, handle, data_plane=queue, serve_http=False):
        await queue.wait_until_settled(timeout_s=10)
    [letter] = queue.dead_letters()  # and both left the queue: queue.deleted()
    assert letter.decode().workflow_version == 1
    assert "workflow version 1 is retired" in letter.reason
