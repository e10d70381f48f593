"""The CPUs this process may use, read from the kernel: ``WORKER_PROCESSES``'s default.

Reads ``/proc/self/cgroup`` and the CPU quota of this process's cgroup and each cgroup above it
(a quota may be set on a parent slice, as systemd and Kubernetes both do), and the affinity
mask; :func:`goraxfast.core.cpu_budget.usable_cpus` decides. Every read that fails (no cgroup
file system, an older kernel, another OS) is "no limit", never an error: the default then is
the machine's count, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from goraxfast.core.cpu_budget import (
    cgroup_v1_cpu_path,
    cgroup_v2_path,
    parse_cfs_quota,
    parse_cpu_max,
    usable_cpus,
)

__all__ = ["cgroup_quotas", "default_worker_processes"]

CGROUP_MOUNT = "sys/fs/cgroup"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and every directory above it up to ``base`` itself."""
    parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_quotas(root: Path = Path("/")) -> list[float]:
    """The CPU quotas (in CPUs) on this process's cgroup and its ancestors, v2 or v1.

    ``root`` is the file system's root (a test's fake tree). Inside a container with its own
    cgroup namespace the process's path is ``/`` and the mount is the container's own cgroup,
    so its ``cpu.max`` is the container's limit.
    """
    proc = _read(root / "proc/self/cgroup")
    if proc is None:
        return []
    mount = root / CGROUP_MOUNT
    quotas: list[float] = []
    v2 = cgroup_v2_path(proc)
    if v2 is not None and (mount / "cgroup.controllers").exists():
        for directory in _ancestors(mount, v2):
            text = _read(directory / "cpu.max")
            quota = parse_cpu_max(text) if text is not None else None
            if quota is not None:
                quotas.append(quota)
        return quotas
    v1 = cgroup_v1_cpu_path(proc)
    if v1 is None:
        return quotas
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        controller = mount / name
        if not controller.is_dir():
            continue
        for directory in _ancestors(controller, v1):
            q, p = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
            quota = parse_cfs_quota(q, p) if q is not None and p is not None else None
            if quota is not None:
                quotas.append(quota)
        break
    return quotas


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def default_worker_processes(root: Path = Path("/")) -> int:
    """One worker per CPU this process may use: the machine's, its affinity's, its quota's."""
    return usable_cpus(os.cpu_count(), _affinity(), cgroup_quotas(root))
