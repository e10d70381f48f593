"""How many CPUs this process may really use: the default number of worker processes.

``os.cpu_count()`` is the machine's count. Inside a container, a systemd unit with
``CPUQuota=``, or a process started under ``taskset``, that is the wrong yardstick: on a 64-core
node a pod limited to 2 CPUs would fork 64 workers, each throttled to a thirty-second of a core,
with 64 times the memory. So the default is the least of three figures: the machine's count,
the CPUs the scheduler lets this process run on (its affinity mask, which cpusets and
``taskset`` set), and the CPU quota of its cgroup and every cgroup above it (cgroup v2
``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up (a quota of 1.5
CPUs gets 2 workers, as the Kubernetes Downward API rounds a CPU request), never below one.

This module reads nothing: it parses the files' text and decides. The reading is
:mod:`goraxfast.config.cpus`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "cgroup_v1_cpu_path",
    "cgroup_v2_path",
    "parse_cfs_quota",
    "parse_cpu_max",
    "usable_cpus",
]


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"$MAX $PERIOD"``), None for ``max`` (no
    quota) or text that is not a quota."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``; None for -1
    (no quota) or text that is not a number."""
    try:
        quota = int(quota_text.strip())
        period = int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_v2_path(proc_self_cgroup: str) -> str | None:
    """The unified hierarchy's path of this process (``0::/path`` in ``/proc/self/cgroup``)."""
    for line in proc_self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path
    return None


def cgroup_v1_cpu_path(proc_self_cgroup: str) -> str | None:
    """The cgroup v1 ``cpu`` controller's path of this process (``N:cpu,cpuacct:/path``)."""
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpu" in parts[1].split(",") and parts[2].startswith("/"):
            return parts[2]
    return None


def usable_cpus(cpu_count: int | None, affinity: int | None, quotas: Iterable[float]) -> int:
    """The least of the machine's CPUs, the affinity mask's and every quota (rounded up),
    at least one. ``None`` and non-positive figures are unknown, not limits."""
    limits = [n for n in (cpu_count, affinity) if n is not None and n > 0]
    limits += [math.ceil(round(q, 6)) for q in quotas if math.isfinite(q) and q > 0]
    return max(1, min(limits)) if limits else 1
