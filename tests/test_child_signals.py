"""The zygote and the workers leave shutdown to the engine, and still die with their parent.

Real forks, real signals. Each scenario runs in a forked stand-in for the engine (:func:`in_child`)
that is a *subreaper* (``PR_SET_CHILD_SUBREAPER``): processes orphaned inside it are adopted by it,
so it can reap them and report how they ended (exit code or signal), which an orphan's real
grandparent could never learn. The stand-in leads its own process group, so ``killpg`` reaches
it, its zygote and its workers and nothing else, as systemd's ``KillMode=control-group``,
dumb-init or GNU ``timeout`` would.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

from goraxfast.core import counters as C
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.records import DELIVERY_ENCODER, RESULT_DECODER, Delivery, Result
from goraxfast.core.retry import Outcome
from goraxfast.ipc.rings import Seat, create_seats
from goraxfast.worker import loop as W
from goraxfast.worker.handler import bind_handler
from goraxfast.worker.zygote import EVT_EXITED, EVT_SPAWNED, WorkerEvent, Zygote

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: prctl")

WAIT_S = 20.0  # liveness bound only: every wait below ends at an event when the code is right
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
_PR_SET_CHILD_SUBREAPER = 36


# --- the stand-in engine -------------------------------------------------------------------------


def in_child(scenario: Callable[[], Any]) -> Any:
    """Run ``scenario`` in a forked subreaper leading its own process group (default signal
    dispositions, as the engine has when it forks); return what it returned (JSON), or fail the
    test with the traceback it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        try:
            os.setpgid(0, 0)
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            out = {"result": scenario()}
        except BaseException:
            out = {"error": traceback.format_exc()}
        with os.fdopen(w, "wb") as pipe:
            pipe.write(json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = _read_all(r, WAIT_S * 2)
    os.waitpid(pid, 0)
    assert data, "the stand-in engine reported nothing in time"
    out = json.loads(data)
    if "error" in out:
        pytest.fail(out["error"])
    return out["result"]


def _read_all(fd: int, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([pipe], [], [], left)[0]:
                break
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def wait_status(pid: int) -> int:
    """Reap ``pid`` (a child, or an orphan this subreaper adopted) within the bound."""
    fd = os.pidfd_open(pid)
    try:
        assert select.select([fd], [], [], WAIT_S)[0], f"pid {pid} still running after {WAIT_S} s"
    finally:
        os.close(fd)
    return os.waitpid(pid, 0)[1]


def ended(status: int) -> str:
    """A wait status in words: ``exit 0``, ``killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"


# --- messages through a seat ---------------------------------------------------------------------


def deliver(seat: Seat, slot: int) -> None:
    msg = ExecutionMessage.new(
        tenant_id="t", workflow_id="w", workflow_version=1, trigger_type="test"
    )
    record = Delivery(slot, f"m-{slot}", 1, 0, 0, encode_message(msg))
    producer = seat.down.producer()
    assert producer.put(DELIVERY_ENCODER.encode(record))
    producer.notify()


def next_result(seat: Seat) -> Result:
    up = seat.up.consumer()
    while True:
        got = up.get_many()
        if got:
            return RESULT_DECODER.decode(got[0])
        assert seat.up.doorbell.wait(WAIT_S), "no result from the worker"


_backlog: dict[int, list[WorkerEvent]] = {}


def wait_event(zygote: Zygote, kind: int) -> WorkerEvent:
    """The next event of ``kind`` from the zygote; events of other kinds read meanwhile are
    kept for later calls."""
    backlog = _backlog.setdefault(id(zygote), [])
    deadline = time.monotonic() + WAIT_S
    while True:
        for i, ev in enumerate(backlog):
            if ev.kind == kind:
                return backlog.pop(i)
        left = deadline - time.monotonic()
        assert left > 0, f"no zygote event {kind} within {WAIT_S} s"
        backlog += zygote.wait_events(left)


def noop(msg: ExecutionMessage) -> None:
    pass


async def async_noop(msg: ExecutionMessage) -> None:
    pass


HANDLERS = {"sync": noop, "async": async_noop}


# --- group signals --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(HANDLERS))
@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_a_group_signal_leaves_the_zygote_and_the_workers_running(
    sig: signal.Signals, kind: str
) -> None:
    def scenario() -> dict[str, Any]:
        seats = create_seats(2, 1 << 16, C.COUNTER_SLOTS)
        zygote = Zygote(seats, bind_handler(HANDLERS[kind]), process_timeout_s=60)
        zygote.start()
        zygote.spawn(0)
        worker = wait_event(zygote, EVT_SPAWNED)
        # The engine forks with default dispositions, then handles the signals in its loop.
        signal.signal(sig, lambda *_: None)

        os.killpg(0, sig)  # the whole group: engine, zygote, worker

        deliver(seats[0], 1)  # the worker still runs handlers ...
        result = next_result(seats[0])
        zygote.spawn(1)  # ... and the zygote still forks
        second = wait_event(zygote, EVT_SPAWNED)
        for seat in seats:  # the engine's own way to stop them: drain
            seat.counters[C.CONTROL] = C.CONTROL_DRAIN
            seat.down.producer().notify()
        exits = sorted(
            (ev.seat, ended(ev.status))
            for ev in (wait_event(zygote, EVT_EXITED), wait_event(zygote, EVT_EXITED))
        )
        status = zygote.stop()
        return {
            "outcome": result.outcome,
            "pids": [worker.pid > 0, second.pid > 0],
            "exits": exits,
            "zygote": ended(status) if status is not None else "not reaped",
        }

    report = in_child(scenario)

    assert report == {
        "outcome": int(Outcome.SUCCESS),
        "pids": [True, True],
        "exits": [[0, "exit 0"], [1, "exit 0"]],
        "zygote": "exit 0",
    }


def test_a_program_a_handler_starts_still_obeys_sigterm() -> None:
    """The children's shutdown signals are no-op handlers, not SIG_IGN: exec resets a handler
    to the default but keeps an ignored signal ignored."""
    script = "import signal, sys; sys.exit(signal.getsignal(signal.SIGTERM) != signal.SIG_DFL)"

    def starts_a_program(msg: ExecutionMessage) -> None:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=WAIT_S)

    def scenario() -> list[Any]:
        [seat] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
        zygote = Zygote([seat], bind_handler(starts_a_program), process_timeout_s=60)
        zygote.start()
        zygote.spawn(0)
        wait_event(zygote, EVT_SPAWNED)
        deliver(seat, 1)
        result = next_result(seat)
        zygote.stop()
        return [result.outcome, result.reason]

    assert in_child(scenario) == [int(Outcome.SUCCESS), ""]


# --- orphans ------------------------------------------------------------------------------------


def _exit_with(run: Callable[[], int]) -> NoReturn:  # pragma: no cover - runs in a child
    code = W.EXIT_CRASHED
    try:
        code = run()
    finally:
        os._exit(code)


def sleeps(msg: ExecutionMessage) -> None:
    time.sleep(WAIT_S * 3)  # bounded: a regression must not leave an orphan for long


WORKER_LOOPS: dict[str, tuple[type[W._WorkerBase], Callable[..., Any]]] = {
    "sync": (W._SyncWorker, noop),
    "async": (W._AsyncWorker, async_noop),
}


@pytest.mark.parametrize("kind", sorted(WORKER_LOOPS))
def test_an_idle_worker_whose_parent_died_leaves_on_its_own(kind: str) -> None:
    """The portable way, without a death signal: the worker loop's idle check of getppid()."""
    loop, handler = WORKER_LOOPS[kind]

    def scenario() -> str:
        [seat] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
        bound = bind_handler(handler)
        pid_r, pid_w = os.pipe()
        stand_in = os.fork()
        if stand_in == 0:  # pragma: no cover - a zygote's stand-in: forks the loop, then dies
            me = os.getpid()
            worker = os.fork()
            if worker == 0:
                W._reset_inherited_state()
                _exit_with(loop(seat, bound, 0, me, 60.0).run)  # type: ignore[attr-defined]
            os.write(pid_w, worker.to_bytes(4, "little"))
            os._exit(0)
        worker_pid = int.from_bytes(os.read(pid_r, 4), "little")
        assert ended(wait_status(stand_in)) == "exit 0"
        return ended(wait_status(worker_pid))

    assert in_child(scenario) == "exit 0"


def test_a_worker_whose_zygote_is_killed_mid_handler_dies_with_it() -> None:
    """PR_SET_PDEATHSIG: a sync handler running for an hour is no reason to outlive the zygote."""

    def scenario() -> list[str]:
        [seat] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
        started_r, started_w = os.pipe()

        def announces_then_sleeps(msg: ExecutionMessage) -> None:
            os.write(started_w, b"s")
            time.sleep(WAIT_S * 3)  # bounded: a regression must not leave an orphan for long

        zygote = Zygote([seat], bind_handler(announces_then_sleeps), process_timeout_s=3600)
        zygote.start()
        zygote.spawn(0)
        worker = wait_event(zygote, EVT_SPAWNED)
        deliver(seat, 1)
        assert select.select([started_r], [], [], WAIT_S)[0], "the handler never started"

        os.kill(zygote.pid, signal.SIGKILL)

        return [ended(wait_status(zygote.pid)), ended(wait_status(worker.pid))]

    assert in_child(scenario) == ["killed by SIGKILL", "killed by SIGKILL"]


def test_the_zygote_kills_its_workers_and_exits_0_when_its_parent_dies() -> None:
    def scenario() -> list[Any]:
        pids_r, pids_w = os.pipe()
        engine = os.fork()
        if engine == 0:  # pragma: no cover - the stand-in engine, killed below
            [seat] = create_seats(1, 1 << 16, C.COUNTER_SLOTS)
            zygote = Zygote([seat], bind_handler(sleeps), process_timeout_s=3600)
            zygote.start()
            zygote.spawn(0)
            worker = wait_event(zygote, EVT_SPAWNED)
            deliver(seat, 1)  # a busy worker
            os.write(pids_w, zygote.pid.to_bytes(4, "little") + worker.pid.to_bytes(4, "little"))
            time.sleep(WAIT_S * 3)  # bounded: a regression must not leave an orphan for long
        pids = os.read(pids_r, 8)
        zygote_pid, worker_pid = (
            int.from_bytes(pids[:4], "little"),
            int.from_bytes(pids[4:], "little"),
        )
        worker_fd = os.pidfd_open(worker_pid)  # opened while it surely runs: no pid reuse

        os.kill(engine, signal.SIGKILL)

        engine_end = ended(wait_status(engine))
        zygote_end = ended(wait_status(zygote_pid))  # adopted by this subreaper
        worker_gone = bool(select.select([worker_fd], [], [], WAIT_S)[0])
        return [engine_end, zygote_end, worker_gone]

    assert in_child(scenario) == ["killed by SIGKILL", "exit 0", True]
