"""Turn raw runs into the results folder: ``results.json``, ``results.md`` and PNG plots.

Medians over the successful runs of each contender (min-max shown beside them); latency
percentiles over all latency samples of all runs pooled (a p99 of 60 samples per run would be
the run's maximum); ratios to goraxfast's Engine on the same server with the same handler, so
"x0.25" throughput means a quarter of goraxfast's and "x4.0" CPU means four times its CPU per
message. A contender with no successful run stays in every table as "failed" with its reason.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import median, percentile

BASELINE = "goraxfast-fast"  # the engine's default data plane; write() reads it from meta
PUBLISH_BASELINE = "async-batch"
CEILING = "ceiling"  # the raw-HTTP contender: SQS calls and nothing else


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures: CPU model, cores, memory, OS, Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- summaries -----------------------------------------------------------------------------


def _key(run: dict[str, Any]) -> tuple[Any, ...]:
    return (run["server"], run["contender"], run["workers"], run["handler"], _rtt(run))


def _rtt(run: dict[str, Any]) -> float:
    """The round trip the delay proxy added to the run's SQS calls (0: none; older results)."""
    return float(run.get("rtt_ms") or 0.0)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def engine_figures(ok: Sequence[dict[str, Any]]) -> dict[str, float]:
    """What goraxfast's Engine reported about itself, over its successful runs.

    The pipeline it chose while the window was open (median of its samples there, then the
    median over runs; the most it reached in any run), the most messages it held, and the
    dwell (receive to handler start) percentiles it measured over each whole run (median over
    runs). Absent fields (an engine that does not report them) stay NaN: "n/a".
    """
    win = [r.get("engine_window") or {} for r in ok]
    fin = [r.get("engine_stats") or {} for r in ok]

    def most(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return max(finite) if finite else math.nan

    return {
        "pollers_window": median([_num(w.get("pollers_median")) for w in win]),
        "prefetch_window": median([_num(w.get("prefetch_median")) for w in win]),
        "held_window_max": most([_num(w.get("in_flight_max")) for w in win]),
        "pollers_max": most([_num(f.get("pollers_max")) for f in fin]),
        "prefetch_max": most([_num(f.get("prefetch_max")) for f in fin]),
        "dwell_p50_ms": median([_num(f.get("dwell_p50_s")) * 1e3 for f in fin]),
        "dwell_p99_ms": median([_num(f.get("dwell_p99_s")) * 1e3 for f in fin]),
        # messages a tenant's waiting bound overflowed: handed back to SQS with a delay
        "throttle_released": median([_num(f.get("throttle_released")) for f in fin]),
    }


def summarize(runs: Sequence[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """One row per (server, contender, workers, handler), in the order first seen."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_key(run), []).append(run)
    rows = []
    for (server, contender, workers, handler, rtt), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        rates = [r["msgs_per_s"] for r in ok]
        latencies = [x for r in ok for x in r.get("latency_ms", [])]
        errors = [r["error"] for r in group if r["error"]]
        rows.append(
            {
                "server": server,
                "contender": contender,
                "label": group[0]["label"],
                "workers": workers,
                "handler": handler,
                "runs": len(group),
                "runs_ok": len(ok),
                "status": "ok" if ok else "failed",
                "error": errors[0] if errors else "",
                "msgs_per_s": median(rates),
                "msgs_per_s_min": min(rates) if rates else math.nan,
                "msgs_per_s_max": max(rates) if rates else math.nan,
                "client_us_per_msg": median([r["client_us_per_msg"] for r in ok]),
                "client_cores": median([r["client_cores"] for r in ok]),
                "server_us_per_msg": median([r["server_us_per_msg"] for r in ok]),
                "server_cores": median([r["server_cores"] for r in ok]),
                "peak_rss_mb": median([r["peak_rss_mb"] for r in ok]),
                "processes": max((r["processes"] for r in ok), default=0),
                "duplicates": sum(r["duplicates"] for r in ok),
                "latency_p50_ms": percentile(latencies, 50),
                "latency_p99_ms": percentile(latencies, 99),
                "latency_samples": len(latencies),
                "rtt_ms": rtt,
                "proxy_us_per_msg": median([_num(r.get("proxy_us_per_msg")) for r in ok]),
                "proxy_cores": median([_num(r.get("proxy_cores")) for r in ok]),
                "engine": any(r.get("engine_stats") or r.get("engine_window") for r in group),
                **engine_figures(ok),
            }
        )
    add_ratios(rows, baseline)
    return rows


def add_ratios(rows: list[dict[str, Any]], baseline: str = BASELINE) -> None:
    """``x_throughput`` and ``x_cpu`` against the baseline row of the same server, handler and
    added round trip; ``x_own_0ms`` / ``x_cpu_own_0ms`` against the same contender's row with
    no added round trip (NaN when there is none)."""

    def where(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["server"], r["workers"], r["handler"], r.get("rtt_ms", 0.0))

    base = {where(r): r for r in rows if r["contender"] == baseline and r["status"] == "ok"}
    ceiling = {where(r): r for r in rows if r["contender"] == CEILING and r["status"] == "ok"}
    direct = {
        (r["server"], r["contender"], r["workers"], r["handler"]): r
        for r in rows
        if r.get("rtt_ms", 0.0) == 0 and r["status"] == "ok"
    }
    for row in rows:
        own = direct.get((row["server"], row["contender"], row["workers"], row["handler"]))
        row["x_own_0ms"] = _ratio(row["msgs_per_s"], own["msgs_per_s"] if own else math.nan)
        row["x_cpu_own_0ms"] = _ratio(
            row["client_us_per_msg"], own["client_us_per_msg"] if own else math.nan
        )
        key = where(row)
        ref = base.get(key)
        row["x_throughput"] = _ratio(row["msgs_per_s"], ref["msgs_per_s"] if ref else math.nan)
        row["x_cpu"] = _ratio(
            row["client_us_per_msg"], ref["client_us_per_msg"] if ref else math.nan
        )
        top = ceiling.get(key)
        row["x_cpu_ceiling"] = _ratio(
            row["client_us_per_msg"], top["client_us_per_msg"] if top else math.nan
        )


def ceiling_line(rows: Sequence[dict[str, Any]]) -> str:
    """Each contender's client CPU per message over the raw-HTTP ceiling's in the same run.

    This machine's speed moves by ~20 % within an hour, and every contender's µs/msg with it;
    the ratio to a contender that does nothing but the SQS calls moves far less (1.23-1.45 for
    the fast engine over five runs of 2026-11-28 whose µs/msg spanned 26-34).
    """
    parts = [
        f"{r['label']} {_x(r['x_cpu_ceiling'])}"
        for r in rows
        if r["status"] == "ok" and r["contender"] != CEILING and not math.isnan(r["x_cpu_ceiling"])
    ]
    if not parts:
        return ""
    return (
        "Client CPU per message over the raw-HTTP ceiling's in the same run (steadier than µs "
        "across runs on a shared machine): " + "; ".join(parts) + "."
    )


def _ratio(value: float, ref: float) -> float:
    if math.isnan(value) or math.isnan(ref) or ref == 0:
        return math.nan
    return value / ref


def summarize_publish(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["mode"]), []).append(run)
    rows = []
    for (server, mode), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        rows.append(
            {
                "server": server,
                "mode": mode,
                "messages": group[0]["messages"],
                "runs": len(group),
                "runs_ok": len(ok),
                "status": "ok" if ok else "failed",
                "error": next((r["error"] for r in group if r["error"]), ""),
                "msgs_per_s": median([r["msgs_per_s"] for r in ok]),
                "client_us_per_msg": median([r["client_us_per_msg"] for r in ok]),
                "server_us_per_msg": median([r["server_us_per_msg"] for r in ok]),
            }
        )
    base = {r["server"]: r for r in rows if r["mode"] == PUBLISH_BASELINE and r["status"] == "ok"}
    for row in rows:
        ref = base.get(row["server"])
        row["x_throughput"] = _ratio(row["msgs_per_s"], ref["msgs_per_s"] if ref else math.nan)
        row["x_cpu"] = _ratio(
            row["client_us_per_msg"], ref["client_us_per_msg"] if ref else math.nan
        )
    return rows


def summarize_micro(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """pytest-benchmark's JSON reduced to name, group, mean and ratio to the group's fastest."""
    if not doc:
        return []
    rows = [
        {
            "group": b.get("group") or b["fullname"].split("::")[0].rsplit("/", 1)[-1],
            "name": b["name"],
            "mean_us": b["stats"]["mean"] * 1e6,
            "ops": b["stats"]["ops"],
            "rounds": b["stats"]["rounds"],
        }
        for b in doc.get("benchmarks", [])
    ]
    fastest: dict[str, float] = {}
    for r in rows:
        fastest[r["group"]] = min(fastest.get(r["group"], math.inf), r["mean_us"])
    for r in rows:
        r["x_fastest"] = r["mean_us"] / fastest[r["group"]]
    return rows


_CLIENT_CALLS = re.compile(r"test_client_cpu_per_round_of_calls\[(\w+)-(\w+)\]")


def summarize_dataplane(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Client CPU per SQS call, fast and botocore side by side, and what it is per message.

    From ``bench/test_dataplane_bench.py``'s ``cpu_us_per_call`` (the median round of
    sequential calls, timed with the process's CPU clock against a canned server, divided by
    its calls: the client's CPU alone). The
    engine makes one ReceiveMessage(10) and one DeleteMessageBatch(10) per ten messages, so the
    per-message row is their sum over ten: the data plane's share of the engine's CPU.
    """
    per_call: dict[str, dict[str, float]] = {}
    for b in (doc or {}).get("benchmarks", []):
        match = _CLIENT_CALLS.fullmatch(b["name"])
        us = b.get("extra_info", {}).get("cpu_us_per_call")
        if match and us is not None:
            kind, operation = match.groups()
            per_call.setdefault(operation, {})[kind] = float(us)
    rows = []
    for operation, by_kind in sorted(per_call.items()):
        if {"fast", "botocore"} <= by_kind.keys():
            rows.append({"operation": operation, **by_kind})
    pair = [r for r in rows if r["operation"] in ("receive_10", "delete_batch_10")]
    if len(pair) == 2:
        rows.append(
            {
                "operation": "per message (receive_10 + delete_batch_10) / 10",
                "fast": sum(r["fast"] for r in pair) / 10,
                "botocore": sum(r["botocore"] for r in pair) / 10,
            }
        )
    for r in rows:
        r["x_less"] = _ratio(r["botocore"], r["fast"])
    return rows


def dataplane_table(rows: Sequence[dict[str, Any]]) -> str:
    out = [
        "| client CPU µs (median) | fast | botocore | botocore ÷ fast |",
        "|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['operation']} | {_f(r['fast'], 1)} | {_f(r['botocore'], 1)} | {_x(r['x_less'])} |"
        )
    return "\n".join(out)


# --- Markdown ------------------------------------------------------------------------------


def _f(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"×{value:.2f}"


def e2e_table(rows: Iterable[dict[str, Any]]) -> str:
    out = [
        "| contender | msgs/s (min–max) | × goraxfast | client CPU µs/msg | × goraxfast "
        "| client cores | server CPU µs/msg | server cores | latency p50 / p99 ms "
        "| peak RSS MB (procs) | runs ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            reason = r["error"].splitlines()[0][:120] if r["error"] else "no successful run"
            out.append(f"| {r['label']} | **failed**: {reason} | | | | | | | | | 0/{r['runs']} |")
            continue
        out.append(
            f"| {r['label']} | {_f(r['msgs_per_s'])} ({_f(r['msgs_per_s_min'])}–"
            f"{_f(r['msgs_per_s_max'])}) | {_x(r['x_throughput'])} | {_f(r['client_us_per_msg'])} "
            f"| {_x(r['x_cpu'])} | {_f(r['client_cores'], 2)} | {_f(r['server_us_per_msg'])} "
            f"| {_f(r['server_cores'], 2)} | {_f(r['latency_p50_ms'], 1)} / "
            f"{_f(r['latency_p99_ms'], 1)} | {_f(r['peak_rss_mb'])} ({r['processes']}) "
            f"| {r['runs_ok']}/{r['runs']} |"
        )
    return "\n".join(out)


def proxy_line(rtt: float, info: dict[str, Any]) -> str:
    """What the delay proxy of one RTT did over the whole server block (its own counters)."""
    if info.get("error"):
        return f"Delay proxy +{rtt:g} ms: **failed**: {info['error'][:200]}"
    p = info.get("delayproxy")
    if not isinstance(p, dict):
        return f"Delay proxy +{rtt:g} ms: counters unavailable."
    return (
        f"Delay proxy +{rtt:g} ms ({info.get('loop', '?')}, a process of its own): "
        f"{p.get('requests', 0):,} requests over all runs, delay actually added p50 "
        f"{_f(_num(p.get('added_p50_ms')), 1)} / p99 {_f(_num(p.get('added_p99_ms')), 1)} ms, "
        f"{_f(_num(p.get('cpu_s')) * 1e6 / max(1, p.get('requests', 0)), 0)} µs of its CPU per "
        f"request; peak {p.get('peak_connections', 0)} client connections, "
        f"{p.get('upstream_errors', 0)} upstream errors."
    )


def _rate_cell(r: dict[str, Any] | None, own_ratio: bool) -> str:
    if r is None:
        return ""
    if r["status"] != "ok":
        return "failed"
    cell = _f(r["msgs_per_s"])
    if own_ratio:
        cell += f" ({_x(r['x_own_0ms'])})"
    return cell


def rtt_table(rows: Sequence[dict[str, Any]]) -> str:
    """Each contender's msgs/s and client CPU per message at every RTT, side by side."""
    rtts = sorted({r.get("rtt_ms", 0.0) for r in rows})
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    labels = {r["contender"]: r["label"] for r in rows}
    by = {(r["contender"], r.get("rtt_ms", 0.0)): r for r in rows}
    head = ["contender"]
    for rtt in rtts:
        name = f"+{rtt:g} ms" if rtt else "direct"
        head += [
            f"{name}: msgs/s" + (" (× own direct)" if rtt else ""),
            f"{name}: client µs/msg" + (" (× own direct)" if rtt else ""),
        ]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for c in contenders:
        cells = [labels[c]]
        for rtt in rtts:
            r = by.get((c, rtt))
            cells.append(_rate_cell(r, bool(rtt)))
            if r is None or r["status"] != "ok":
                cells.append("")
                continue
            cpu = _f(r["client_us_per_msg"])
            cells.append(cpu + (f" ({_x(r['x_cpu_own_0ms'])})" if rtt else ""))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _pair(a: float, b: float, digits: int = 0) -> str:
    return f"{_f(a, digits)} / {_f(b, digits)}"


def pipeline_table(rows: Sequence[dict[str, Any]]) -> str:
    """goraxfast's Engine at each RTT: the pipeline it chose, what it held, the dwell."""
    out = [
        "| contender | added round trip | msgs/s | pollers: window median / run max "
        "| prefetch: window median / run max | messages held: window max "
        "| dwell p50 / p99 ms | throttle releases per run | publish→handled p50 / p99 ms "
        "| proxy cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    engines = [r for r in rows if r.get("engine")]
    for r in sorted(engines, key=lambda r: (r["contender"], r.get("rtt_ms", 0.0))):
        rtt = r.get("rtt_ms", 0.0)
        where = f"+{rtt:g} ms" if rtt else "direct"
        if r["status"] != "ok":
            out.append(f"| {r['label']} | {where} | failed | | | | | | | |")
            continue
        out.append(
            f"| {r['label']} | {where} | {_f(r['msgs_per_s'])} "
            f"| {_pair(r['pollers_window'], r['pollers_max'])} "
            f"| {_pair(r['prefetch_window'], r['prefetch_max'])} "
            f"| {_f(r['held_window_max'])} "
            f"| {_pair(r['dwell_p50_ms'], r['dwell_p99_ms'], 1)} "
            f"| {_f(r['throttle_released'])} "
            f"| {_pair(r['latency_p50_ms'], r['latency_p99_ms'], 1)} "
            f"| {_f(r['proxy_cores'], 2) if rtt else '–'} |"
        )
    return "\n".join(out)


def latency_section(server: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        f"### {server}: throughput against the round trip",
        "",
        "Each contender straight to the server and through a delay proxy adding the round trip "
        "shown to each of its SQS calls (`bench/delayproxy.py`, a process of its own, loopback), "
        "side by side in this run; medians of the runs. (× own direct): that contender's figure "
        "over its own without the proxy.",
        "",
        rtt_table(rows),
        "",
    ]
    if any(r.get("engine") for r in rows):
        lines += [
            "goraxfast's Engine, what it chose and how long messages waited in its hands: "
            "pollers (ReceiveMessage calls in flight) and prefetch (room for messages beyond "
            "the running ones) as its own stats sampled them every 0.1 s inside the measured "
            "window (median over the window, then over runs) and the most it reached during a "
            "run; messages held (received, not yet settled) at most inside the window; dwell "
            "= receive to handler start, p50/p99 as the engine measured them over the run "
            "(n/a: this engine does not report it). Throttle releases: messages the engine handed "
            "back to SQS (with WORKER_THROTTLE_RELEASE_DELAY_SECONDS) because their tenant was at "
            "its cap and the tenants' waiting bound was full (median per run, warm-up and "
            "latency phase included); each comes back after that delay. Publish→handled is the latency phase "
            "(one message at a time into the idle engine), proxy cores the delay proxy's CPU "
            "per wall second during the window.",
            "",
            pipeline_table(rows),
            "",
        ]
    return lines


def scaling_table(rows: Sequence[dict[str, Any]]) -> str:
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    labels = {r["contender"]: r["label"] for r in rows}
    workers = sorted({r["workers"] for r in rows})
    by = {(r["contender"], r["workers"]): r for r in rows}
    head = (
        "| workers | " + " | ".join(f"{labels[c]} msgs/s (client cores)" for c in contenders) + " |"
    )
    out = [head, "|---" * (len(contenders) + 1) + "|"]
    for w in workers:
        cells = []
        for c in contenders:
            r = by.get((c, w))
            if r is None:
                cells.append("")
            elif r["status"] != "ok":
                cells.append("failed")
            else:
                cells.append(f"{_f(r['msgs_per_s'])} ({_f(r['client_cores'], 2)})")
        out.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def publish_table(rows: Iterable[dict[str, Any]], modes: dict[str, str]) -> str:
    out = [
        "| mode | msgs/s | × goraxfast async-batch | client CPU µs/msg | server CPU µs/msg | runs ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            out.append(
                f"| {modes.get(r['mode'], r['mode'])} | **failed**: {r['error'][:120]} | | | | 0/{r['runs']} |"
            )
            continue
        out.append(
            f"| {modes.get(r['mode'], r['mode'])} | {_f(r['msgs_per_s'])} | {_x(r['x_throughput'])} "
            f"| {_f(r['client_us_per_msg'])} | {_f(r['server_us_per_msg'])} | {r['runs_ok']}/{r['runs']} |"
        )
    return "\n".join(out)


def micro_table(rows: Sequence[dict[str, Any]]) -> str:
    out = ["| group | benchmark | mean µs | ops/s | × fastest in group |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['group']} | {r['name']} | {_f(r['mean_us'], 2)} | {_f(r['ops'])} | {_x(r['x_fastest'])} |"
        )
    return "\n".join(out)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    mach = m["machine"]
    lines = [
        f"# goraxfast bench — {mach['date']}",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, Linux "
        f"{mach['kernel']}, Python {mach['python']}. Command: `{m['command']}`. goraxfast at "
        f"{m.get('git', 'unknown commit')}.",
        "",
        f"Ratios (×) are to `{m.get('baseline', BASELINE)}`, the engine with its default data "
        f"plane (`sqs_client={m.get('default_sqs_client', '?')}`) on the same server: ×0.25 "
        "throughput is a quarter of goraxfast's, ×4.0 CPU is four times its CPU per message.",
        "",
        f"End-to-end: each contender drains a fresh queue pre-filled with {m['warmup']} warm-up "
        "+ N measured messages (N in each server's heading; the same gorax ExecutionMessages for all; Celery "
        "and dramatiq get them in their own envelope), handler "
        f"`{m['handler']}`, {m['workers']} worker processes where the contender has workers; "
        f"median of {m['runs']} runs (the starting contender rotates from run to run; a server the bench "
        "starts is warmed first, with a 5,000-message drain on fauxqs, 1,000 on LocalStack, and "
        "one uncounted run of the ceiling contender). The window closes when every message is handled *and* "
        "the queue is empty (deletes included). CPU is whole process trees from /proc; "
        '"cores" = CPU seconds per wall second (≈1.0 on one process means CPU-bound); /proc '
        "counts CPU in 10 ms ticks per process, so windows shorter than a second are coarse. "
        f"Latency: {m['latency_messages']} messages per run published one at a time at "
        f"{m['latency_rate']:g}/s into the idle consumer, publish→handled, includes the "
        "harness's own send call (~2 ms), all runs pooled.",
        "",
    ]
    rtts = [x for x in m.get("rtt_ms", [0.0]) if x]
    if rtts:
        lines += [
            "Latency mode (`--rtt-ms`): every contender also ran with a delay proxy in front of "
            f"the server adding {', '.join(f'{x:g}' for x in rtts)} ms to each of its SQS "
            "calls' round trips (`bench/delayproxy.py`: its own process, one per round trip, "
            "each request delayed on its own; real SQS in-region costs ~10–30 ms per call). "
            "Queue set-up, pre-fill, depth checks and the latency phase's sends go straight "
            "to the server. In each round every round trip and every contender ran once, in "
            "rotating order. The proxy's CPU is not in the client's or the server's figures.",
            "",
        ]
    for server in doc["servers"]:
        name = server["name"]
        lines.append(f"## {name}: {server.get('describe', {}).get('server', name)}")
        lines.append("")
        if server.get("error"):
            lines += [f"**Not run**: {server['error']}", ""]
            continue
        lines.append(f"Server: `{json.dumps(server.get('describe', {}))}`")
        lines.append("")
        rows = [r for r in doc["e2e_summary"] if r["server"] == name]
        counts = m["messages"]
        n = counts.get(name, counts.get("*")) if isinstance(counts, dict) else counts
        for rtt in dict.fromkeys(r.get("rtt_ms", 0.0) for r in rows):
            mine = [r for r in rows if r.get("rtt_ms", 0.0) == rtt]
            if rtt:
                lines += [
                    f"End-to-end through the delay proxy, **+{rtt:g} ms** on each of the "
                    f"contender's SQS calls, {n} measured messages per run (× goraxfast: to "
                    "the engine through the same proxy):",
                    "",
                ]
            else:
                lines.append(f"End-to-end, {n} measured messages per run:")
                lines.append("")
            lines += [e2e_table(mine), ""]
            if ceiling_line(mine):
                lines += [ceiling_line(mine), ""]
            proxy = server.get("proxies", {}).get(f"{rtt:g}") if rtt else None
            if proxy:
                lines += [proxy_line(rtt, proxy), ""]
        if any(r.get("rtt_ms", 0.0) for r in rows):
            lines += latency_section(name, rows)
        scaling = [r for r in doc["scaling_summary"] if r["server"] == name]
        if scaling:
            lines += [
                f"### CPU-bound scaling on {name}: handler `{scaling[0]['handler']}`, "
                f"{m['scaling_messages']} messages, median of {m['scaling_runs']} runs",
                "",
                scaling_table(scaling),
                "",
            ]
        pub = [r for r in doc["publish_summary"] if r["server"] == name]
        if pub:
            lines += [
                f"### Publishing {pub[0]['messages']} messages on {name} (median of "
                f"{m['publish_runs']} runs)",
                "",
                publish_table(pub, doc.get("publish_modes", {})),
                "",
            ]
    if doc.get("dataplane_summary"):
        lines += [
            "## The data plane alone: client CPU per SQS call, fast vs botocore",
            "",
            "A canned local server that costs ~nothing (`bench/test_dataplane_bench.py`), so "
            "this is the client's CPU only: encode, sign, HTTP, parse, event loop. Medians of "
            "pytest-benchmark rounds of sequential calls, divided by the calls per round.",
            "",
            dataplane_table(doc["dataplane_summary"]),
            "",
        ]
    if doc.get("micro_summary"):
        lines += [
            "## Micro benchmarks (pytest-benchmark)",
            "",
            micro_table(doc["micro_summary"]),
            "",
        ]
    lines += ["## Contender settings", ""]
    for name, settings in doc.get("settings", {}).items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    failures = [r for r in doc["e2e"] + doc["scaling"] if r["status"] != "ok"]
    if failures:
        lines += ["", "## Failed runs", ""]
        for r in failures:
            via = f" +{_rtt(r):g} ms" if _rtt(r) else ""
            lines.append(
                f"- {r['server']}{via} / {r['contender']} run {r['run']}: {r['error'][:600]}"
            )
    lines.append("")
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------

#: Saved at this resolution; every text is at least 8 pt, ~12 px at it.
PLOT_DPI = 110
#: One colour per contender, the same in every plot (goraxfast's two data planes warm, the
#: others cool, the raw-HTTP ceiling grey); a contender not named here takes the next free one.
CONTENDER_COLOURS = {
    "goraxfast-fast": "#d62728",
    "goraxfast-botocore": "#ff7f0e",
    "naive-boto3": "#8c564b",
    "aio-batch": "#1f77b4",
    "aio-procs": "#17becf",
    "celery": "#2ca02c",
    "dramatiq": "#9467bd",
    "ceiling": "#7f7f7f",
}
_SPARE_COLOURS = ("#bcbd22", "#e377c2", "#393b79", "#637939", "#843c39", "#7b4173")
PUBLISH_COLOURS = ("#8c564b", "#2ca02c", "#d62728", "#ff7f0e", "#1f77b4", "#9467bd")
SERVER_CPU_COLOUR = "#c7c7c7"
_LEGEND_FONT = 8


def contender_colours(contenders: Iterable[str]) -> dict[str, str]:
    """A colour for each contender: its own from :data:`CONTENDER_COLOURS`, else a spare one."""
    colours: dict[str, str] = {}
    spare = iter(_SPARE_COLOURS * 4)
    for name in dict.fromkeys(contenders):
        colours[name] = CONTENDER_COLOURS.get(name) or next(spare, "#000000")
    return colours


def _legend_below(ax: Any, handles: list[Any], labels: list[str], columns: int) -> None:
    """A legend under the axes, outside the data, so that it hides no bar or line."""
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=max(1, min(columns, len(labels))),
        fontsize=_LEGEND_FONT,
        frameon=False,
    )


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def figures(plt: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Every plot of a results document, built and not saved: the PNG's stem -> its figure.

    Separate from :func:`plots` so that a test can read the labels, titles and legends off the
    figures themselves. A plot with nothing to show (no scaling runs, no round trips) is left
    out. The caller closes the figures.
    """
    built = {
        "throughput": throughput_figure(plt, doc),
        "scaling": scaling_figure(plt, doc),
        "latency": latency_figure(plt, doc["e2e_summary"]),
        "publish": publish_figure(plt, doc),
    }
    return {name: fig for name, fig in built.items() if fig is not None}


def plots(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG files; none (and a note in the log) when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        print("matplotlib not installed: no plots (pip install -e '.[bench]')", file=sys.stderr)
        return []
    written: list[Path] = []
    for name, fig in figures(plt, doc).items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=PLOT_DPI)
        plt.close(fig)
        written.append(path)
    return written


def throughput_figure(plt: Any, doc: dict[str, Any]) -> Any:
    """Per server: msgs/s per contender (median, min-max whiskers) and CPU per message, client
    and server stacked. The direct runs (the round trips have the latency plot); runs through a
    delay proxy only when there were no direct ones, each bar named with its round trip."""
    servers = [s["name"] for s in doc["servers"] if not s.get("error")]
    rows = doc["e2e_summary"]
    bars = [r for r in rows if not r.get("rtt_ms")] or list(rows)
    bars = [r for r in bars if r["server"] in servers]
    if not bars:
        return None
    servers = [s for s in servers if any(r["server"] == s for r in bars)]
    colours = contender_colours(r["contender"] for r in bars)
    most = max(sum(1 for r in bars if r["server"] == s) for s in servers)
    fig, axes = plt.subplots(
        len(servers),
        2,
        figsize=(14, 0.9 + len(servers) * (1.5 + 0.45 * most)),
        squeeze=False,
        layout="constrained",
    )
    for i, server in enumerate(servers):
        mine = [r for r in bars if r["server"] == server][::-1]  # the first contender on top
        labels = [r["label"] + (f" (+{r['rtt_ms']:g} ms)" if r.get("rtt_ms") else "") for r in mine]
        ok = [r["status"] == "ok" for r in mine]
        ax = axes[i][0]
        rates = [r["msgs_per_s"] if good else 0 for r, good in zip(mine, ok, strict=True)]
        err = [
            [
                r["msgs_per_s"] - r["msgs_per_s_min"] if g else 0
                for r, g in zip(mine, ok, strict=True)
            ],
            [
                r["msgs_per_s_max"] - r["msgs_per_s"] if g else 0
                for r, g in zip(mine, ok, strict=True)
            ],
        ]
        bar_colours = [colours[r["contender"]] for r in mine]
        ax.barh(labels, rates, xerr=err, color=bar_colours, capsize=3)
        ok_rates = [v for v in rates if v > 0]
        # One server allows 30x what the slowest contender does: a log axis keeps every bar
        # readable; the axis label says so, so that nobody reads it as linear.
        log = bool(ok_rates) and max(ok_rates) / min(ok_rates) > 20
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(ok_rates) / 3, max(ok_rates) * 4)
        else:
            ax.set_xlim(0, max([*rates, 1]) * 1.3)
        for y, (r, good) in enumerate(zip(mine, ok, strict=True)):
            if not good:
                ax.text(
                    ax.get_xlim()[0] * (1.1 if log else 1),
                    y,
                    " failed",
                    va="center",
                    fontsize=8,
                    color="#d62728",
                )
                continue
            ax.text(
                r["msgs_per_s_max"] * (1.08 if log else 1.02),
                y,
                f"{r['msgs_per_s']:,.0f}",
                va="center",
                fontsize=8,
            )
        ax.set_xlabel(
            "throughput (msgs/s; bar: median of runs, whiskers: min–max"
            + ("; log scale)" if log else ")")
        )
        ax.set_ylabel("contender")
        ax.set_title(f"{server}: throughput", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax2 = axes[i][1]
        client = [r["client_us_per_msg"] if g else 0 for r, g in zip(mine, ok, strict=True)]
        serv = [
            r["server_us_per_msg"] if g and not math.isnan(r["server_us_per_msg"]) else 0
            for r, g in zip(mine, ok, strict=True)
        ]
        ax2.barh(labels, client, color=bar_colours)
        ax2.barh(labels, serv, left=client, color=SERVER_CPU_COLOUR, hatch="//", edgecolor="white")
        ax2.set_xlabel("CPU per message (µs, median of runs)")
        for y, good in enumerate(ok):
            if not good:
                ax2.text(0, y, " failed", va="center", fontsize=8, color="#d62728")
        ax2.set_ylabel("contender")
        ax2.set_title(f"{server}: CPU per message, client + server (hatched)", fontsize=10)
        ax2.grid(axis="x", alpha=0.3)
    # One legend for the whole figure: a contender has the same colour in every panel (the
    # bars' own labels name them too), and the hatch is every server's share.
    names = list(dict.fromkeys((r["contender"], r["label"]) for r in bars))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c, _ in names]
    server_patch = plt.Rectangle(
        (0, 0), 1, 1, facecolor=SERVER_CPU_COLOUR, hatch="//", edgecolor="white"
    )
    fig.legend(
        [*handles, server_patch],
        [*(label for _, label in names), "the server's CPU (hatched, right)"],
        loc="outside lower center",
        ncol=min(4, len(names) + 1),
        fontsize=_LEGEND_FONT + 1,
        frameon=False,
    )
    return fig


def scaling_figure(plt: Any, doc: dict[str, Any]) -> Any:
    """Per server: msgs/s against worker processes for a CPU-bound handler, with the line two
    cores (or however many) allow."""
    scaling = doc["scaling_summary"]
    if not scaling:
        return None
    scale_servers = list(dict.fromkeys(r["server"] for r in scaling))
    colours = contender_colours(r["contender"] for r in scaling)
    fig, axes = plt.subplots(
        1,
        len(scale_servers),
        figsize=(7 * len(scale_servers), 5.2),
        squeeze=False,
        layout="constrained",
    )
    for ax, server in zip(axes[0], scale_servers, strict=True):
        mine = [r for r in scaling if r["server"] == server]
        for contender in dict.fromkeys(r["contender"] for r in mine):
            pts = sorted(
                (r["workers"], r["msgs_per_s"])
                for r in mine
                if r["contender"] == contender and r["status"] == "ok"
            )
            label = next(r["label"] for r in mine if r["contender"] == contender)
            if not pts:
                label += " (failed)"
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                color=colours[contender],
                label=label,
            )
        handler = mine[0]["handler"]
        ms = float(handler.split(":")[1]) if ":" in handler else 0
        if ms:
            cores = doc["meta"]["machine"]["cores"] or 1
            ws = sorted({r["workers"] for r in mine})
            ax.plot(
                ws,
                [min(w, cores) * 1000 / ms for w in ws],
                "k--",
                lw=1,
                label=f"handler limit: min(workers, {cores} cores) × 1000/{ms:g} ms",
            )
        ax.set_xlabel("worker processes")
        ax.set_ylabel("throughput (msgs/s, median of runs)")
        ax.set_title(f"{server}: CPU-bound scaling, handler {handler}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.set_xticks(sorted({r["workers"] for r in mine}))
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        _legend_below(ax, handles, labels, 2)
    return fig


def latency_plot(plt: Any, rows: Sequence[dict[str, Any]], out_dir: Path) -> Path | None:
    """``latency.png`` alone (see :func:`latency_figure`); None when no run had a round trip."""
    fig = latency_figure(plt, rows)
    if fig is None:
        return None
    path = out_dir / "latency.png"
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return path


def latency_figure(plt: Any, rows: Sequence[dict[str, Any]]) -> Any:
    """Per server: msgs/s against the added round trip, one line per contender, and beside it
    client CPU per message. None when no run went through a delay proxy."""
    rtt_rows = [r for r in rows if r["status"] == "ok"]
    servers = list(dict.fromkeys(r["server"] for r in rows if r.get("rtt_ms", 0.0)))
    if not servers:
        return None
    colours = contender_colours(r["contender"] for r in rows)
    fig, axes = plt.subplots(
        len(servers), 2, figsize=(14, 5.4 * len(servers)), squeeze=False, layout="constrained"
    )
    for i, server in enumerate(servers):
        mine = [r for r in rtt_rows if r["server"] == server]
        ax, ax2 = axes[i]
        rates = [r["msgs_per_s"] for r in mine if r["msgs_per_s"] > 0]
        for contender in dict.fromkeys(r["contender"] for r in mine):
            pts = sorted(
                (r.get("rtt_ms", 0.0), r["msgs_per_s"], r["client_us_per_msg"], r["label"])
                for r in mine
                if r["contender"] == contender
            )
            style = {
                "marker": "o",
                "lw": 2 if contender.startswith("goraxfast") else 1.2,
                "color": colours[contender],
            }
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], label=pts[0][3], **style)
            ax2.plot(xs, [p[2] for p in pts], label=pts[0][3], **style)
        log = bool(rates) and max(rates) / min(rates) > 20
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ticks = sorted({r.get("rtt_ms", 0.0) for r in mine})
        for a in (ax, ax2):
            a.set_xlabel("round trip added to each SQS call (ms)")
            a.set_xticks(ticks)
            a.grid(alpha=0.3)
        ax.set_ylabel("throughput (msgs/s, median of runs" + (", log scale)" if log else ")"))
        ax.set_title(f"{server}: throughput against the round trip", fontsize=10)
        ax2.set_ylabel("client CPU per message (µs, median of runs; log scale)")
        ax2.set_yscale("log")
        ax2.set_title(f"{server}: client CPU per message against the round trip", fontsize=10)
        for a in (ax, ax2):
            handles, labels = a.get_legend_handles_labels()
            _legend_below(a, handles, labels, 3)
    return fig


def publish_figure(plt: Any, doc: dict[str, Any]) -> Any:
    """msgs/s of each way of publishing, grouped by server, each way in its own colour."""
    pub = doc["publish_summary"]
    if not pub:
        return None
    pub_servers = list(dict.fromkeys(r["server"] for r in pub))
    modes = list(dict.fromkeys(r["mode"] for r in pub))
    names = doc.get("publish_modes") or {}
    messages = max((r.get("messages", 0) for r in pub), default=0)
    fig, ax = plt.subplots(
        figsize=(max(8.0, 3.2 * len(pub_servers)), 4.2 + 0.25 * len(modes)), layout="constrained"
    )
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        vals = [
            next(
                (
                    r["msgs_per_s"]
                    for r in pub
                    if r["server"] == server and r["mode"] == mode and r["status"] == "ok"
                ),
                0,
            )
            for server in pub_servers
        ]
        xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(pub_servers))]
        colour = PUBLISH_COLOURS[j % len(PUBLISH_COLOURS)]
        ax.bar(xs, vals, width, color=colour, label=f"{mode}: {names.get(mode, mode)}")
        for x, v in zip(xs, vals, strict=True):
            ax.text(x, v, f"{v:,.0f}" if v else "failed", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(pub_servers)), pub_servers)
    ax.set_xlabel("server")
    ax.set_ylabel("throughput (msgs/s, median of runs)")
    ax.set_ylim(0, max([r["msgs_per_s"] for r in pub if r["status"] == "ok"] or [1]) * 1.15)
    ax.set_title(
        f"publishing {messages:,} messages: one send_message per message against goraxfast's "
        "batch publishers",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    _legend_below(ax, handles, labels, 1)
    return fig


def write(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write JSON, Markdown and plots; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from bench.contenders import baseline

    base = baseline(doc["meta"].get("default_sqs_client", "fast"))
    doc["meta"]["baseline"] = base
    doc["e2e_summary"] = summarize(doc["e2e"], base)
    doc["scaling_summary"] = summarize(doc["scaling"], base)
    doc["publish_summary"] = summarize_publish(doc["publish"])
    doc["micro_summary"] = summarize_micro(doc.get("micro"))
    doc["dataplane_summary"] = summarize_dataplane(doc.get("micro"))
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=str, allow_nan=True))
    paths["markdown"].write_text(markdown(doc))
    for p in plots(doc, out_dir):
        paths[p.stem] = p
    return paths
