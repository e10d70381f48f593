"""WORKER_PROCESSES's default: the CPUs this process may use, not the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from goraxfast.config.cpus import cgroup_quotas, default_worker_processes
from goraxfast.core.cpu_budget import (
    cgroup_v1_cpu_path,
    cgroup_v2_path,
    parse_cfs_quota,
    parse_cpu_max,
    usable_cpus,
)

# --- the decision (sans I/O) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("100000", 1.0),  # the period defaults to 100 ms
        ("", None),
        ("garbage 100000", None),
        ("0 100000", None),
    ],
)
def test_cgroup_v2_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("300000", "100000", 3.0), ("x", "100000", None)],
)
def test_cgroup_v1_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert parse_cfs_quota(quota, period) == cpus


@pytest.mark.parametrize(
    ("proc", "v2", "v1"),
    [
        ("0::/\n", "/", None),
        ("0::/system.slice/goraxfast.service\n", "/system.slice/goraxfast.service", None),
        (
            "12:cpu,cpuacct:/kubepods/pod1/abc\n11:memory:/kubepods/pod1/abc\n",
            None,
            "/kubepods/pod1/abc",
        ),
        ("3:cpuset:/x\n1:name=systemd:/y\n", None, None),
        ("", None, None),
    ],
)
def test_which_cgroup_this_process_is_in(proc: str, v2: str | None, v1: str | None) -> None:
    assert cgroup_v2_path(proc) == v2
    assert cgroup_v1_cpu_path(proc) == v1


@pytest.mark.parametrize(
    ("cpu_count", "affinity", "quotas", "workers"),
    [
        pytest.param(64, 64, [], 64, id="a machine of its own: its count"),
        pytest.param(64, 64, [2.0], 2, id="a pod limited to 2 CPUs on a 64-core node"),
        pytest.param(64, 64, [1.5], 2, id="a fraction rounds up, as the Downward API does"),
        pytest.param(64, 64, [0.25], 1, id="a quarter of a CPU: one worker, never none"),
        pytest.param(64, 4, [], 4, id="taskset or a cpuset: the affinity mask"),
        pytest.param(8, 8, [6.0, 3.0], 3, id="the tightest of the cgroup and its parents"),
        pytest.param(2, 2, [16.0], 2, id="a quota above the machine does not add CPUs"),
        pytest.param(None, None, [], 1, id="nothing known: one"),
        pytest.param(None, 3, [], 3, id="no cpu_count: the affinity"),
        pytest.param(4, 4, [2.0000000001], 2, id="rounding noise does not add a worker"),
    ],
)
def test_usable_cpus(
    cpu_count: int | None, affinity: int | None, quotas: list[float], workers: int
) -> None:
    assert usable_cpus(cpu_count, affinity, quotas) == workers


# --- reading the kernel's files (a fake tree, then the real process) ----------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_container_with_its_own_cgroup_namespace_reads_its_root_cpu_max(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
            "sys/fs/cgroup/cpu.max": "200000 100000\n",
        },
    )
    assert cgroup_quotas(root) == [2.0]


def test_a_quota_on_a_parent_slice_counts(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/workers.slice/goraxfast.service\n",
            "sys/fs/cgroup/cgroup.controllers": "cpu\n",
            "sys/fs/cgroup/workers.slice/goraxfast.service/cpu.max": "max 100000\n",
            "sys/fs/cgroup/workers.slice/cpu.max": "300000 100000\n",
        },
    )
    assert cgroup_quotas(root) == [3.0]


def test_cgroup_v1_reads_the_cpu_controller(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_quotas(root) == [1.5]


def test_no_cgroup_file_system_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_quotas(tmp_path) == []
    assert cgroup_quotas(_tree(tmp_path, {"proc/self/cgroup": "0::/x\n"})) == []


def test_this_machine_default_is_at_most_its_cpu_count() -> None:
    assert 1 <= default_worker_processes() <= (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="affinity is Linux-only")
def test_an_engine_started_under_taskset_defaults_to_one_worker_per_allowed_cpu() -> None:
    """Really pinned: a child process on one CPU gets a default of one worker."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "from goraxfast.config import Config; print(Config().worker_processes)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "1"


def _new_cgroup_with_one_cpu(name: str) -> Path | None:
    """A real cgroup limited to one CPU (v1 ``cpu`` controller or v2 ``cpu.max``), or None
    where this process may not make one (not root, no cpu controller)."""
    v1 = Path("/sys/fs/cgroup/cpu")
    v2 = Path("/sys/fs/cgroup")
    try:
        if (v1 / "cpu.cfs_quota_us").exists():
            group = v1 / name
            group.mkdir()
            (group / "cpu.cfs_quota_us").write_text("100000")
            return group
        if "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
            group = v2 / name
            group.mkdir()
            (group / "cpu.max").write_text("100000 100000")
            return group
    except OSError:
        return None
    return None


def test_an_engine_in_a_cgroup_limited_to_one_cpu_defaults_to_one_worker() -> None:
    """A real cgroup with a quota of one CPU, as ``docker run --cpus 1`` or ``CPUQuota=100%``
    make: a process started in it gets a default of one worker on this two-core machine."""
    group = _new_cgroup_with_one_cpu(f"goraxfast-test-{os.getpid()}")
    if group is None:
        pytest.skip("cannot make a cgroup here (needs root and the cpu controller)")
    try:
        code = "from goraxfast.config import Config; print(Config().worker_processes)"
        out = subprocess.run(
            [
                "sh",
                "-c",
                f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"',
                sys.executable,
                code,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout.strip() == "1", out.stderr
    finally:
        group.rmdir()
