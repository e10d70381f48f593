"""The whole bench in one go: micro benches, then per server the end-to-end contenders, the
CPU-bound scaling run and the publish run; then the report.

Each server is started, used for everything that runs on it, and stopped before the next one
starts, so two servers never compete for the two cores. Within a server, the order of the
contenders rotates from run to run, so slow drift of the machine (caches, the server's own
garbage) does not always hit the same contender.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import peers, report
from bench.contenders import CONTENDERS, SCALING_ORDER, LaunchContext
from bench.delayproxy import DelayProxyProcess
from bench.publish import MODES, publish_once
from bench.runner import Harness, RunPlan, RunResult
from bench.servers import BenchServer, External, ServerError, make_server
from bench.workload import warm_up_server
from goraxfast.config import Config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: Messages sent and drained through a server the bench started before its first measured run
#: (see bench.workload.warm_up_server), followed by one uncounted run of the ceiling contender.
#: Not moto (slow with depth, tests only) and never an external endpoint: that may be real AWS,
#: billed per request.
WARM_UP_MESSAGES = {"fauxqs": 5_000, "localstack": 1_000}


@dataclass
class Progress:
    """A tqdm bar when tqdm is installed, plain lines otherwise (both on stderr)."""

    total: int
    _bar: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        try:
            import tqdm  # type: ignore[import-untyped,unused-ignore]

            tqdm.tqdm.monitor_interval = 0  # no monitor thread: it would add CPU to publish runs
            self._bar = tqdm.tqdm(total=self.total, unit="run", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            self._bar = None

    def status(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text[:70], refresh=True)

    def done(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _status(progress: Progress, server: str, text: str) -> None:
    progress.status(f"{server}: {text}")


def git_state() -> str:
    """The commit measured, and whether the work tree differed from it (others' edits count)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown commit"
    return f"{head} ({len(dirty)} tracked files modified)" if dirty else f"{head} (clean)"


def describe_result(r: RunResult) -> str:
    via = f" +{r.rtt_ms:g}ms" if r.rtt_ms else ""
    if not r.ok:
        return (
            f"  {r.server:<10} {r.contender:<15}{via} "
            f"run {r.run}: FAILED {(r.error.splitlines() or [''])[0][:90]}"
        )
    return (
        f"  {r.server:<10} {r.contender:<15}{via} w={r.workers} run {r.run}: {r.msgs_per_s:8,.0f} msg/s "
        f"client {r.client_us_per_msg:6,.0f} µs/msg ({r.client_cores:.2f} cores) "
        f"server {r.server_us_per_msg:6,.0f} µs/msg ({r.server_cores:.2f} cores)"
    )


def message_counts(text: str) -> dict[str, int]:
    """``"3000"`` or ``"localstack=3000,fauxqs=10000,2000"`` -> per server; ``"*"`` the rest."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.strip().rpartition("=")
        n = int(value)
        if n <= 0:
            raise ValueError(f"message counts must be positive, got {part!r}")
        counts[name if sep else "*"] = n
    counts.setdefault("*", 3000)
    return counts


def rtt_list(text: str) -> list[float]:
    """``"0,15,40"`` -> ``[0.0, 15.0, 40.0]``: added round trips in ms, each once, in order."""
    out: list[float] = []
    for part in text.split(","):
        if not part.strip():
            continue
        ms = float(part)
        if not 0 <= ms <= 10_000 or math.isnan(ms):
            raise ValueError(f"--rtt-ms values must be within 0..10000 ms, got {part!r}")
        if ms not in out:
            out.append(ms)
    if not out:
        raise ValueError("--rtt-ms needs at least one value (0: straight to the server)")
    return out


def start_proxies(
    server: BenchServer, rtts: list[float], out_dir: Path, entry: dict[str, Any]
) -> dict[float, DelayProxyProcess | str]:
    """One delay proxy per non-zero RTT in front of ``server``; a proxy that cannot start is
    its reason (a string), and that RTT's runs are reported failed with it."""
    proxies: dict[float, DelayProxyProcess | str] = {}
    entry["proxies"] = {}
    for rtt in rtts:
        if rtt == 0:
            continue
        log = out_dir / f"delayproxy-{server.name}-{rtt:g}ms.log"
        try:
            proxy = DelayProxyProcess(server.endpoint, rtt, log_path=log).start()
        except Exception as exc:
            proxies[rtt] = f"delay proxy +{rtt:g} ms did not start: {exc}"
            entry["proxies"][f"{rtt:g}"] = {"error": proxies[rtt]}
            continue
        proxies[rtt] = proxy
        entry["proxies"][f"{rtt:g}"] = {"endpoint": proxy.endpoint, "log": log.name}
    return proxies


def stop_proxies(
    proxies: dict[float, DelayProxyProcess | str], out_dir: Path, entry: dict[str, Any]
) -> None:
    """Stop them and keep what each says about itself (its last log line: JSON counters)."""
    for rtt, proxy in proxies.items():
        if isinstance(proxy, str):
            continue
        proxy.stop()
        info = entry["proxies"][f"{rtt:g}"]
        try:
            last = (out_dir / info["log"]).read_text().strip().splitlines()[-1]
            info.update(json.loads(last))
        except (OSError, IndexError, ValueError):
            info["counters"] = "unavailable"


def run_micro(out_dir: Path) -> dict[str, Any] | None:
    """pytest-benchmark over bench/ (ours and the ring bench); its JSON is kept."""
    path = out_dir / "micro.json"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "bench"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        "--benchmark-max-time=0.5",
        f"--benchmark-json={path}",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(
            f"micro benches failed (exit {done.returncode}):\n{done.stdout[-3000:]}",
            file=sys.stderr,
        )
    import json

    return json.loads(path.read_text()) if path.exists() else None


def main(args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else RESULTS / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = out_dir / "work"
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        print(f"unknown contenders: {unknown}; known: {', '.join(CONTENDERS)}", file=sys.stderr)
        return 2
    servers: list[BenchServer] = (
        [External(args.endpoint, pid=args.server_pid)]
        if args.endpoint
        else [make_server(n) for n in args.servers.split(",") if n]
    )
    scaling_servers = set(args.scaling_servers.split(",")) if args.scaling else set()
    if args.endpoint and args.scaling:
        scaling_servers = {"endpoint"}
    doc: dict[str, Any] = {
        "meta": {
            "machine": report.machine(),
            "git": git_state(),
            "default_sqs_client": Config().sqs_client,
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "messages": message_counts(args.messages),
            "warmup": args.warmup,
            "handler": args.handler,
            "workers": args.workers,
            "runs": args.runs,
            "latency_messages": args.latency_messages,
            "latency_rate": args.latency_rate,
            "scaling_messages": args.scaling_messages,
            "scaling_runs": args.scaling_runs,
            "scaling_handler": args.scaling_handler,
            "publish_runs": args.publish_runs,
            "rtt_ms": rtt_list(args.rtt_ms),
        },
        "servers": [],
        "e2e": [],
        "scaling": [],
        "publish": [],
        "micro": None,
        "settings": {},
        "publish_modes": MODES,
    }
    peers_python = ""
    if any(CONTENDERS[c].peer for c in contenders):
        try:
            peers_python = peers.ensure()
            doc["meta"]["peer_versions"] = peers.versions(peers_python)
        except peers.PeersUnavailable as exc:
            print(
                f"Celery/dramatiq unavailable, they will be reported as failed: {exc}",
                file=sys.stderr,
            )
    counts = message_counts(args.messages)
    scaling_order = list(SCALING_ORDER)
    scaling_workers = [int(w) for w in args.scaling_workers.split(",") if w]
    rtts = rtt_list(args.rtt_ms)
    per_server = len(contenders) * args.runs * len(rtts)
    total = (
        len(servers) * per_server
        + len(scaling_servers) * len(scaling_workers) * len(scaling_order) * args.scaling_runs
    )
    total += len(servers) * len(MODES) * args.publish_runs if args.publish else 0
    if args.micro:
        print("micro benchmarks (pytest-benchmark) ...", file=sys.stderr, flush=True)
        doc["micro"] = run_micro(out_dir)
    progress = Progress(total)
    dummy = LaunchContext("", "", "", "", args.handler, args.workers, "", "")
    for name in contenders:
        doc["settings"][CONTENDERS[name].label] = CONTENDERS[name].settings(dummy)
    try:
        for server in servers:
            entry: dict[str, Any] = {"name": server.name}
            doc["servers"].append(entry)
            try:
                t0 = time.monotonic()
                server.start()
                entry["start_s"] = round(time.monotonic() - t0, 2)
            except (ServerError, Exception) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                progress.done(
                    f"{server.name}: could not start ({entry['error']}); continuing without it"
                )
                for rtt in rtts:
                    _fail_all(doc, server.name, contenders, args, entry["error"], rtt)
                progress_skip = per_server + (
                    len(scaling_workers) * len(scaling_order) * args.scaling_runs
                    if server.name in scaling_servers
                    else 0
                )
                for _ in range(
                    progress_skip + (len(MODES) * args.publish_runs if args.publish else 0)
                ):
                    progress.done(f"  {server.name}: skipped")
                continue
            try:
                entry["describe"] = server.describe()
                if server.name in WARM_UP_MESSAGES:
                    progress.status(f"{server.name}: warming the server up")
                    t0 = time.monotonic()
                    warm_up_server(server.endpoint, WARM_UP_MESSAGES[server.name])
                    entry["warm_up_s"] = round(time.monotonic() - t0, 2)
                harness = Harness(
                    server,
                    work_dir,
                    sys.executable,
                    peers_python,
                    on_progress=functools.partial(_status, progress, server.name),
                )
                plan = RunPlan(
                    counts.get(server.name, counts["*"]),
                    args.warmup,
                    args.handler,
                    args.workers,
                    args.latency_messages,
                    args.latency_rate,
                )
                if server.name in WARM_UP_MESSAGES:
                    # One whole run, not counted: the boto3 drain above is not enough. The first
                    # measured run after it still found fauxqs at ~30 µs of CPU per message
                    # against 16-20 in every later run (the server's, not the contender's: it
                    # happened to whichever contender came first; a 30,000-message or a
                    # concurrent drain did not change it), which cost that contender a run.
                    # The ceiling contender is the cheapest to run and favours nobody.
                    progress.status(f"{server.name}: a warm-up run (ceiling, not counted)")
                    warm = harness.run(CONTENDERS["ceiling"], plan, -1)
                    entry["warm_up_run"] = warm.status
                proxies = start_proxies(server, rtts, out_dir, entry)
                try:
                    harnesses: dict[float, Harness | str] = {}
                    for rtt in rtts:
                        proxy = proxies.get(rtt)
                        if isinstance(proxy, DelayProxyProcess):
                            harnesses[rtt] = dataclasses.replace(
                                harness,
                                contender_endpoint=proxy.endpoint,
                                rtt_ms=rtt,
                                proxy_pid=proxy.pid,
                            )
                        else:
                            harnesses[rtt] = proxy if isinstance(proxy, str) else harness
                    # Every round trip in every round, the RTTs' order and the contenders'
                    # rotating: a slow drift of the machine hits no RTT and no contender more
                    # than another, so "x own 0 ms" compares like with like.
                    for run in range(args.runs):
                        j = run % len(rtts)
                        for rtt in rtts[j:] + rtts[:j]:
                            k = run % len(contenders)
                            for name in contenders[k:] + contenders[:k]:
                                h = harnesses[rtt]
                                if isinstance(h, str):
                                    result = _failed(name, server.name, run, args, h, rtt)
                                else:
                                    result = h.run(CONTENDERS[name], plan, run)
                                doc["e2e"].append(result.as_dict())
                                progress.done(describe_result(result))
                finally:
                    stop_proxies(proxies, out_dir, entry)
                if server.name in scaling_servers:
                    for name in scaling_order:
                        settings = CONTENDERS[name].settings(dummy)
                        for key in ("worker_processes", "processes"):
                            if key in settings:
                                settings[key] = args.scaling_workers
                        doc["settings"][CONTENDERS[name].label + " (scaling)"] = settings
                    for run in range(args.scaling_runs):
                        for workers in scaling_workers:
                            splan = RunPlan(
                                args.scaling_messages,
                                max(20, args.scaling_messages // 10),
                                args.scaling_handler,
                                workers,
                                0,
                            )
                            for name in scaling_order:
                                result = harness.run(CONTENDERS[name], splan, run)
                                doc["scaling"].append(result.as_dict())
                                progress.done(describe_result(result))
                if args.publish:
                    for run in range(args.publish_runs):
                        for mode in MODES:
                            progress.status(f"{server.name}: publish {mode}")
                            pub = publish_once(server, mode, args.publish_messages, run)
                            doc["publish"].append(pub.as_dict())
                            progress.done(
                                f"  {server.name:<10} publish {mode:<14} run {run}: "
                                + (
                                    f"{pub.msgs_per_s:8,.0f} msg/s, client {pub.client_us_per_msg:,.0f} µs/msg"
                                    if pub.status == "ok"
                                    else f"FAILED {pub.error[:90]}"
                                )
                            )
            finally:
                server.stop()
                log = getattr(server, "log_path", None)
                if log is not None and log.exists():
                    shutil.copy(log, out_dir / f"{server.name}.log")
    finally:
        progress.close()
        paths = report.write(doc, out_dir)
        print(f"\nresults in {out_dir}:", file=sys.stderr)
        for kind, path in paths.items():
            print(f"  {kind:<10} {path}", file=sys.stderr)
    print(Path(paths["markdown"]).read_text())
    return 0


def _failed(
    name: str, server: str, run: int, args: argparse.Namespace, why: str, rtt: float = 0.0
) -> RunResult:
    r = RunResult(name, CONTENDERS[name].label, server, run, args.workers, args.handler)
    r.status, r.error, r.rtt_ms = "failed", why, rtt
    r.msgs_per_s = math.nan
    return r


def _fail_all(
    doc: dict[str, Any],
    server: str,
    contenders: list[str],
    args: argparse.Namespace,
    why: str,
    rtt: float = 0.0,
) -> None:
    """A server that cannot start: its contenders are reported failed, not silently absent."""
    for name in contenders:
        r = _failed(name, server, 0, args, f"server {server} did not start: {why}", rtt)
        doc["e2e"].append(r.as_dict())
