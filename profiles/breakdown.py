"""``python -m profiles.breakdown``: the engine's CPU per message, split, next to two floors.

The bench gives one figure per contender (its whole process tree). This splits goraxfast's and
puts two floors beside it, each measured in the same run, so a reader can see what an
optimisation could still win:

- **engine**: ``Engine`` embedded in this process (so this process *is* the parent) draining a
  pre-filled fauxqs queue with a no-op handler and Config defaults (2 workers, fast data plane):
  parent CPU (user and system) and the workers' CPU from /proc, per message.
- **HTTP floor**: :class:`~goraxfast.sqs.fast.FastSQSClient` alone, ReceiveMessage(10) then
  DeleteMessageBatch(10) on what arrived, two loops in flight, nothing else: what the SQS calls
  cost a client that does no other work.
- **in-memory**: the same engine on :class:`goraxfast.testing.InMemoryQueue` (no HTTP, no
  server): the parent's own bookkeeping (dispatch, rings, leases, limiter, acks) plus the
  workers, and the in-memory queue's own SQS model (receive counts, receipt handles, visibility).

Medians of ``--runs`` runs; every run gets a fresh queue and a fresh engine. The figures move by
±10 % between runs on a shared two-core machine, so compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvloop

from bench.servers import Fauxqs
from bench.workload import (
    BenchQueue,
    bench_config,
    boto_client,
    messages,
    publish_gorax,
    run_tag,
    warm_up_server,
)
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.engine.engine import Engine
from goraxfast.sqs.fast import FastSQSClient
from goraxfast.testing import InMemoryQueue

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
WARMUP = 1_000


@dataclass
class Sample:
    msgs_per_s: float
    parent_user_us: float
    parent_sys_us: float
    workers_us: float = 0.0

    @property
    def parent_us(self) -> float:
        return self.parent_user_us + self.parent_sys_us

    @property
    def total_us(self) -> float:
        return self.parent_us + self.workers_us


def noop(msg: ExecutionMessage) -> None:
    """The handler: nothing, so every microsecond measured is the engine's."""


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU of one process (its own, not its children's), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


class _Meter:
    """CPU of this process (rusage) and of a set of others (/proc) over one window."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.r0 = resource.getrusage(resource.RUSAGE_SELF)
        self.w0 = sum(_proc_cpu_s(p) for p in self.pids)
        self.t0 = time.perf_counter()

    def sample(self, handled: int) -> Sample:
        elapsed = time.perf_counter() - self.t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        w1 = sum(_proc_cpu_s(p) for p in self.pids)
        per = 1e6 / handled
        return Sample(
            handled / elapsed,
            (r1.ru_utime - self.r0.ru_utime) * per,
            (r1.ru_stime - self.r0.ru_stime) * per,
            (w1 - self.w0) * per,
        )


async def _until(
    predicate: Callable[[], bool], engine: Engine | None = None, timeout_s: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            state = f": {engine.stats().summary()}" if engine is not None else ""
            raise TimeoutError(f"the run did not finish in {timeout_s:g} s{state}")
        await asyncio.sleep(0.005)


async def _engine_window(engine: Engine, measured: int) -> Sample:
    """Start, warm up, measure ``measured`` deletes, stop."""
    await engine.start()
    try:
        await _until(lambda: engine.stats().deleted >= WARMUP, engine)
        meter = _Meter(engine.worker_pids())
        start = engine.stats().deleted
        await _until(lambda: engine.stats().deleted >= start + measured, engine)
        return meter.sample(engine.stats().deleted - start)
    finally:
        await engine.stop()


def _supply(measured: int) -> int:
    """Messages to provide: the warm-up, the window, and slack, because the window starts at
    the first check that sees the warm-up done (on a fast run, hundreds of messages later)."""
    return WARMUP + measured + max(3_000, measured // 4)


def _fresh_queue(endpoint: str, count: int) -> BenchQueue:
    queue = BenchQueue(boto_client(endpoint), f"breakdown-{run_tag()}").create()
    publish_gorax(endpoint, queue.url, messages(count, run_tag()))
    return queue


def engine_on_server(endpoint: str, measured: int, prefetch: int | None = None) -> Sample:
    queue = _fresh_queue(endpoint, _supply(measured))
    try:
        config = bench_config(endpoint, queue.url).with_(worker_processes=2, health_port=0)
        if prefetch is not None:
            config = config.with_(prefetch=prefetch)
        engine = Engine(config, noop, serve_http=False)
        return uvloop.run(_engine_window(engine, measured))
    finally:
        queue.delete()


def http_floor(endpoint: str, measured: int, loops: int = 2) -> Sample:
    queue = _fresh_queue(endpoint, _supply(measured))

    async def go() -> Sample:
        client = await FastSQSClient(bench_config(endpoint, queue.url)).start()
        done = 0

        async def drain(until: int) -> None:
            nonlocal done
            while done < until:
                got = await client.receive(10, 1, 60)
                if got:
                    await client.delete_batch(
                        [(str(i), m.receipt_handle) for i, m in enumerate(got)]
                    )
                    done += len(got)

        try:
            await drain(WARMUP)
            meter = _Meter([])
            start = done
            await asyncio.gather(*(drain(start + measured) for _ in range(loops)))
            return meter.sample(done - start)
        finally:
            await client.close()

    try:
        return uvloop.run(go())
    finally:
        queue.delete()


def _no_timestamp() -> int:
    return 0


def in_memory_queue(count: int) -> InMemoryQueue:
    """``count`` gorax messages in an in-memory queue (1,000 distinct bodies, no attributes).

    Their sent and first-receive timestamps are 0, as in the hand-written plane this profile
    used before: the dispatcher then skips its publish-to-handled latency histogram, so the
    figure stays comparable with earlier runs.
    """
    queue = InMemoryQueue(wall_ms=_no_timestamp)
    bodies = [encode_message(m) for m in messages(min(count, 1_000), run_tag())]
    for n in range(count):
        queue.publish_body(bodies[n % len(bodies)])
    return queue


def engine_in_memory(measured: int) -> Sample:
    queue = in_memory_queue(_supply(measured))
    config = queue.config(worker_processes=2, metrics_interval_s=3600)
    engine = Engine(config, noop, data_plane=queue, serve_http=False)
    return uvloop.run(_engine_window(engine, measured))


def median(samples: list[Sample]) -> Sample:
    def m(get: Callable[[Sample], float]) -> float:
        return statistics.median(get(s) for s in samples)

    return Sample(
        m(lambda s: s.msgs_per_s),
        m(lambda s: s.parent_user_us),
        m(lambda s: s.parent_sys_us),
        m(lambda s: s.workers_us),
    )


def table(rows: dict[str, Sample]) -> str:
    lines = [
        "| measurement | msg/s | parent µs/msg (user + sys) | workers µs/msg | total µs/msg |",
        "|---|---|---|---|---|",
    ]
    for name, s in rows.items():
        workers = f"{s.workers_us:.1f}" if s.workers_us else "–"
        lines.append(
            f"| {name} | {s.msgs_per_s:,.0f} | {s.parent_us:.1f} ({s.parent_user_us:.1f} + "
            f"{s.parent_sys_us:.1f}) | {workers} | {s.total_us:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m profiles.breakdown", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--messages", type=int, default=20_000, help="measured per run")
    p.add_argument(
        "--only", choices=("engine", "http", "memory"), help="one measurement instead of all"
    )
    p.add_argument("--prefetch", type=int, help="QUEUE_PREFETCH for the engine (default: Config's)")
    args = p.parse_args(argv)
    kinds = [args.only] if args.only else ["engine", "http", "memory"]
    names = {
        "engine": "engine on fauxqs (no-op handler, "
        + ("Config defaults" if args.prefetch is None else f"QUEUE_PREFETCH={args.prefetch}")
        + ", 2 workers)",
        "http": "HTTP floor: FastSQSClient receive(10) + delete_batch(10), 2 loops",
        "memory": "engine on an in-memory data plane (no HTTP)",
    }
    results: dict[str, list[Sample]] = {k: [] for k in kinds}
    server = Fauxqs().start() if {"engine", "http"} & set(kinds) else None
    try:
        if server is not None:
            warm_up_server(server.endpoint, 10_000)  # past Node's JIT warm-up
        for run in range(args.runs):
            for kind in kinds:
                if kind == "engine":
                    assert server is not None
                    s = engine_on_server(server.endpoint, args.messages, args.prefetch)
                elif kind == "http":
                    assert server is not None
                    s = http_floor(server.endpoint, args.messages)
                else:
                    s = engine_in_memory(args.messages)
                results[kind].append(s)
                print(
                    f"run {run + 1}/{args.runs} {kind:7s} {s.msgs_per_s:9,.0f} msg/s "
                    f"parent {s.parent_us:5.1f} workers {s.workers_us:5.1f} "
                    f"total {s.total_us:5.1f} us/msg",
                    file=sys.stderr,
                )
    finally:
        if server is not None:
            server.stop()
    print(f"\nMedians of {args.runs} runs, {args.messages:,} measured messages each:\n")
    print(table({names[k]: median(v) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
