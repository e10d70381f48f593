"""process_*, python_*, the workers' process sums and build info: /proc parsing on real stat lines,
the never-decreasing CPU counter, and a real engine with two forked workers scraped over HTTP."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_support import append, engine_config, publish, trace_lines, wait_until

from goraxfast.config import Config
from goraxfast.engine.engine import Engine
from goraxfast.ops import process_metrics as pm
from goraxfast.ops.prometheus import render
from goraxfast.testing import InMemoryQueue

# --- /proc/<pid>/stat --------------------------------------------------------------------------

# Real lines (Linux 6.x), the comm of the last ones set with prctl(PR_SET_NAME) to what a
# process may call itself.
PYTHON = (
    "7731 (python3) S 7727 7727 3491 0 -1 4194304 5100 210 3 0 1234 567 89 10 20 0 3 0 48318 "
    "31334400 3890 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0"
)
WEIRD = (
    "42 (my (weird) name) R 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 900 "
    "2101248 120 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
)
CLOSE_PAREN = (
    "43 () ) S) S 42 42 42 0 -1 4194560 1 0 0 0 1 2 3 4 20 0 1 0 901 "
    "4096 1 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
)
ZOMBIE = (
    "44 (worker 0) Z 43 42 42 0 -1 4227140 300 0 0 0 512 64 0 0 20 0 1 0 902 "
    "0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)
KTHREAD = (
    "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 2 "
    "0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (PYTHON, (7731, "python3", "S", 7727, 1234, 567, 89, 10, 3, 48318, 31334400, 3890)),
        (WEIRD, (42, "my (weird) name", "R", 1, 7, 3, 0, 0, 1, 900, 2101248, 120)),
        (CLOSE_PAREN, (43, ") ) S", "S", 42, 1, 2, 3, 4, 1, 901, 4096, 1)),
        (ZOMBIE, (44, "worker 0", "Z", 43, 512, 64, 0, 0, 1, 902, 0, 0)),
        (KTHREAD, (2, "kthreadd", "S", 0, 0, 1, 0, 0, 1, 2, 0, 0)),
    ],
    ids=["python", "comm-with-spaces-and-parentheses", "comm-ending-in-paren", "zombie", "kthread"],
)
def test_stat_line_fields_are_read_after_the_last_parenthesis(line: str, expected: tuple) -> None:
    st = pm.parse_stat(line + "\n")
    got = (
        st.pid,
        st.comm,
        st.state,
        st.ppid,
        st.utime,
        st.stime,
        st.cutime,
        st.cstime,
        st.num_threads,
        st.starttime,
        st.vsize_bytes,
        st.rss_pages,
    )
    assert got == expected


def test_tree_cpu_counts_reaped_children_and_own_cpu_counts_only_itself() -> None:
    st = pm.parse_stat(PYTHON)
    assert (st.cpu_ticks, st.tree_cpu_ticks) == (1234 + 567, 1234 + 567 + 89 + 10)


@pytest.mark.parametrize(
    "line",
    ["", "7731 python3 S 1 2 3", "7731 (python3) S 1 2 3", "x (a) S" + " 0" * 30],
    ids=["empty", "no-parentheses", "too-few-fields", "pid-not-a-number"],
)
def test_a_line_that_is_not_a_stat_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError):
        pm.parse_stat(line)


def test_own_stat_is_this_process() -> None:
    st = pm.read_stat()
    assert st is not None
    assert (st.pid, st.ppid, st.state) == (os.getpid(), os.getppid(), "R")
    assert st.rss_pages > 0 and st.num_threads >= 1


def test_stat_of_a_reaped_process_is_none() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert pm.read_stat(pid) is None


def test_boot_time_comes_from_the_btime_line() -> None:
    text = "cpu  1 2 3\nintr 5\nbtime 1796276421\nprocesses 9\n"
    assert pm.parse_boot_time_s(text) == 1796276421.0
    with pytest.raises(ValueError):
        pm.parse_boot_time_s("cpu 1 2 3\n")


# --- summing a zygote and its workers ----------------------------------------------------------


def stat(pid: int, ppid: int, utime: int, cutime: int = 0, rss: int = 0) -> pm.ProcStat:
    return pm.ProcStat(pid, "w", "S", ppid, utime, 1, cutime, 0, 1, 0, 0, rss)


def test_tree_sums_the_root_and_its_children_with_what_they_reaped() -> None:
    root = stat(10, 1, utime=2, cutime=100, rss=5)
    got = pm.read_tree(root, [stat(11, 10, 30, cutime=4, rss=7), stat(12, 10, 40, rss=9)])
    assert got == pm.TreeReading((2 + 1 + 100) + (30 + 1 + 4) + (40 + 1), 21 * pm.PAGE_BYTES, 3)


def test_tree_skips_children_gone_or_of_another_parent() -> None:
    root = stat(10, 1, utime=2)
    got = pm.read_tree(root, [None, stat(11, 99, 1000), stat(12, 10, 5)])
    assert (got.cpu_ticks, got.processes) == (3 + 6, 2)


def test_tree_without_a_root_is_empty() -> None:
    assert pm.read_tree(None, [stat(11, 10, 5)]) == pm.TreeReading(0, 0, 0)


@pytest.mark.parametrize(
    ("readings", "exposed"),
    [
        ([(7, 1.0), (7, 2.0), (7, 3.5)], [1.0, 2.0, 3.5]),
        # a worker reaped between reading the zygote and reading it: the dip is not exposed
        ([(7, 5.0), (7, 4.0), (7, 6.0)], [5.0, 5.0, 6.0]),
        # engine stopped (no zygote), started again (a new one from 0): carried over
        ([(7, 5.0), (0, 0.0), (8, 0.5), (8, 2.0)], [5.0, 5.0, 5.5, 7.0]),
        # a zygote replaced between two scrapes
        ([(7, 5.0), (8, 1.0)], [5.0, 6.0]),
    ],
    ids=["grows", "dip-hidden", "stop-and-start", "root-replaced"],
)
def test_worker_cpu_counter_never_goes_down(
    readings: list[tuple[int, float]], exposed: list[float]
) -> None:
    counter = pm.MonotonicCounter()
    assert [counter.observe(root, value) for root, value in readings] == exposed


# --- the parent's families ---------------------------------------------------------------------

_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$'
)
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$")


def parse(text: str) -> dict[str, float]:
    """Strict: every line a HELP, a TYPE or a sample; each family's TYPE once, before its
    samples; no sample without a family; no series twice."""
    values: dict[str, float] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            m = _TYPE.match(line)
            assert m, f"malformed TYPE: {line!r}"
            assert m.group(1) not in typed, f"family typed twice: {line!r}"
            typed[m.group(1)] = m.group(2)
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed line: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"sample before its TYPE: {line!r}"
        series = name + (m.group(2) or "")
        assert series not in values, f"series twice: {series}"
        values[series] = float(m.group(3))
    return values


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (parse and lint) where promtool is installed, as in CI."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def check_exposition(text: str) -> dict[str, float]:
    values = parse(text)
    promtool_check(text)
    return values


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_parent_families() -> None:
    promtool_check(render(pm.parent_families()))


def test_parent_families_are_the_client_libraries_names_unlabelled() -> None:
    values = parse(render(pm.parent_families()))
    standard = {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    }
    assert standard <= set(values)
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_max_fds"] >= values["process_open_fds"] > 0
    st = pm.read_stat()
    assert st is not None
    assert values["process_start_time_seconds"] == pytest.approx(
        pm.boot_time_s() + st.starttime / pm.CLOCK_TICKS_PER_S
    )
    assert values["process_start_time_seconds"] <= time.time()


def test_python_info_and_gc_counters_are_as_prometheus_client_exports_them() -> None:
    values = parse(render(pm.python_families()))
    major, minor, patch = platform.python_version_tuple()
    info = (
        f'python_info{{implementation="{platform.python_implementation()}",major="{major}",'
        f'minor="{minor}",patchlevel="{patch}",version="{platform.python_version()}"}}'
    )
    assert values[info] == 1
    for generation in ("0", "1", "2"):
        for name in ("collected", "uncollectable"):
            assert f'python_gc_objects_{name}_total{{generation="{generation}"}}' in values
        assert f'python_gc_collections_total{{generation="{generation}"}}' in values


# --- a real engine: two forked workers on the moto server ---------------------------------------

BURN_CPU_S = 0.05
#: How much less than was burnt /proc may show: it counts whole clock ticks, so the reading of
#: each of the three processes (the zygote, two workers) can come out up to one tick short.
SLACK_S = 3 / pm.CLOCK_TICKS_PER_S


def burn(trace: Path) -> None:
    """Spend BURN_CPU_S of this worker's CPU (measured by the CPU clock, not the wall's)."""
    start = time.process_time()
    while time.process_time() - start < BURN_CPU_S:
        pass
    append(trace, os.getpid())


async def scrape(engine: Engine) -> dict[str, float]:
    url = f"http://127.0.0.1:{engine.health_port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()

    return check_exposition(await asyncio.to_thread(get))


def raw_worker_cpu_s(engine: Engine) -> float:
    """The zygote's and live workers' CPU read straight from /proc, without the counter's
    never-go-down guard: what the kernel still accounts for, dead workers included."""
    pids = engine.worker_pids()
    workers = [pm.read_stat(p) for p in pids]
    zygote = {w.ppid for w in workers if w is not None}
    assert len(zygote) == 1
    reading = pm.read_tree(pm.read_stat(zygote.pop()), workers)
    return reading.cpu_ticks / pm.CLOCK_TICKS_PER_S


WORKER_CPU = "goraxfast_workers_cpu_seconds_total"


async def test_engine_scrape_has_process_metrics_for_the_parent_and_the_workers_sum(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    cfg = engine_config(config, worker_processes=2, concurrent_workers=2)
    async with Engine(cfg, lambda msg: burn(trace)) as engine:
        first = await scrape(engine)
        assert first["process_resident_memory_bytes"] > 0
        assert first["goraxfast_workers_resident_memory_bytes"] > 0
        assert first["process_start_time_seconds"] <= time.time()
        version = importlib.metadata.version("goraxfast")
        build = f'goraxfast_build_info{{version="{version}",python="{platform.python_version()}",client="fast"}}'
        assert first[build] == 1

        publish(boto_sqs, config.queue_url, 8)
        await wait_until(lambda: engine.stats().deleted >= 8, what="8 burning messages")
        burnt = await scrape(engine)
        assert burnt[WORKER_CPU] - first[WORKER_CPU] >= 8 * BURN_CPU_S - SLACK_S
        await wait_until_scraped(
            engine,
            lambda v: v["process_cpu_seconds_total"] > first["process_cpu_seconds_total"],
            "the parent's CPU to grow",
        )

        # The worker that burnt most dies; the kernel keeps its CPU in the zygote's account.
        busiest, runs = Counter(int(line[0]) for line in trace_lines(trace)).most_common(1)[0]
        assert runs >= 4
        os.kill(busiest, signal.SIGKILL)
        await wait_until(
            lambda: engine.worker_restarts >= 1 and len(engine.worker_pids()) == 2,
            what="the killed worker replaced",
        )
        assert busiest not in engine.worker_pids()
        assert raw_worker_cpu_s(engine) >= burnt[WORKER_CPU]
        after = await scrape(engine)
        assert after[WORKER_CPU] >= burnt[WORKER_CPU]
        assert after["goraxfast_worker_restarts_total"] == 1

        publish(boto_sqs, config.queue_url, 2, prefix="more")
        await wait_until(lambda: engine.stats().deleted >= 10, what="2 more burning messages")
        again = await scrape(engine)
        assert again[WORKER_CPU] - after[WORKER_CPU] >= 2 * BURN_CPU_S - SLACK_S


async def wait_until_scraped(
    engine: Engine, condition: Callable[[dict[str, float]], bool], what: str
) -> None:
    """Scrape until ``condition(values)`` holds: CPU time moves in clock ticks, and nothing
    announces a tick."""
    deadline = time.monotonic() + 30.0
    while not condition(await scrape(engine)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after 30 s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_build_info_names_the_botocore_client_when_it_is_chosen(config: Config) -> None:
    cfg = engine_config(config.with_(sqs_client="botocore"), worker_processes=2)
    async with Engine(cfg, lambda msg: None) as engine:
        values = await scrape(engine)
    [build] = [k for k in values if k.startswith("goraxfast_build_info{")]
    assert 'client="botocore"' in build and values[build] == 1


async def test_build_info_says_custom_for_an_injected_data_plane() -> None:
    queue = InMemoryQueue()
    async with Engine(
        queue.config(worker_processes=1), lambda msg: None, data_plane=queue, serve_http=False
    ) as engine:
        values = check_exposition(engine.prometheus_text())
    [build] = [k for k in values if k.startswith("goraxfast_build_info{")]
    assert 'client="custom"' in build
