"""Contender (c): a well-written single-process asyncio consumer on aiobotocore (uvloop).

Several receives in flight at once (default 8), each batch handled inline and deleted with one
``DeleteMessageBatch``: the strongest simple alternative to a framework. With ``--processes N``
it forks N independent copies (before any event loop exists), which is how such a consumer is
scaled in practice; the CPU-scaling run uses that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench.contenders._args import parser
from bench.recorder import HandlerSpec, Recorder, do_work, seq_of
from bench.workload import ACCESS_KEY, SECRET_KEY
from goraxfast.core.message import decode_message


async def consume(args: Any, spec: HandlerSpec, recorder: Recorder) -> None:
    session = get_session()
    config = AioConfig(max_pool_connections=args.in_flight + 2, read_timeout=30)
    async with session.create_client(
        "sqs",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    ) as sqs:

        async def handle(m: dict[str, Any]) -> None:
            msg = decode_message(m["Body"].encode())
            if spec.kind == "sleep":
                await asyncio.sleep(spec.ms / 1000.0)
            else:
                do_work(spec)
            recorder.record(seq_of(msg.execution_id))

        async def loop() -> None:
            while True:
                resp = await sqs.receive_message(
                    QueueUrl=args.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=20,
                    MessageAttributeNames=["All"],
                )
                msgs = resp.get("Messages") or []
                if not msgs:
                    continue
                if spec.kind == "sleep":
                    await asyncio.gather(*(handle(m) for m in msgs))
                else:
                    for m in msgs:
                        await handle(m)
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                ]
                await sqs.delete_message_batch(QueueUrl=args.queue_url, Entries=entries)

        await asyncio.gather(*(loop() for _ in range(args.in_flight)))


def run_one(args: Any) -> None:
    uvloop.run(consume(args, HandlerSpec.parse(args.handler), Recorder(args.records)))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--in-flight", type=int, default=8)
    args = p.parse_args(argv)
    if args.processes <= 1:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        run_one(args)
        return 0
    children = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                run_one(args)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        os.waitpid(child, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
