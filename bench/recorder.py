"""The handler work every contender does, and the record of what it handled and when.

Standard library only: Celery and dramatiq import this from their own virtual environment.

Each handled message appends one fixed-size record ``"<seq:010d> <time_ns:020d>\\n"`` to a
shared file opened with ``O_APPEND`` (appends of 32 bytes are atomic on a local file system), so
any number of processes of any framework can report without coordination, and the harness can
count progress from the file size alone. The cost (one ``write`` call, ~2 µs) is the same for
every contender.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

RECORD_BYTES = 32
HANDLER_KINDS = ("noop", "cpu", "sleep")


def record_line(seq: int, t_ns: int) -> bytes:
    return b"%010d %020d\n" % (seq, t_ns)


def parse_records(data: bytes) -> list[tuple[int, int]]:
    """``(seq, handled_ns)`` pairs; a torn trailing record (still being written) is ignored."""
    out = []
    for at in range(0, len(data) - RECORD_BYTES + 1, RECORD_BYTES):
        seq, t_ns = data[at : at + RECORD_BYTES].split()
        out.append((int(seq), int(t_ns)))
    return out


def read_records(path: str) -> list[tuple[int, int]]:
    try:
        with open(path, "rb") as f:
            return parse_records(f.read())
    except FileNotFoundError:
        return []


def count_records(path: str) -> int:
    """Records written so far (duplicates included), from the size alone: cheap to poll."""
    try:
        return os.stat(path).st_size // RECORD_BYTES
    except FileNotFoundError:
        return 0


class Recorder:
    """Appends records for the current process; reopens after a fork (the fd is per process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = -1

    def record(self, seq: int) -> None:
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        os.write(self._fd, record_line(seq, time.time_ns()))


def seq_of(execution_id: str) -> int:
    """The bench numbers every message: execution ids look like ``bench-<run>-<seq>``."""
    return int(execution_id.rsplit("-", 1)[1])


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """``noop``, ``cpu:MS`` (burn MS ms of CPU) or ``sleep:MS`` (wait MS ms, no CPU)."""

    kind: str
    ms: float = 0.0

    @classmethod
    def parse(cls, text: str) -> HandlerSpec:
        kind, _, arg = text.partition(":")
        if kind not in HANDLER_KINDS:
            raise ValueError(f"handler must be noop, cpu:MS or sleep:MS, got {text!r}")
        if kind == "noop":
            if arg:
                raise ValueError("noop takes no argument")
            return cls("noop")
        try:
            ms = float(arg)
        except ValueError:
            raise ValueError(f"{kind} needs a number of milliseconds, got {text!r}") from None
        if ms < 0:
            raise ValueError(f"{kind} milliseconds must be >= 0, got {ms}")
        return cls(kind, ms)

    def __str__(self) -> str:
        return self.kind if self.kind == "noop" else f"{self.kind}:{self.ms:g}"


def burn_cpu(ms: float) -> None:
    """Spin until this thread has used ``ms`` of CPU (not wall time: preemption is not counted,
    so the work per message is the same whatever else the machine is doing)."""
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        pass


def do_work(spec: HandlerSpec) -> None:
    """The synchronous handler body (``sleep`` blocks the calling thread)."""
    if spec.kind == "cpu":
        burn_cpu(spec.ms)
    elif spec.kind == "sleep":
        time.sleep(spec.ms / 1000.0)
