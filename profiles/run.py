"""``make profile``: py-spy records goraxfast's parent and one worker while they drain a queue.

The engine runs exactly as in the bench (:mod:`bench.contenders.engine`, a separate process
tree) on a server started here (fauxqs by default: it is cheap per request, so the profile
shows the client's costs, not time spent waiting for the server). Once the warm-up is handled,
py-spy attaches to the parent and to one worker at once (``--nonblocking``: it reads their
memory without pausing them; ``--gil``: only samples that hold the GIL, so a worker
blocked in ``poll`` is not counted as busy) for ``--duration`` seconds, while /proc gives each process's CPU
over the same window, so a share of samples can be turned into µs of CPU per message.

Writes ``profiles/out/<timestamp>/``: ``<proc>.raw.txt`` (collapsed stacks), ``<proc>.svg``
(flame graph), ``<proc>.speedscope.json`` and ``summary.md`` / ``summary.json`` with the top
five costs per process. py-spy needs ptrace: root, or ``kernel.yama.ptrace_scope`` 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measure
from bench.contenders import CONTENDERS, LaunchContext
from bench.delayproxy import DelayProxyProcess
from bench.recorder import count_records
from bench.runner import stop_contender
from bench.servers import make_server
from bench.workload import BenchQueue, boto_client, messages, publish_gorax, run_tag
from goraxfast.config import Config
from profiles import flame

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "profiles" / "out"
#: Frames present in (almost) every sample of a process: they rank first and say nothing.
NOISE = (
    "<module>",
    "_run_module_as_main",
    "_run_code",
    "main (bench/",
    "Engine.run (",
    "run (uvloop",
    "Runner.run (",
    "_fork_workers",
    "Zygote.start",
    "_zygote_main",
    "run_worker (",
    "_SyncWorker.run (",
    "_AsyncWorker.run (",
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install -e '.[bench]' (or pip install py-spy)")
    return found


def engine_processes(root: int) -> tuple[int, int | None]:
    """(parent, one worker): workers are the zygote's children, the zygote the parent's child."""
    stats = measure.read_all_stats()
    children = [p for p in measure.descendants(root, stats) if stats[p].ppid == root]
    workers = [p for z in children for p in measure.descendants(z, stats) if stats[p].ppid == z]
    return root, (workers[0] if workers else None)


def summarize(
    name: str, stacks: dict[tuple[str, ...], int], cpu_s: float, handled: int
) -> dict[str, Any]:
    us_per_msg = cpu_s * 1e6 / handled if handled else float("nan")

    def rows(costs: list[flame.Cost]) -> list[dict[str, Any]]:
        return [
            {
                "frame": c.frame,
                "share": round(c.share, 4),
                "samples": c.samples,
                "us_per_msg": round(c.share * us_per_msg, 1),
            }
            for c in costs
        ]

    return {
        "process": name,
        "samples": sum(stacks.values()),
        "cpu_s": cpu_s,
        "handled": handled,
        "cpu_us_per_msg": round(us_per_msg, 1),
        "top_self": rows(flame.top_self(stacks)),
        "top_inclusive": rows(flame.top_inclusive(stacks, skip=NOISE)),
        "top_packages": rows(flame.top_packages(stacks)),
    }


def _round_trip(doc: dict[str, Any]) -> str:
    rtt = doc.get("rtt_ms") or 0
    return f"+{rtt:g} ms per SQS call (bench/delayproxy.py)" if rtt else "straight to the server"


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# goraxfast profile — {doc['date']}",
        "",
        f"Server {doc['server']}, handler `{doc['handler']}`, {doc['workers']} workers, data plane "
        f"`{doc['sqs_client']}`, {_round_trip(doc)}; {doc['handled']} messages handled in the {doc['duration_s']} s "
        f"window ({doc['msgs_per_s']:,.0f} msg/s). Shares are of the process's samples (py-spy, "
        f"{doc['rate']} Hz, only samples holding the GIL, so waits in poll/epoll are left out); µs/msg = share × the process's CPU per message "
        "from /proc over the same window.",
        "",
    ]
    if doc.get("ran_dry"):
        lines += [
            "**The queue ran dry inside the window**: the rate is understated and part of the "
            "window was idle; pre-fill more (`--messages`).",
            "",
        ]
    for proc in doc["processes"]:
        lines += [
            f"## {proc['process']}: {proc['cpu_s']:.2f} s CPU = {proc['cpu_us_per_msg']} µs per "
            f"message, {proc['samples']} samples",
            "",
        ]
        for kind, title in (
            ("top_packages", "self time per package"),
            ("top_self", "self time"),
            ("top_inclusive", "inclusive time (entry points left out)"),
        ):
            lines += [f"Top five by {title}:", "", "| frame | share | µs/msg |", "|---|---|---|"]
            lines += [
                f"| `{r['frame']}` | {r['share']:.1%} | {r['us_per_msg']} |" for r in proc[kind]
            ]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m profiles.run", description=__doc__)
    p.add_argument("--server", default="fauxqs", help="fauxqs | localstack")
    p.add_argument(
        "--messages", type=int, default=90000, help="pre-filled: enough to stay busy all window"
    )
    p.add_argument("--warmup", type=int, default=3000, help="handled before recording")
    p.add_argument("--duration", type=int, default=3, help="seconds recorded")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--handler", default="noop")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--sqs-client",
        default=Config().sqs_client,
        choices=("botocore", "fast"),
        help="data plane (default: the engine's default)",
    )
    p.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="added to each of the engine's SQS calls by bench/delayproxy.py (0: straight)",
    )
    p.add_argument("--out", help="output folder (default profiles/out/<timestamp>)")
    args = p.parse_args(argv)
    spy = py_spy()
    out = Path(args.out) if args.out else OUT / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    server = make_server(args.server)
    server.start()
    proc: subprocess.Popen[bytes] | None = None
    queue: BenchQueue | None = None
    proxy: DelayProxyProcess | None = None
    try:
        endpoint = server.endpoint
        if args.rtt_ms > 0:
            proxy = DelayProxyProcess(server.endpoint, args.rtt_ms).start()
            endpoint = proxy.endpoint
        tag = run_tag()
        queue = BenchQueue(boto_client(server.endpoint), f"profile-{tag}").create()
        print(f"pre-filling {args.messages} messages on {args.server} ...", file=sys.stderr)
        publish_gorax(server.endpoint, queue.url, messages(args.messages, tag))
        records = out / "records.bin"
        records.write_bytes(b"")  # an --out folder used before keeps its old records
        name = f"goraxfast-{args.sqs_client}"
        ctx = LaunchContext(
            endpoint,
            queue.url,
            queue.name,
            str(records),
            args.handler,
            args.workers,
            sys.executable,
            "",
        )
        log = (out / "engine.log").open("wb")
        proc = subprocess.Popen(
            CONTENDERS[name].argv(ctx),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while count_records(str(records)) < args.warmup:
            if proc.poll() is not None:
                raise SystemExit(f"engine exited ({proc.returncode}); see {out / 'engine.log'}")
            time.sleep(0.01)
        parent, worker = engine_processes(proc.pid)
        targets = {"parent": parent} | ({"worker": worker} if worker else {})
        stats0 = measure.read_all_stats()
        handled0 = count_records(str(records))
        spies = {
            label: subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(args.duration),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--function",
                    "--nonblocking",
                    "--gil",
                    "-o",
                    str(out / f"{label}.raw.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for label, pid in targets.items()
        }
        t0 = time.monotonic()
        for label, spy_proc in spies.items():
            _, err = spy_proc.communicate(timeout=args.duration + 60)
            if spy_proc.returncode != 0:
                raise SystemExit(f"py-spy on the {label} failed: {err.decode()[-800:]}")
        elapsed = time.monotonic() - t0
        stats1 = measure.read_all_stats()
        handled = count_records(str(records)) - handled0
        ran_dry = handled0 + handled >= args.messages
        doc: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "server": server.describe(),
            "handler": args.handler,
            "workers": args.workers,
            "sqs_client": args.sqs_client,
            "rtt_ms": args.rtt_ms,
            "duration_s": round(elapsed, 1),
            "rate": args.rate,
            "handled": handled,
            "msgs_per_s": handled / elapsed,
            "ran_dry": ran_dry,
            "processes": [],
        }
        for label, pid in targets.items():
            stacks = flame.parse_collapsed((out / f"{label}.raw.txt").read_text())
            cpu_s = (
                (stats1[pid].ticks - stats0[pid].ticks) / measure.CLOCK_TICKS_PER_S
                if pid in stats1
                else 0.0
            )
            title = f"goraxfast {label} (pid {pid}), {args.server}, handler {args.handler}"
            (out / f"{label}.svg").write_text(flame.svg(stacks, title))
            (out / f"{label}.speedscope.json").write_text(flame.dump_speedscope(stacks, title))
            doc["processes"].append(summarize(label, stacks, cpu_s, handled))
        (out / "summary.json").write_text(json.dumps(doc, indent=1))
        (out / "summary.md").write_text(markdown(doc))
        print(markdown(doc))
        print(f"profiles in {out}", file=sys.stderr)
    finally:
        if proc is not None:
            stop_contender(proc)  # before the queue goes, or its last deletes fail
        if proxy is not None:
            proxy.stop()
        if queue is not None:
            queue.delete()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
