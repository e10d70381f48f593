"""Contender (a): the goraxfast Engine, as a user runs it (``Engine.run()``, SIGTERM drains).

Config defaults except the endpoint, the worker count and the data plane, so the figures are
those a user gets without tuning. The handler is a plain ``def`` (an ``async def`` for
``sleep:MS``, so that sleeping handlers run concurrently as the engine intends).
``--sqs-client`` is always passed explicitly, so a change of the Config default never changes
what a contender measures.

What the engine chose, for the report (the receive pipeline sized by the round trip, and how
long a message waits in its hands before its handler starts):

- ``--stats-out PATH``: once ``Engine.run()`` has returned, ``engine.stats().as_dict()`` as
  JSON (pollers and prefetch of the last plan and the most of each, dwell percentiles: whatever
  this version of the engine reports; the harness reads every field with ``.get()``).
- ``--samples-out PATH``: the same snapshot every ``SAMPLE_EVERY_S`` while the engine runs, one
  JSON line each with ``t`` (``time.monotonic()``, the same clock across processes on Linux),
  so the harness can tell what the pipeline was during its measured window, and still has the
  figures if the engine had to be killed. A thread of the parent takes them; it is started
  right after the parent forks the zygote (``os.register_at_fork``), so no thread is alive
  across that fork, and it costs the parent ~10 snapshots a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.contenders._args import parser
from bench.recorder import HandlerSpec, Recorder, do_work, seq_of
from bench.workload import bench_config
from goraxfast.core.message import ExecutionMessage
from goraxfast.engine.engine import Engine

SAMPLE_EVERY_S = 0.1


def make_handler(spec: HandlerSpec, recorder: Recorder) -> Any:
    if spec.kind == "sleep":

        async def sleepy(msg: ExecutionMessage) -> None:
            await asyncio.sleep(spec.ms / 1000.0)
            recorder.record(seq_of(msg.execution_id))

        return sleepy

    def handle(msg: ExecutionMessage) -> None:
        do_work(spec)
        recorder.record(seq_of(msg.execution_id))

    return handle


def _stats_dict(engine: Engine) -> dict[str, Any]:
    return dict(engine.stats().as_dict())


def sample_after_fork(engine: Engine, path: str, every_s: float = SAMPLE_EVERY_S) -> None:
    """Arrange for a sampler thread to start in this process right after its next fork."""
    parent = os.getpid()
    started = threading.Event()
    stop = threading.Event()

    def sample() -> None:
        with open(path, "a", encoding="utf-8") as out:
            while not stop.wait(every_s):
                if engine.state.value in ("created", "starting"):
                    continue
                try:
                    snap = _stats_dict(engine)
                except Exception:  # read while the loop changes it: skip this one
                    continue
                out.write(json.dumps({"t": time.monotonic(), **snap}) + "\n")
                out.flush()
                if engine.state.value == "stopped":
                    return

    def start() -> None:
        if os.getpid() != parent or started.is_set():
            return  # the zygote forks too (its workers): it samples nothing
        started.set()
        threading.Thread(target=sample, name="bench-stats-sampler", daemon=True).start()

    os.register_at_fork(after_in_parent=start)


def write_stats(engine: Engine, path: str) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(_stats_dict(engine)))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--sqs-client", required=True, choices=("botocore", "fast"))
    p.add_argument(
        "--concurrency", type=int, default=0, help="QUEUE_CONCURRENT_WORKERS (0: default)"
    )
    p.add_argument("--stats-out", default="", help="engine.stats() as JSON, after run()")
    p.add_argument("--samples-out", default="", help="engine.stats() lines while it runs")
    args = p.parse_args(argv)
    config = bench_config(args.endpoint, args.queue_url).with_(
        worker_processes=args.workers, sqs_client=args.sqs_client
    )
    if args.concurrency:
        config = config.with_(concurrent_workers=args.concurrency)
    handler = make_handler(HandlerSpec.parse(args.handler), Recorder(args.records))
    engine = Engine(config, handler, serve_http=False)
    if args.samples_out:
        sample_after_fork(engine, args.samples_out)
    code = engine.run()
    if args.stats_out:
        with contextlib.suppress(OSError):
            write_stats(engine, args.stats_out)
    return code


if __name__ == "__main__":
    sys.exit(main())
