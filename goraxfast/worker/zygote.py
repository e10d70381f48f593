"""Worker processes: forked from a clean template, watched, killed and replaced.

Forking from a process whose event loop already runs is unsafe (its threads may hold locks the
child then waits on forever), so every worker is forked by a *zygote*: a process forked once at
start, before the parent's loop or any thread exists (or, when embedded, as the very first thing),
which does nothing but fork workers on request and report their exits. It keeps the handler and
the shared memory it inherited, so respawns cost a plain fork (~4 ms) rather than a fresh
interpreter.

Messages between parent and zygote are fixed-size records on two pipes (atomic below PIPE_BUF).

Signals. The zygote leaves shutdown to the parent, as the workers do: SIGTERM, SIGINT and SIGHUP
sent to the process group do nothing here (:func:`~goraxfast.worker.loop.leave_shutdown_to_parent`);
the parent ends the zygote with :data:`CMD_QUIT` (or by closing its command pipe) and the zygote
SIGKILLs the workers still alive, reaps them and exits 0. They are blocked from the fork until
the zygote's handlers are in place, so a group signal at that instant cannot kill it either. It
leaves the same way, within :data:`_REAP_INTERVAL_S`, when its parent dies (``os.getppid()``
changes, or its event pipe breaks); its workers, whose death signal is SIGKILL
(:func:`~goraxfast.worker.loop.die_with_parent`), die with it if it is killed itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from goraxfast.core.exit_codes import ZYGOTE_EXIT_CRASHED, ZYGOTE_EXIT_OK, describe_exit_code
from goraxfast.errors import EngineError
from goraxfast.ipc.rings import Seat
from goraxfast.worker.handler import BoundHandler
from goraxfast.worker.logcontext import in_worker
from goraxfast.worker.loop import SHUTDOWN_SIGNALS, leave_shutdown_to_parent, run_worker

_RECORD = struct.Struct("<Biii")  # kind, seat, pid, wait status
CMD_SPAWN = 1
CMD_QUIT = 2
EVT_SPAWNED = 1
EVT_EXITED = 2
EVT_SPAWN_FAILED = 3
_REAP_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    kind: int
    seat: int
    pid: int
    status: int

    def clean(self) -> bool:
        """It exited 0 (drained, recycled or orphaned), not by a signal or an error code."""
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    def describe_exit(self) -> str:
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            return f"killed by {name}"
        if os.WIFEXITED(self.status):
            return describe_exit_code("worker", os.WEXITSTATUS(self.status))
        return f"status {self.status}"


class Zygote:
    """Parent-side handle of the zygote process."""

    def __init__(
        self,
        seats: Sequence[Seat],
        bound: BoundHandler,
        *,
        process_timeout_s: float,
        worker_init: Callable[[int], None] | None = None,
    ) -> None:
        self._worker_init = worker_init
        self._seats = list(seats)
        self._bound = bound
        self._process_timeout_s = process_timeout_s
        self.pid = 0
        self._cmd_w = -1
        self._evt_r = -1
        self._buf = b""

    def start(self) -> None:
        cmd_r, cmd_w = os.pipe()
        evt_r, evt_w = os.pipe()
        parent_pid = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        # Blocked across the fork: a group signal arriving before the zygote's own handlers
        # are in place waits for them instead of killing it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the zygote
            os.close(cmd_w)
            os.close(evt_r)
            _zygote_main(
                mask,
                cmd_r,
                evt_w,
                parent_pid,
                self._seats,
                self._bound,
                self._process_timeout_s,
                self._worker_init,
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(cmd_r)
        os.close(evt_w)
        os.set_blocking(evt_r, False)
        self.pid, self._cmd_w, self._evt_r = pid, cmd_w, evt_r

    @property
    def events_fd(self) -> int:
        """Readable when the zygote has reported something; watch it with ``loop.add_reader``."""
        return self._evt_r

    def spawn(self, seat: int) -> None:
        self._send(CMD_SPAWN, seat)

    def read_events(self) -> list[WorkerEvent]:
        """Every complete event reported so far (non-blocking); empty list when none."""
        while True:
            try:
                chunk = os.read(self._evt_r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                if not self._buf:
                    raise EngineError(f"the worker zygote (pid {self.pid}) has gone away")
                break
            self._buf += chunk
        events = []
        size = _RECORD.size
        while len(self._buf) >= size:
            kind, seat, pid, status = _RECORD.unpack_from(self._buf)
            self._buf = self._buf[size:]
            events.append(WorkerEvent(kind, seat, pid, status))
        return events

    def wait_events(self, timeout_s: float) -> list[WorkerEvent]:
        """Blocking flavour for use before the event loop runs (start-up)."""
        ready, _, _ = select.select([self._evt_r], [], [], timeout_s)
        return self.read_events() if ready else []

    def stop(self) -> int | None:
        """Ask the zygote to leave and reap it; it SIGKILLs workers still alive. Returns its
        wait status (0: it left as asked), None when there was nothing to reap."""
        if self.pid == 0:
            return None
        status: int | None = None
        with contextlib.suppress(OSError):
            self._send(CMD_QUIT, 0)
        with contextlib.suppress(OSError):
            os.close(self._cmd_w)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self._evt_r)
        self.pid = 0
        return status

    def _send(self, kind: int, seat: int) -> None:
        os.write(self._cmd_w, _RECORD.pack(kind, seat, 0, 0))


def _zygote_main(
    mask: set[int | signal.Signals],
    cmd_r: int,
    evt_w: int,
    parent_pid: int,
    seats: Sequence[Seat],
    bound: BoundHandler,
    process_timeout_s: float,
    worker_init: Callable[[int], None] | None,
) -> NoReturn:
    code = ZYGOTE_EXIT_OK
    try:
        leave_shutdown_to_parent()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what arrived meanwhile: ignored now
        my_pid = os.getpid()
        workers: dict[int, int] = {}  # pid -> seat
        parent_gone = False

        def report(kind: int, seat: int, pid: int, status: int) -> None:
            nonlocal parent_gone
            if parent_gone:
                return
            try:
                os.write(evt_w, _RECORD.pack(kind, seat, pid, status))
            except BrokenPipeError:  # the parent's end is closed: it died
                parent_gone = True

        def spawn(seat: int) -> None:
            try:
                pid = os.fork()
            except OSError:
                report(EVT_SPAWN_FAILED, seat, 0, 0)
                return
            if pid == 0:
                os.close(cmd_r)
                os.close(evt_w)
                in_worker(seat)  # its log lines say which worker wrote them
                run_worker(
                    seats[seat],
                    bound,
                    seat,
                    parent_pid=my_pid,
                    process_timeout_s=process_timeout_s,
                    worker_init=worker_init,
                )
            workers[pid] = seat
            report(EVT_SPAWNED, seat, pid, 0)

        buf = b""
        running = True
        while running and not parent_gone:
            readable, _, _ = select.select([cmd_r], [], [], _REAP_INTERVAL_S)
            if readable:
                chunk = os.read(cmd_r, 4096)
                if not chunk:
                    running = False
                buf += chunk
                while len(buf) >= _RECORD.size:
                    kind, seat, _, _ = _RECORD.unpack_from(buf)
                    buf = buf[_RECORD.size :]
                    if kind == CMD_SPAWN:
                        spawn(seat)
                    elif kind == CMD_QUIT:
                        running = False
            _reap(workers, report)
            if os.getppid() != parent_pid:
                running = False
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while workers:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            seat = workers.pop(pid, -1)
            with contextlib.suppress(OSError):
                report(EVT_EXITED, seat, pid, status)
    except BaseException:
        traceback.print_exc()
        code = ZYGOTE_EXIT_CRASHED
    finally:
        os._exit(code)


def _reap(workers: dict[int, int], report: Callable[[int, int, int, int], None]) -> None:
    while workers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        seat = workers.pop(pid, -1)
        report(EVT_EXITED, seat, pid, status)
