"""Contender (a): the goraxfast Engine, as a user runs it (``Engine.run()``, SIGTERM drains).

Config defaults except the endpoint, the worker count and the data plane, so the figures are
those a user gets without tuning. The handler is a plain ``def`` (an ``async def`` for
``sleep:MS``, so that sleeping handlers run concurrently as the engine intends).

``--sqs-client fast`` must measure the fast data plane even while the engine does not yet pick
it from ``Config.sqs_client`` itself: in that case it is handed to the engine through the
public ``data_plane=`` argument, opened lazily inside the engine's own event loop. The log line
``data plane: ...`` says which way was taken.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from typing import Any

from bench.contenders._args import parser
from bench.recorder import HandlerSpec, Recorder, do_work, seq_of
from bench.workload import bench_config
from goraxfast.core.message import ExecutionMessage
from goraxfast.engine import Engine


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


class LazyDataPlane:
    """Opens ``open_data_plane(config)`` on first use, inside the loop that will use it."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._dp: Any = None
        self._lock: asyncio.Lock | None = None

    async def _get(self) -> Any:
        if self._dp is None:
            from goraxfast.dataplane import open_data_plane

            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._dp is None:
                    self._dp = await open_data_plane(self._config)
                    print(f"data plane: {type(self._dp).__name__} (via data_plane=)", flush=True)
        return self._dp

    async def receive(self, *args: Any) -> Any:
        return await (await self._get()).receive(*args)

    async def delete_batch(self, *args: Any) -> Any:
        return await (await self._get()).delete_batch(*args)

    async def change_visibility_batch(self, *args: Any) -> Any:
        return await (await self._get()).change_visibility_batch(*args)

    async def send_batch(self, *args: Any) -> Any:
        return await (await self._get()).send_batch(*args)


def engine_reads_sqs_client() -> bool:
    """True once the engine opens its data plane from ``Config.sqs_client`` on its own."""
    import goraxfast.engine

    return "open_data_plane" in inspect.getsource(goraxfast.engine)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--sqs-client", default="botocore", choices=("botocore", "fast"))
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
    data_plane = None
    if args.sqs_client == "fast" and not engine_reads_sqs_client():
        data_plane = LazyDataPlane(config)
    else:
        print(f"data plane: chosen by the engine from sqs_client={args.sqs_client}", flush=True)
    return Engine(config, handler, serve_http=False, data_plane=data_plane).run()


if __name__ == "__main__":
    sys.exit(main())
