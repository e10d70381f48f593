"""The worker loops, run in a thread of the test process over a real seat (shared memory,
rings, eventfd doorbells): what the parent sees, when it is told, and what is logged.

The engine's tests fork real workers; these pin down the loop's promises that an end-to-end run
would only show as a delay (results are announced while the worker is still busy) or as log
lines (a failure's traceback, within a budget; nothing for a success).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Iterator

import pytest

from goraxfast.core import counters as C
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.ratelimit import LogBudget
from goraxfast.core.records import DELIVERY_ENCODER, RESULT_DECODER, Delivery, Result
from goraxfast.core.retry import Outcome
from goraxfast.ipc.rings import Seat, create_seats
from goraxfast.worker import loop as W
from goraxfast.worker.current import running
from goraxfast.worker.handler import Reject, Retry, bind_handler

WAIT_S = 10.0  # liveness bound only: every wait below ends at once when the code is right


@pytest.fixture
def seat() -> Iterator[Seat]:
    [made] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
    yield made


def deliver(seat: Seat, *execution_ids: str) -> None:
    producer = seat.down.producer()
    for slot, execution_id in enumerate(execution_ids, start=1):
        msg = ExecutionMessage.new(
            tenant_id="t",
            workflow_id="w",
            workflow_version=1,
            trigger_type="test",
            execution_id=execution_id,
        )
        body = encode_message(msg)
        assert producer.put(DELIVERY_ENCODER.encode(Delivery(slot, execution_id, 1, 0, 0, body)))
    producer.notify()


def test_a_long_handlers_result_is_announced_before_the_next_handler_ends(seat: Seat) -> None:
    """A quick message, then one over NOTIFY_EVERY_NS, then one that runs until released: the
    second result must wake the parent while the third handler still runs."""
    release = threading.Event()

    def handler(msg: ExecutionMessage) -> None:
        if msg.execution_id == "long":
            release.wait(0.05)  # well over the 1 ms notify interval
        elif msg.execution_id == "blocking":
            assert release.wait(WAIT_S)

    worker = W._SyncWorker(seat, bind_handler(handler), 0, os.getppid(), 60.0)
    deliver(seat, "quick", "long", "blocking")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    up = seat.up.consumer()
    doorbell = seat.up.doorbell
    seen: list[int] = []
    try:
        while 2 not in seen:
            assert doorbell.wait(WAIT_S), f"no wake-up for the long handler's result: {seen}"
            seen += [RESULT_DECODER.decode(raw).slot for raw in up.get_many()]
        assert 3 not in seen  # the third handler is still running
    finally:
        release.set()
        seat.counters[C.CONTROL] = C.CONTROL_DRAIN
        seat.down.producer().notify()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    seen += [RESULT_DECODER.decode(raw).slot for raw in up.get_many()]
    assert seen == [1, 2, 3]
    assert seat.counters[C.SUCCEEDED] == 3 and seat.counters[C.STARTED] == 3


# --- failures: the traceback in the log (within a budget), the reason on one line ---------------


def run_until_results(worker: W._WorkerBase, seat: Seat, count: int) -> list[Result]:
    """Run ``worker`` in a thread until it has answered ``count`` deliveries, then drain it."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    up = seat.up.consumer()
    results: list[Result] = []
    try:
        while len(results) < count:
            assert seat.up.doorbell.wait(WAIT_S), f"only {len(results)} results"
            results += [RESULT_DECODER.decode(raw) for raw in up.get_many()]
    finally:
        seat.counters[C.CONTROL] = C.CONTROL_DRAIN
        seat.down.producer().notify()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    return results


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "goraxfast.worker" and r.exc_info]


def bad_input(msg: ExecutionMessage) -> None:
    raise ValueError(f"bad input in {msg.execution_id}")


async def async_bad_input(msg: ExecutionMessage) -> None:
    raise ValueError(f"bad input in {msg.execution_id}")


WORKERS = {"sync": (W._SyncWorker, bad_input), "async": (W._AsyncWorker, async_bad_input)}


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_a_failing_handlers_traceback_is_logged_with_its_message(
    seat: Seat, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    loop, handler = WORKERS[kind]
    deliver(seat, "exec-1")

    [result] = run_until_results(loop(seat, bind_handler(handler), 3, os.getppid(), 60.0), seat, 1)

    assert (result.outcome, result.reason) == (int(Outcome.FAIL), "ValueError: bad input in exec-1")
    [record] = tracebacks(caplog)
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "raised on message exec-1 (receive count 1, tenant t, execution exec-1, worker 3)" in (
        message
    )
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_past_the_budget_tracebacks_are_counted_in_one_line(
    seat: Seat, caplog: pytest.LogCaptureFixture
) -> None:
    worker = W._SyncWorker(seat, bind_handler(bad_input), 0, os.getppid(), 60.0)
    worker.tracebacks = LogBudget(burst=2, refill_s=3600)
    deliver(seat, *(f"exec-{i}" for i in range(5)))

    results = run_until_results(worker, seat, 5)
    worker.log_suppressed(final=True)  # what run_worker does as the worker leaves

    assert [r.outcome for r in results] == [int(Outcome.FAIL)] * 5
    assert len(tracebacks(caplog)) == 2
    [summary] = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
    assert re.fullmatch(
        r"3 more handler tracebacks suppressed in the last \d+ s \(worker 0\)", summary
    )


@pytest.mark.parametrize(
    "ending", [Retry(5, "database busy"), Reject("retired workflow")], ids=["Retry", "Reject"]
)
def test_retry_and_reject_are_outcomes_not_tracebacks(
    seat: Seat, caplog: pytest.LogCaptureFixture, ending: Exception
) -> None:
    def handler(msg: ExecutionMessage) -> None:
        raise ending

    deliver(seat, "exec-1")

    [result] = run_until_results(
        W._SyncWorker(seat, bind_handler(handler), 0, os.getppid(), 60.0), seat, 1
    )

    assert result.reason in ("database busy", "retired workflow")
    assert tracebacks(caplog) == []


def test_a_success_logs_nothing(seat: Seat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    deliver(seat, "exec-1", "exec-2")

    run_until_results(
        W._SyncWorker(seat, bind_handler(lambda msg: None), 0, os.getppid(), 60.0), seat, 2
    )

    assert [r for r in caplog.records if r.name.startswith("goraxfast")] == []


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ValueError("bad\ninput\r\n  here"), "ValueError: bad input here"),
        (KeyError("tenant"), "KeyError: 'tenant'"),
        (RuntimeError(), "RuntimeError"),
        (SystemExit(3), "SystemExit: 3"),
        (ValueError("x" * 5000), "ValueError: " + "x" * (W.REASON_MAX_CHARS - 12)),
    ],
    ids=["multi-line", "key", "no text", "exit", "long"],
)
def test_a_failures_reason_is_its_type_and_text_on_one_bounded_line(
    exc: BaseException, reason: str
) -> None:
    assert W.outcome_of(exc) == (Outcome.FAIL, -1.0, reason)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_an_exception_that_cannot_be_printed_still_has_a_reason() -> None:
    assert W.outcome_of(_Unprintable())[2] == "_Unprintable: <unprintable>"


# --- what a handler's own code can ask: which delivery it is running on ------------------------


def test_a_sync_handler_sees_its_own_delivery_and_message_as_running(seat: Seat) -> None:
    seen: list[tuple[str, str]] = []

    def handler(msg: ExecutionMessage) -> None:
        now = running()
        assert now is not None
        seen.append((now[0].message_id, now[1].execution_id))
        if msg.execution_id == "b":
            raise ValueError("boom")

    worker = W._SyncWorker(seat, bind_handler(handler), 0, os.getppid(), 60.0)
    deliver(seat, "a", "b", "c")
    run_until_results(worker, seat, 3)
    assert seen == [("a", "a"), ("b", "b"), ("c", "c")]


def test_concurrent_async_handlers_each_see_their_own_delivery(seat: Seat) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(msg: ExecutionMessage) -> None:
        await asyncio.sleep(0)  # let the others start: their contexts must not mix with ours
        now = running()
        assert now is not None
        seen.append((now[0].message_id, msg.execution_id))

    worker = W._AsyncWorker(seat, bind_handler(handler), 0, os.getppid(), 60.0)
    deliver(seat, "a", "b", "c")
    run_until_results(worker, seat, 3)
    assert sorted(seen) == [("a", "a"), ("b", "b"), ("c", "c")]
