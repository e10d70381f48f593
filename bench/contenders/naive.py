"""Contender (b): the naive boto3 loop gorax's consumer was: receive 10, handle, delete each.

One process, one thread, one request at a time; each message is decoded with goraxfast's own
decoder so the per-message work matches the engine's.
"""

from __future__ import annotations

import signal
import sys

import boto3

from bench.contenders._args import parser
from bench.recorder import HandlerSpec, Recorder, do_work, seq_of
from bench.workload import ACCESS_KEY, SECRET_KEY
from goraxfast.core.message import decode_message


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "").parse_args(argv)
    spec = HandlerSpec.parse(args.handler)
    recorder = Recorder(args.records)
    sqs = boto3.client(
        "sqs",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        resp = sqs.receive_message(
            QueueUrl=args.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=20,
            MessageAttributeNames=["All"],
        )
        for m in resp.get("Messages", ()):
            msg = decode_message(m["Body"].encode())
            do_work(spec)
            recorder.record(seq_of(msg.execution_id))
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])


if __name__ == "__main__":
    sys.exit(main())
