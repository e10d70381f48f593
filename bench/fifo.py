"""``python -m bench.fifo``: what consuming a FIFO queue costs, side by side in one run.

The engine runs each message group one message at a time, in delivery order (core/ordering),
so a FIFO queue's throughput is bound by its groups: with many groups (1,000) there is work for
every slot; with few (10) at most 10 messages run at once and SQS hands out no more of a group
until its in-flight messages are deleted, so each group advances one receive -> handle ->
delete round at a time. This bench drains the same workload from a standard queue and from
FIFO queues with the groups given, each run on a fresh queue, rotating the order run to run,
and reports msgs/s and the engine's CPU per message (parent + workers), each as a ratio to the
standard queue's: the parent's cost of the ordering rule is the CPU difference at 1,000
groups, where throughput is not group-bound.

SQS fair queues (a MessageGroupId on a *standard* queue) are not a scenario here: moto and
fauxqs accept the group id and return it, but only AWS reorders deliveries by tenant, so no
local server can show the effect; see the README's "FIFO queues and fair queues".

Example::

    python -m bench.fifo --servers fauxqs --groups 0,1000,10 --messages 20000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.contenders import CONTENDERS
from bench.runner import Harness, RunPlan, RunResult
from bench.servers import External, make_server
from bench.suite import RESULTS, describe_result, git_state
from bench.workload import warm_up_server

__all__ = ["main", "summarize", "table"]

#: Contenders that consume gorax's body format with goraxfast's ordering: the others (Celery,
#: dramatiq, the asyncio loop) know no per-group order, so a FIFO figure of theirs compares
#: nothing.
FIFO_CONTENDERS = ("goraxfast-fast", "goraxfast-botocore")


def group_list(text: str) -> list[int]:
    """``"0,1000,10"``: 0 is the standard queue, N > 0 a FIFO queue with N message groups."""
    out: list[int] = []
    for part in text.split(","):
        if part.strip():
            n = int(part)
            if not 0 <= n <= 100_000:
                raise ValueError(f"--groups values must be within 0..100000, got {part!r}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("--groups needs at least one value (0: a standard queue)")
    return out


def scenario(groups: int) -> str:
    return "standard queue" if groups == 0 else f"FIFO, {groups:,} groups"


def summarize(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Medians per (contender, groups), with ratios to the same contender's standard queue."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(r.contender, r.fifo_groups) for r in results}, key=lambda k: (k[0], k[1]))
    for contender, groups in keys:
        ok = [r for r in results if (r.contender, r.fifo_groups) == (contender, groups) and r.ok]
        runs = [r for r in results if (r.contender, r.fifo_groups) == (contender, groups)]
        row: dict[str, Any] = {
            "contender": contender,
            "label": runs[0].label,
            "groups": groups,
            "runs_ok": len(ok),
            "runs": len(runs),
        }
        if ok:
            row["msgs_per_s"] = statistics.median(r.msgs_per_s for r in ok)
            row["client_us_per_msg"] = statistics.median(r.client_us_per_msg for r in ok)
            row["min"] = min(r.msgs_per_s for r in ok)
            row["max"] = max(r.msgs_per_s for r in ok)
            row["server_us_per_msg"] = statistics.median(r.server_us_per_msg for r in ok)
            per_receive = [
                r.engine_stats["received"] / r.engine_stats["receives"]
                for r in ok
                if r.engine_stats.get("receives")
            ]
            row["per_receive"] = statistics.median(per_receive) if per_receive else None
        rows.append(row)
    for row in rows:
        base = next(
            (b for b in rows if b["contender"] == row["contender"] and b["groups"] == 0), None
        )
        if base and "msgs_per_s" in base and "msgs_per_s" in row:
            row["rate_ratio"] = row["msgs_per_s"] / base["msgs_per_s"]
            base_cpu = base["client_us_per_msg"]
            row["cpu_ratio"] = row["client_us_per_msg"] / base_cpu if base_cpu > 0 else math.nan
            row["cpu_delta_us"] = row["client_us_per_msg"] - base["client_us_per_msg"]
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| contender | queue | msgs/s (min–max) | × standard | engine CPU µs/msg | × standard "
        "| CPU µs/msg over standard | messages per receive | server CPU µs/msg | runs ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "msgs_per_s" not in r:
            lines.append(
                f"| {r['label']} | {scenario(r['groups'])} | failed | | | | | | | 0/{r['runs']} |"
            )
            continue
        ratio = f"×{r['rate_ratio']:.2f}" if "rate_ratio" in r else "–"
        cpu_ratio = f"×{r['cpu_ratio']:.2f}" if math.isfinite(r.get("cpu_ratio", math.nan)) else "–"
        delta = f"{r['cpu_delta_us']:+.1f}" if "cpu_delta_us" in r else "–"
        per_receive = f"{r['per_receive']:.1f}" if r.get("per_receive") else "n/a"
        lines.append(
            f"| {r['label']} | {scenario(r['groups'])} | {r['msgs_per_s']:,.0f} "
            f"({r['min']:,.0f}–{r['max']:,.0f}) | {ratio} | {r['client_us_per_msg']:.1f} "
            f"| {cpu_ratio} | {delta} | {per_receive} | {r['server_us_per_msg']:.0f} "
            f"| {r['runs_ok']}/{r['runs']} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fifo", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--servers", default="fauxqs", help="fauxqs, localstack or moto (one)")
    p.add_argument("--endpoint", default="", help="use this SQS endpoint instead")
    p.add_argument("--server-pid", type=int, default=0, help="with --endpoint: its pid, for CPU")
    p.add_argument("--groups", default="0,1000,10", help="0 = standard queue, N = FIFO groups")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--handler", default="noop", help="noop | cpu:MS | sleep:MS")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--contenders", default="goraxfast-fast", help=", ".join(FIFO_CONTENDERS))
    p.add_argument("--out", default="", help="results folder (default bench/results/fifo-<ts>)")
    args = p.parse_args(argv)
    args.group_list = group_list(args.groups)
    args.contender_list = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in args.contender_list if c not in FIFO_CONTENDERS]
    if bad:
        p.error(f"--contenders: {', '.join(bad)} not among {', '.join(FIFO_CONTENDERS)}")
    if args.messages <= 0 or args.runs <= 0 or args.workers <= 0:
        p.error("--messages, --runs and --workers must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else RESULTS / f"fifo-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    server = (
        External(args.endpoint, pid=args.server_pid) if args.endpoint else make_server(args.servers)
    )
    server.start()
    results: list[RunResult] = []
    try:
        if not args.endpoint and server.name != "moto":
            warm_up_server(server.endpoint)
        plan = RunPlan(args.messages, args.warmup, args.handler, args.workers, latency_messages=0)
        harnesses = {
            g: Harness(server, out / "work", sys.executable, fifo_groups=g) for g in args.group_list
        }
        for run in range(args.runs):
            j = run % len(args.group_list)
            for groups in args.group_list[j:] + args.group_list[:j]:
                for name in args.contender_list:
                    result = harnesses[groups].run(CONTENDERS[name], plan, run)
                    print(describe_result(result), file=sys.stderr, flush=True)
                    results.append(result)
    finally:
        server.stop()
    rows = summarize(results)
    doc = {
        "meta": {
            "when": stamp,
            "git": git_state(),
            "command": " ".join(["python -m bench.fifo", *(argv or sys.argv[1:])]),
            "server": server.name,
            "messages": args.messages,
            "workers": args.workers,
            "handler": args.handler,
            "runs": args.runs,
        },
        "runs": [r.as_dict() for r in results],
        "summary": rows,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2))
    text = (
        f"# FIFO consumption on {server.name}: {args.messages:,} messages per run, "
        f"{args.workers} workers, handler {args.handler}, median of {args.runs}\n\n"
        + table(rows)
        + "\n"
    )
    (out / "results.md").write_text(text)
    print(text)
    print(f"results: {out}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
