"""Contender (e): the server ceiling, the least client work that receives and deletes.

Raw JSON 1.0 requests over aiohttp keep-alive connections, parsed with orjson, no SDK, no
request signing (the local servers do not check signatures; real AWS would refuse these), no
message decoding: receive 10, record, delete them in one batch, with several receives in
flight. What this reaches is what the server allows a single light client; compare its client
CPU with the server's CPU in the report to see which side was the limit.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.contenders._args import parser
from bench.recorder import Recorder

_AUTH = (
    "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0"
)
_ID_KEY = '"execution_id":"'


def _headers(target: str) -> dict[str, str]:
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"AmazonSQS.{target}",
        "X-Amz-Date": "20260101T000000Z",
        "Authorization": _AUTH,
    }


def seq_in_body(body: str) -> int:
    """The message number, found without decoding the JSON (ids end with ``-<seq>``)."""
    start = body.index(_ID_KEY) + len(_ID_KEY)
    end = body.index('"', start)
    return int(body[start:end].rsplit("-", 1)[1])


async def consume(args: Any) -> None:
    recorder = Recorder(args.records)
    url = args.endpoint.rstrip("/") + "/"
    receive = orjson.dumps(
        {"QueueUrl": args.queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 20}
    )
    receive_headers, delete_headers = _headers("ReceiveMessage"), _headers("DeleteMessageBatch")
    connector = aiohttp.TCPConnector(limit=args.in_flight + 2)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def loop() -> None:
            while True:
                async with http.post(url, data=receive, headers=receive_headers) as resp:
                    doc = orjson.loads(await resp.read())
                    if resp.status != 200:
                        raise RuntimeError(f"ReceiveMessage: HTTP {resp.status}: {doc}")
                msgs = doc.get("Messages") or []
                if not msgs:
                    continue
                for m in msgs:
                    recorder.record(seq_in_body(m["Body"]))
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                ]
                body = orjson.dumps({"QueueUrl": args.queue_url, "Entries": entries})
                async with http.post(url, data=body, headers=delete_headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"DeleteMessageBatch: HTTP {resp.status}")

        await asyncio.gather(*(loop() for _ in range(args.in_flight)))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--in-flight", type=int, default=8)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvloop.run(consume(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
