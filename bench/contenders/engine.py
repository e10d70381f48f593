"""Contender (a): the goraxfast Engine, as a user runs it (``Engine.run()``, SIGTERM drains).

Config defaults except the endpoint, the worker count and the data plane, so the figures are
those a user gets without tuning. The handler is a plain ``def`` (an ``async def`` for
``sleep:MS``, so that sleeping handlers run concurrently as the engine intends).
``--sqs-client`` is always passed explicitly, so a change of the Config default never changes
what a contender measures.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench.contenders._args import parser
from bench.recorder import HandlerSpec, Recorder, do_work, seq_of
from bench.workload import bench_config
from goraxfast.core.message import ExecutionMessage
from goraxfast.engine.engine import Engine


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


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--sqs-client", required=True, choices=("botocore", "fast"))
    p.add_argument(
        "--concurrency", type=int, default=0, help="QUEUE_CONCURRENT_WORKERS (0: default)"
    )
    args = p.parse_args(argv)
    config = bench_config(args.endpoint, args.queue_url).with_(
        worker_processes=args.workers, sqs_client=args.sqs_client
    )
    if args.concurrency:
        config = config.with_(concurrent_workers=args.concurrency)
    handler = make_handler(HandlerSpec.parse(args.handler), Recorder(args.records))
    return Engine(config, handler, serve_http=False).run()


if __name__ == "__main__":
    sys.exit(main())
