"""``process_*`` and ``python_*`` metrics read from ``/proc`` at scrape time, and the workers' sum.

The names and meanings are the ones every Prometheus client library exports (prometheus_client's
``ProcessCollector``, ``PlatformCollector`` and ``GCCollector``), so the dashboards and alerts
written for them work here unchanged; they are read without that library, from the same files.
They describe the scraped process only, unlabelled, as the convention wants: the parent.

The workers are other processes, so they get their own families (``goraxfast_workers_*``)
rather than a label on ``process_*``: a ``process_cpu_seconds_total`` that silently summed
several processes, or carried a label the standard queries do not expect, would mislead every
dashboard built for the convention. Their CPU must be a counter that never goes down although
workers die and are replaced. The zygote forks and reaps them, so the kernel already keeps the
reaped workers' CPU in the zygote's ``cutime``/``cstime``; the live ones are read from their own
``stat``. Nothing is read on the hot path: only when ``/metrics`` is asked for.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from goraxfast.ops.prometheus import MetricFamily, Sample

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_BYTES = resource.getpagesize()
#: Linux (and what emulates its /proc); elsewhere none of these families is exported, as
#: prometheus_client exports no ``process_*`` there either.
HAVE_PROC = os.path.exists("/proc/self/stat")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the metrics need (proc_pid_stat(5)); times in clock
    ticks, ``rss`` in pages, as the kernel writes them."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children's utime, their reaped children's included
    cstime: int
    num_threads: int
    starttime: int  # ticks after boot
    vsize_bytes: int
    rss_pages: int

    @property
    def cpu_ticks(self) -> int:
        """Its own CPU time."""
        return self.utime + self.stime

    @property
    def tree_cpu_ticks(self) -> int:
        """Its own CPU time and that of every descendant it (or they) reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name is in parentheses and may itself hold spaces and parentheses (a process can
    name itself anything), so the fields start after the *last* ``)``.
    """
    open_at = text.find("(")
    close_at = text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    fields = text[close_at + 1 :].split()
    if len(fields) < 22:
        raise ValueError(f"/proc stat line has {len(fields) + 2} fields, expected at least 24")

    def field(number: int) -> int:  # proc_pid_stat(5) numbers fields from 1; state is (3)
        return int(fields[number - 3])

    return ProcStat(
        pid=int(text[:open_at]),
        comm=text[open_at + 1 : close_at],
        state=fields[0],
        ppid=field(4),
        utime=field(14),
        stime=field(15),
        cutime=field(16),
        cstime=field(17),
        num_threads=field(20),
        starttime=field(22),
        vsize_bytes=field(23),
        rss_pages=field(24),
    )


def read_stat(pid: int | str = "self") -> ProcStat | None:
    """The process's stat, or None when it is gone (or ``/proc`` is not there: not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return parse_stat(f.read())
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None


def parse_boot_time_s(proc_stat: str) -> float:
    """``btime`` from ``/proc/stat``: the boot time process start ticks are counted from."""
    for line in proc_stat.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


@cache
def boot_time_s() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        return parse_boot_time_s(f.read())


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def max_fds() -> float:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return float("inf") if soft == resource.RLIM_INFINITY else soft


def _gauge(name: str, help_: str, value: float) -> MetricFamily:
    return MetricFamily(name, "gauge", help_, [Sample(value)])


def process_families() -> list[MetricFamily]:
    """The scraped process's ``process_*``, as prometheus_client names and explains them (and
    ``process_threads``, as the Go and Rust clients have it); none where there is no ``/proc``."""
    st = read_stat()
    if st is None:
        return []
    return [
        _gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", st.vsize_bytes),
        _gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            st.rss_pages * PAGE_BYTES,
        ),
        _gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot_time_s() + st.starttime / CLOCK_TICKS_PER_S,
        ),
        MetricFamily(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            [Sample(st.cpu_ticks / CLOCK_TICKS_PER_S)],
        ),
        _gauge("process_open_fds", "Number of open file descriptors.", open_fds()),
        _gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds()),
        _gauge("process_threads", "Number of OS threads in the process.", st.num_threads),
    ]


def python_families() -> list[MetricFamily]:
    """``python_info`` and the garbage collector's ``python_gc_*``, as prometheus_client has
    them: what a Python service's dashboards look for next to ``process_*``."""
    impl = platform.python_implementation()
    major, minor, patch = platform.python_version_tuple()
    families = [
        MetricFamily(
            "python_info",
            "gauge",
            "Python platform information",
            [
                Sample(
                    1,
                    {
                        "implementation": impl,
                        "major": major,
                        "minor": minor,
                        "patchlevel": patch,
                        "version": platform.python_version(),
                    },
                )
            ],
        )
    ]
    stats = gc.get_stats()
    for key, name, help_ in (
        ("collected", "python_gc_objects_collected", "Objects collected during gc"),
        (
            "uncollectable",
            "python_gc_objects_uncollectable",
            "Uncollectable objects found during GC",
        ),
        ("collections", "python_gc_collections", "Number of times this generation was collected"),
    ):
        families.append(
            MetricFamily(
                name,
                "counter",
                help_,
                [Sample(s[key], {"generation": str(i)}) for i, s in enumerate(stats)],
            )
        )
    return families


@dataclass(frozen=True, slots=True)
class TreeReading:
    """One look at a supervisor process (the zygote) and its live children (the workers)."""

    cpu_ticks: int  # the supervisor's and its children's, reaped ones included
    rss_bytes: int  # summed over the supervisor and its live children
    processes: int  # how many of them were read


def read_tree(root: ProcStat | None, children: Iterable[ProcStat | None]) -> TreeReading:
    """Sum a supervisor and its children, each with what it reaped.

    Read the root *before* the children (as :class:`WorkerProcessMeter` does): a child reaped
    in between is then missing from both (a dip, which :class:`MonotonicCounter` hides), never
    counted twice. Only children whose
    parent is ``root`` count, so a pid reused by an unrelated process is not summed.
    """
    if root is None:
        return TreeReading(0, 0, 0)
    cpu, rss, n = root.tree_cpu_ticks, root.rss_pages * PAGE_BYTES, 1
    for child in children:
        if child is None or child.ppid != root.pid:
            continue
        cpu += child.tree_cpu_ticks
        rss += child.rss_pages * PAGE_BYTES
        n += 1
    return TreeReading(cpu, rss, n)


class MonotonicCounter:
    """A counter summed from processes that come and go, kept from ever going down.

    A reading may dip (a worker reaped between two reads of one scrape) and the root itself may
    be replaced (the engine stopped and started again: a new zygote); Prometheus would take any
    decrease for a reset. So the last total of a replaced root is carried over, and the value
    exposed is never below the one exposed before.
    """

    def __init__(self) -> None:
        self._root = 0
        self._root_last = 0.0
        self._carried = 0.0
        self._exposed = 0.0

    def observe(self, root: int, value: float) -> float:
        """The value to expose, given the current reading of ``root`` (0: no root now)."""
        if root != self._root:
            self._carried += self._root_last
            self._root, self._root_last = root, 0.0
        if root:
            self._root_last = max(self._root_last, value)
        self._exposed = max(self._exposed, self._carried + self._root_last)
        return self._exposed


class WorkerProcessMeter:
    """``goraxfast_workers_*``: the worker processes (and the zygote that forks them) as one."""

    def __init__(self) -> None:
        self._cpu = MonotonicCounter()

    def families(self, zygote_pid: int, worker_pids: Iterable[int]) -> list[MetricFamily]:
        if not HAVE_PROC:
            return []
        root = read_stat(zygote_pid) if zygote_pid else None
        if root is not None and root.ppid != os.getpid():
            root = None  # not our zygote any more (reaped, its pid reused)
        reading = read_tree(root, (read_stat(p) for p in worker_pids) if root else ())
        cpu_s = self._cpu.observe(zygote_pid if root else 0, reading.cpu_ticks / CLOCK_TICKS_PER_S)
        return [
            MetricFamily(
                "goraxfast_workers_cpu_seconds_total",
                "counter",
                "Total user and system CPU time of the worker processes and the zygote that "
                "forks them, workers that have exited included, in seconds.",
                [Sample(cpu_s)],
            ),
            _gauge(
                "goraxfast_workers_resident_memory_bytes",
                "Resident memory of the live worker processes and the zygote, summed; pages "
                "they share since the fork count once per process.",
                reading.rss_bytes,
            ),
        ]


def parent_families() -> list[MetricFamily]:
    """Everything about the scraped process itself."""
    return process_families() + python_families()
