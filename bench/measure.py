"""What a run costs: CPU of whole process trees from /proc, peak memory, percentiles, medians.

Every contender runs as its own process tree (goraxfast's parent, zygote and workers; Celery's
prefork pool; dramatiq's worker processes), and so does the server. CPU is read from
``/proc/<pid>/stat`` for every process of the tree, before and after the measured window, so a
contender cannot hide work in a child and the harness's own work is never counted.

Why ``utime + stime + cutime + cstime`` per live process: when a child exits and is reaped, the
kernel adds its whole lifetime CPU to its parent's ``cutime``/``cstime``. Summing all four over
the live tree therefore keeps a child that ends inside the window counted exactly once: its last
own reading leaves the sum and its total comes back through the parent. (A child reaped by a
process outside the tree would be lost; none of the contenders does that.)

Pure functions take the text of the /proc files so that tests can feed synthetic data.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the bench needs (CPU in clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """Own CPU plus that of every reaped child: see the module docstring for why."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces and ``)``, so
    the fields are counted from the *last* closing parenthesis.
    """
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # rest starts at field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def read_all_stats(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process visible now; processes that vanish while being read are skipped."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return stats


def descendants(root: int, stats: Mapping[int, ProcStat]) -> list[int]:
    """``root`` and every process below it, found through the parent links."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: list[int] = []
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(out)


def tree_ticks(roots: Iterable[int], stats: Mapping[int, ProcStat]) -> int:
    """CPU ticks of the trees under ``roots`` (each process counted once)."""
    pids: set[int] = set()
    for root in roots:
        pids.update(descendants(root, stats))
    return sum(stats[p].ticks for p in pids)


def cpu_delta_s(
    roots: Sequence[int], before: Mapping[int, ProcStat], after: Mapping[int, ProcStat]
) -> float | None:
    """CPU seconds the trees under ``roots`` used between two snapshots, or None when that
    cannot be known: a root is missing from either snapshot (the server exited or restarted),
    or the total went down (a process left the tree without its CPU reaching a parent's
    ``cutime``, e.g. auto-reaped children). A wrong figure is worse than none."""
    if not roots or any(r not in before or r not in after for r in roots):
        return None
    delta = tree_ticks(roots, after) - tree_ticks(roots, before)
    return delta / CLOCK_TICKS_PER_S if delta >= 0 else None


def tree_cpu_s(roots: Iterable[int], proc: Path = PROC) -> float:
    """CPU seconds used so far by the process trees under ``roots``."""
    return tree_ticks(roots, read_all_stats(proc)) / CLOCK_TICKS_PER_S


def tree_pids(roots: Iterable[int], proc: Path = PROC) -> list[int]:
    stats = read_all_stats(proc)
    pids: set[int] = set()
    for root in roots:
        pids.update(descendants(root, stats))
    return sorted(pids)


def parse_status_kib(text: str, key: str) -> int:
    """A ``kB`` value such as ``VmHWM`` from ``/proc/<pid>/status`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_bytes(pids: Iterable[int], proc: Path = PROC) -> int:
    """Sum of each process's peak resident set (``VmHWM``).

    Pages shared between forked processes are counted once per process, so for a pre-fork
    design this is an upper bound on the memory the machine needed, not an exact figure.
    """
    total = 0
    for pid in pids:
        try:
            total += parse_status_kib((proc / str(pid) / "status").read_text(), "VmHWM")
        except OSError:
            continue
    return total * 1024


# --- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks.

    The same definition as numpy's default, so figures can be checked by anyone. An empty
    sequence has no percentile: NaN, which the report prints as "n/a".
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(ordered[lo])
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """Median of the finite values (failed runs carry NaN and are left out); NaN if none."""
    finite = [v for v in values if not math.isnan(v)]
    return float(statistics.median(finite)) if finite else math.nan


@dataclass(frozen=True, slots=True)
class Window:
    """Readings at both ends of a measured window; differences give the run's costs."""

    seconds: float
    messages: int
    client_cpu_s: float
    server_cpu_s: float | None

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else math.nan

    @property
    def client_us_per_msg(self) -> float:
        return self.client_cpu_s * 1e6 / self.messages if self.messages else math.nan

    @property
    def server_us_per_msg(self) -> float:
        if self.server_cpu_s is None or not self.messages:
            return math.nan
        return self.server_cpu_s * 1e6 / self.messages

    @property
    def client_cores(self) -> float:
        """Average cores the client kept busy: near 1.0 per process means CPU-bound."""
        return self.client_cpu_s / self.seconds if self.seconds > 0 else math.nan

    @property
    def server_cores(self) -> float:
        if self.server_cpu_s is None or self.seconds <= 0:
            return math.nan
        return self.server_cpu_s / self.seconds
