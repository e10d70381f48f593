"""One measured run of one contender: fresh queue, pre-fill, warm-up, measured drain, latency.

The sequence, and why:
1. A fresh queue per run, pre-filled with ``warmup + messages`` (the contender is not running
   yet, so pre-filling costs it nothing and every contender meets the same full queue).
2. The contender starts; the first ``warmup`` messages it handles are not measured (imports,
   forks, connection set-up, first-call caches).
3. The window opens when the warm-up count is reached and closes when every message has been
   handled *and* the queue reports zero messages left, so deletes count: a consumer that
   handles fast but acknowledges late is not flattered. CPU of the contender's process tree and
   of the server's is read from /proc at both ends.
4. Then the latency phase: the harness publishes ``latency_messages`` one at a time at a steady
   rate far below every contender's capacity and measures publish -> handled. (In the drain,
   "latency" would only measure how long a message waited in a pre-filled queue.)
5. SIGTERM (goraxfast and Celery drain gracefully), then the process group is killed.
6. For goraxfast's Engine: what it reported about itself (``engine.stats()`` after its run, and
   the samples it took while running; see bench/contenders/engine.py): the receive pipeline
   it chose during the measured window, and how long messages waited in its hands.

Latency mode: with a delay proxy (bench/delayproxy.py, a process of its own) the contender's
endpoint is the proxy's, so every one of its SQS calls costs ``rtt_ms`` more; the harness's own
calls (queue set-up, pre-fill, depth checks, the latency phase's sends) go straight to the
server, as a producer elsewhere would. The proxy's CPU is measured like the server's, apart.
A contender that exits, stalls or leaves messages behind yields a failed result with the reason
and the tail of its log; it is never dropped from the report.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import measure
from bench.contenders import Contender, LaunchContext
from bench.recorder import count_records, read_records
from bench.servers import BenchServer
from bench.workload import BenchQueue, bodies, boto_client, messages, publish_gorax, run_tag

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.002
DEPTH_POLL_S = 0.02
MIN_RATE = 5.0  # msg/s: slower than this and a run is called stalled
START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 20.0  # for the queue to report empty after the last message was handled
LATENCY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
#: goraxfast's drain waits for the long polls in flight (QUEUE_WAIT_TIME_SECONDS, 20 s, + 5 s
#: at most: README, Shutdown) before it returns from run() and writes its stats.
ENGINE_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RunPlan:
    messages: int
    warmup: int
    handler: str
    workers: int
    latency_messages: int = 60
    latency_rate: float = 50.0


@dataclass
class RunResult:
    contender: str
    label: str
    server: str
    run: int
    workers: int
    handler: str
    status: str = "ok"
    error: str = ""
    messages: int = 0
    seconds: float = math.nan
    msgs_per_s: float = math.nan
    client_cpu_s: float = math.nan
    client_us_per_msg: float = math.nan
    client_cores: float = math.nan
    server_cpu_s: float = math.nan
    server_us_per_msg: float = math.nan
    server_cores: float = math.nan
    peak_rss_mb: float = math.nan
    processes: int = 0
    duplicates: int = 0
    latency_ms: list[float] = field(default_factory=list)
    rtt_ms: float = 0.0  # added to each of the contender's SQS calls by the delay proxy
    fifo_groups: int = 0  # > 0: a FIFO queue with this many message groups (bench.fifo)
    proxy_cpu_s: float = math.nan
    proxy_us_per_msg: float = math.nan
    proxy_cores: float = math.nan
    #: the measured window, time.monotonic() at both ends (for the engine's samples)
    window_t0: float = math.nan
    window_t1: float = math.nan
    #: goraxfast only: engine.stats() after the run (or its last sample if it had to be killed)
    engine_stats: dict[str, Any] = field(default_factory=dict)
    #: goraxfast only: its samples inside the measured window, summarized (see window_summary)
    engine_window: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunFailed(Exception):
    """Why a run could not be measured; becomes the result's ``error``."""


@dataclass
class Harness:
    """What every run of a suite shares: the server, paths, interpreters, progress hook."""

    server: BenchServer
    work_dir: Path
    python: str
    peers_python: str = ""
    on_progress: Callable[[str], None] = lambda _text: None
    client: Any = None
    #: the contenders' endpoint when it is not the server's own (a delay proxy in front of it)
    contender_endpoint: str = ""
    rtt_ms: float = 0.0
    #: the delay proxy's pid, whose CPU is reported apart from the server's (0: none)
    proxy_pid: int = 0
    #: > 0: every run's queue is a FIFO queue whose messages fall into this many groups
    #: (bench.fifo; gorax-format contenders only, and no latency phase)
    fifo_groups: int = 0
    _trickle: list[tuple[str, dict[str, Any]]] = field(default_factory=list, init=False)
    _first_trickle_seq: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.client is None:
            self.client = boto_client(self.server.endpoint)

    # --- bodies ----------------------------------------------------------------------------

    def wrap(self, contender: Contender, payloads: Sequence[str], ctx: LaunchContext) -> list[str]:
        """Bodies in the contender's envelope (Celery's / dramatiq's made by their own code)."""
        if contender.body_format == "gorax":
            return list(payloads)
        if not self.peers_python:
            raise RunFailed("the peers' venv (Celery, dramatiq) is not available")
        done = subprocess.run(
            [self.peers_python, "-m", "bench.contenders.peer_bodies", contender.body_format],
            input="".join(p + "\n" for p in payloads),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=self._env(ctx),
        )
        if done.returncode != 0:
            raise RunFailed(f"wrapping bodies for {contender.name} failed: {done.stderr[-800:]}")
        return done.stdout.splitlines()

    def _env(self, ctx: LaunchContext) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ctx.env())
        env["PYTHONPATH"] = str(ROOT)
        env.pop("VIRTUAL_ENV", None)
        return env

    # --- one run ---------------------------------------------------------------------------

    def run(self, contender: Contender, plan: RunPlan, run_index: int) -> RunResult:
        result = RunResult(
            contender.name,
            contender.label,
            self.server.name,
            run_index,
            plan.workers,
            plan.handler,
        )
        result.rtt_ms = self.rtt_ms
        result.fifo_groups = self.fifo_groups
        tag = run_tag()
        fifo = ".fifo" if self.fifo_groups else ""
        queue = BenchQueue(self.client, f"bench-{contender.name}-{tag}{fifo}")
        records = self.work_dir / f"records-{contender.name}-{tag}.bin"
        via = f"-rtt{self.rtt_ms:g}" if self.rtt_ms else ""
        log_path = self.work_dir / f"{contender.name}-{self.server.name}{via}-run{run_index}.log"
        stats_path = self.work_dir / f"stats-{contender.name}-{tag}.json"
        samples_path = self.work_dir / f"samples-{contender.name}-{tag}.jsonl"
        proc: subprocess.Popen[bytes] | None = None
        try:
            queue.create()
            ctx = LaunchContext(
                endpoint=self.contender_endpoint or self.server.endpoint,
                queue_url=queue.url,
                queue_name=queue.name,
                records=str(records),
                handler=plan.handler,
                workers=plan.workers,
                python=self.python,
                peers_python=self.peers_python,
                stats_out=str(stats_path) if contender.engine else "",
                samples_out=str(samples_path) if contender.engine else "",
            )
            proc = self._prefill_and_launch(contender, plan, ctx, queue, records, log_path)
            self._measure(proc, plan, queue, records, result)
            self._latency(proc, plan, queue, records, result)
        except RunFailed as exc:
            result.status = "failed"
            result.error = str(exc)
            if proc is not None:
                result.error += _log_tail(log_path)
        except Exception as exc:  # a bench bug or a server error: still a reported failure
            result.status = "failed"
            result.error = f"{type(exc).__name__}: {exc}"
            if proc is not None:
                result.error += _log_tail(log_path)
        finally:
            if proc is not None:
                stop_contender(proc, ENGINE_STOP_TIMEOUT_S if contender.engine else STOP_TIMEOUT_S)
            queue.delete()
            if contender.engine:
                read_engine_figures(stats_path, samples_path, result)
            kept = (samples_path,) if os.environ.get("BENCH_KEEP_SAMPLES") else ()
            for path in (records, stats_path, samples_path):
                if path not in kept:
                    with contextlib.suppress(OSError):
                        path.unlink()
        return result

    def _prefill_and_launch(
        self,
        contender: Contender,
        plan: RunPlan,
        ctx: LaunchContext,
        queue: BenchQueue,
        records: Path,
        log_path: Path,
    ) -> subprocess.Popen[bytes]:
        total = plan.warmup + plan.messages
        tag = ctx.queue_name.removesuffix(".fifo").rsplit("-", 1)[1]
        msgs = messages(total + plan.latency_messages, tag, groups=self.fifo_groups)
        if self.fifo_groups and (contender.body_format != "gorax" or plan.latency_messages):
            raise RunFailed("a FIFO run takes a gorax-format contender and no latency phase")
        self.on_progress(f"{contender.name}: pre-filling {total}")
        if contender.body_format == "gorax":
            publish_gorax(self.server.endpoint, queue.url, msgs[:total])
            self._trickle = [
                (b, m.message_attributes())
                for b, m in zip(bodies(msgs[total:]), msgs[total:], strict=True)
            ]
        else:
            wrapped = self.wrap(contender, bodies(msgs), ctx)
            queue.send_raw(wrapped[:total])
            self._trickle = [(b, {}) for b in wrapped[total:]]
        self._first_trickle_seq = total
        records.touch()
        self.on_progress(f"{contender.name}: starting")
        with log_path.open("wb") as log:
            return subprocess.Popen(
                contender.argv(ctx),
                cwd=ROOT,
                env=self._env(ctx),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_count(
        self, proc: subprocess.Popen[bytes], records: Path, want: int, timeout_s: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while count_records(str(records)) < want:
            if proc.poll() is not None:
                raise RunFailed(f"exited with code {proc.returncode} during {what}")
            if time.monotonic() > deadline:
                got = count_records(str(records))
                raise RunFailed(
                    f"stalled during {what}: {got} of {want} handled in {timeout_s:.0f} s"
                )
            time.sleep(POLL_S)

    def _measure(
        self,
        proc: subprocess.Popen[bytes],
        plan: RunPlan,
        queue: BenchQueue,
        records: Path,
        result: RunResult,
    ) -> None:
        total = plan.warmup + plan.messages
        self.on_progress(f"{result.contender}: warm-up")
        self._wait_count(
            proc, records, plan.warmup, START_TIMEOUT_S + plan.warmup / MIN_RATE, "warm-up"
        )
        server_pids = self.server.pids()
        proxy_pids = [self.proxy_pid] if self.proxy_pid else []
        stats0 = measure.read_all_stats()
        t0 = time.monotonic()
        self.on_progress(f"{result.contender}: measuring {plan.messages}")
        timeout = 30.0 + plan.messages / MIN_RATE
        deadline = time.monotonic() + timeout
        while True:
            self._wait_count(
                proc, records, total, max(0.1, deadline - time.monotonic()), "the drain"
            )
            seqs = {seq for seq, _ in read_records(str(records))}
            if len(seqs) >= total:
                break
            if time.monotonic() > deadline:
                raise RunFailed(f"only {len(seqs)} distinct of {total} messages handled")
            time.sleep(POLL_S)
        drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (left := queue.depth()) > 0:
            if time.monotonic() > drain_deadline:
                raise RunFailed(
                    f"{left} messages still in the queue {DRAIN_TIMEOUT_S:.0f} s after the last was handled"
                )
            time.sleep(DEPTH_POLL_S)
        t1 = time.monotonic()
        stats1 = measure.read_all_stats()
        pids = sorted({p for r in [proc.pid] for p in measure.descendants(r, stats1)})
        client_cpu = measure.cpu_delta_s([proc.pid], stats0, stats1)
        if client_cpu is None:
            raise RunFailed("the contender's process tree could not be measured (it exited?)")
        server_cpu = measure.cpu_delta_s(server_pids, stats0, stats1)
        if server_pids and server_cpu is None:
            result.error = "server CPU unknown: the server process exited or restarted meanwhile"
        proxy_cpu = measure.cpu_delta_s(proxy_pids, stats0, stats1) if proxy_pids else None
        if proxy_pids and proxy_cpu is None:
            raise RunFailed("the delay proxy exited during the run")
        result.window_t0, result.window_t1 = t0, t1
        if proxy_cpu is not None:
            result.proxy_cpu_s = proxy_cpu
            result.proxy_us_per_msg = proxy_cpu * 1e6 / plan.messages
            result.proxy_cores = proxy_cpu / (t1 - t0) if t1 > t0 else math.nan
        window = measure.Window(
            seconds=t1 - t0,
            messages=plan.messages,
            client_cpu_s=client_cpu,
            server_cpu_s=server_cpu,
        )
        all_records = read_records(str(records))
        result.messages = plan.messages
        result.seconds = window.seconds
        result.msgs_per_s = window.msgs_per_s
        result.client_cpu_s = window.client_cpu_s
        result.client_us_per_msg = window.client_us_per_msg
        result.client_cores = window.client_cores
        if window.server_cpu_s is not None:
            result.server_cpu_s = window.server_cpu_s
            result.server_us_per_msg = window.server_us_per_msg
            result.server_cores = window.server_cores
        result.peak_rss_mb = measure.peak_rss_bytes(pids) / 1e6
        result.processes = len(pids)
        result.duplicates = len(all_records) - len({s for s, _ in all_records})

    def _latency(
        self,
        proc: subprocess.Popen[bytes],
        plan: RunPlan,
        queue: BenchQueue,
        records: Path,
        result: RunResult,
    ) -> None:
        if plan.latency_messages <= 0:
            return
        self.on_progress(f"{result.contender}: latency")
        published: dict[int, int] = {}
        first = self._first_trickle_seq
        start = time.monotonic()
        for i, (body, attrs) in enumerate(self._trickle):
            delay = start + i / plan.latency_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            published[first + i] = time.time_ns()
            queue.send_one(body, attrs)
        deadline = time.monotonic() + LATENCY_TIMEOUT_S
        want = set(published)
        while True:
            handled = {s: t for s, t in read_records(str(records)) if s in want}
            if len(handled) == len(want) or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.02)
        result.latency_ms = [(handled[s] - published[s]) / 1e6 for s in sorted(handled)]
        if len(handled) < len(want):
            result.error = f"latency phase: {len(want) - len(handled)} of {len(want)} not handled"


#: What the report shows of the engine's own figures; every one read with .get(): an engine
#: that does not report a field yet gets "n/a", not a failed run.
ENGINE_FIELDS = (
    "pollers",
    "prefetch",
    "pollers_max",
    "prefetch_max",
    "dwell_p50_s",
    "dwell_p99_s",
    "in_flight",
    "received",
    "receives",
    "empty_receives",
    "throttled",
    "throttle_released",
    "released",
)


def read_engine_figures(stats_path: Path, samples_path: Path, result: RunResult) -> None:
    """The engine's figures into ``result``: its final stats (its last sample when the final
    file is missing: killed, or an older contender) and its samples inside the window."""
    samples = read_samples(samples_path)
    final: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        final = json.loads(stats_path.read_text())
    if not final and samples:
        final = {k: v for k, v in samples[-1].items() if k != "t"}
        final["_from"] = "last sample (no stats file after the run)"
    result.engine_stats = {k: final[k] for k in (*ENGINE_FIELDS, "_from") if k in final}
    result.engine_window = window_summary(samples, result.window_t0, result.window_t1)


def read_samples(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def window_summary(samples: Sequence[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Pollers, prefetch and messages held while the window was open: median and most.

    Samples are taken every 0.1 s; a window shorter than that has none, and then the figures
    are absent (the report prints n/a).
    """
    inside = [s for s in samples if t0 <= s.get("t", -1.0) <= t1]
    out: dict[str, Any] = {"samples": len(inside)}
    for key in ("pollers", "prefetch", "in_flight"):
        values = [float(s[key]) for s in inside if isinstance(s.get(key), int | float)]
        if values:
            out[f"{key}_median"] = measure.median(values)
            out[f"{key}_max"] = max(values)
    return out


def stop_contender(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the contender (graceful drain where it has one), then kill its whole group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return ("\n  log: " + "\n  ".join(text[-lines:])) if text else ""
