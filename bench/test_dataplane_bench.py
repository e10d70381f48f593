"""Client CPU per SQS call, fast vs botocore, against a canned local server that costs ~nothing.

    .venv/bin/pytest bench/test_dataplane_bench.py --benchmark-enable
    .venv/bin/python bench/test_dataplane_bench.py [calls]      # a table of us of CPU per call

The server is this file run with ``--serve PORT`` in its own process: uvloop plus httptools,
answering each ``X-Amz-Target`` with prepared bytes. The timer is this process's CPU time
(``time.process_time``), so the figures count only the client: encode, sign, HTTP, parse, and
the event loop around them. One benchmark round is ``CALLS`` sequential calls on one uvloop loop,
so pytest-benchmark's columns are per round: divide by ``CALLS`` (``extra_info`` has the
per-call median). moto is far too slow for this; correctness is proven on moto in
``tests/test_fastsqs.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from goraxfast.config import Config
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.fast import FastSQSClient
from goraxfast.sqs.httpclient import HTTPPool

CALLS = 50
QUEUE_URL = "http://127.0.0.1:1/000000000000/bench"
_BODY = json.dumps({"execution_id": "e" * 36, "tenant_id": "tenant-7", "trigger_data": "x" * 300})
RECEIVE = {
    "Messages": [
        {
            "MessageId": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd",
            "ReceiptHandle": "AQEB" + "r" * 176 + str(i),
            "MD5OfBody": "0" * 32,
            "Body": _BODY,
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1767225600000",
                "ApproximateFirstReceiveTimestamp": "1767225600100",
            },
            "MD5OfMessageAttributes": "1" * 32,
            "MessageAttributes": {"tenant_id": {"DataType": "String", "StringValue": "tenant-7"}},
        }
        for i in range(10)
    ]
}
DELETED = {"Successful": [{"Id": str(i)} for i in range(10)], "Failed": []}


def _answer(body: dict[str, Any]) -> bytes:
    raw = json.dumps(body).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        f"x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


ANSWERS = {
    b"AmazonSQS.ReceiveMessage": _answer(RECEIVE),
    b"AmazonSQS.DeleteMessageBatch": _answer(DELETED),
}


def serve(port: int) -> None:
    """The canned server (runs in a child process; leaves when its parent does)."""
    import httptools

    class Canned(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)
            self.target = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"x-amz-target":
                self.target = value

        def on_message_complete(self) -> None:
            self.transport.write(ANSWERS.get(self.target, ANSWERS[b"AmazonSQS.DeleteMessageBatch"]))

    async def main() -> None:
        parent = os.getppid()
        await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", port)
        while os.getppid() == parent:
            await asyncio.sleep(0.5)

    uvloop.run(main())


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("canned server did not start")


def bench_config(endpoint: str) -> Config:
    return Config(
        queue_url=QUEUE_URL,
        aws_endpoint=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


def make_client(kind: str, endpoint: str) -> SQSClient | FastSQSClient:
    config = bench_config(endpoint)
    return FastSQSClient(config) if kind == "fast" else SQSClient(config)


OPERATIONS: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "receive_10": lambda c: c.receive(10, 0, 30),
    "delete_batch_10": lambda c: c.delete_batch([(str(i), "AQEB" + "r" * 176) for i in range(10)]),
}


class Runner:
    """A uvloop loop with one started client; ``round()`` makes ``CALLS`` sequential calls."""

    def __init__(self, kind: str, endpoint: str, operation: str) -> None:
        self.loop = uvloop.new_event_loop()
        self.client = make_client(kind, endpoint)
        self.loop.run_until_complete(self.client.start())
        self.call = OPERATIONS[operation]
        self.round()  # connect and warm up outside the measurement

    def round(self) -> Any:
        async def calls() -> Any:
            for _ in range(CALLS):
                result = await self.call(self.client)
            return result

        return self.loop.run_until_complete(calls())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    proc, url = start_server()
    yield url
    proc.terminate()
    proc.wait()


@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("kind", ["botocore", "fast"])
def test_client_cpu_per_round_of_calls(
    benchmark: Any, endpoint: str, kind: str, operation: str
) -> None:
    runner = Runner(kind, endpoint, operation)
    try:
        result = benchmark(runner.round)
    finally:
        runner.close()
    assert len(result if isinstance(result, list) else result.successful) == 10
    if benchmark.stats:
        benchmark.extra_info["cpu_us_per_call"] = round(
            benchmark.stats.stats.median / CALLS * 1e6, 1
        )


@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("layer", ["aiohttp", "fasthttp"])
def test_http_layer_cpu_per_round_of_posts(benchmark: Any, endpoint: str, layer: str) -> None:
    """The HTTP layer alone (same request bytes, same answer): why fasthttp exists."""
    import aiohttp

    loop = uvloop.new_event_loop()
    headers = [
        ("X-Amz-Target", "AmazonSQS.DeleteMessageBatch"),
        ("Content-Type", "application/x-amz-json-1.0"),
    ]
    body = json.dumps(
        {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "0", "ReceiptHandle": "r" * 180}]}
    ).encode()

    async def make() -> Any:
        if layer == "aiohttp":
            return aiohttp.ClientSession()
        return HTTPPool(endpoint)

    session = loop.run_until_complete(make())

    async def one() -> bytes:
        if layer == "aiohttp":
            async with session.post(endpoint + "/", data=body, headers=headers) as resp:
                return bytes(await resp.read())
        answer: bytes = (await session.request("POST", "/", headers, body, timeout_s=30)).body
        return answer

    async def calls() -> bytes:
        for _ in range(CALLS):
            answer = await one()
        return answer

    try:
        loop.run_until_complete(calls())
        assert benchmark(lambda: loop.run_until_complete(calls())).startswith(b'{"Successful"')
    finally:
        loop.run_until_complete(session.close())
        loop.close()
    if benchmark.stats:
        benchmark.extra_info["cpu_us_per_call"] = round(
            benchmark.stats.stats.median / CALLS * 1e6, 1
        )


def table(rounds: int = 20) -> None:
    """us of client CPU per call (median and best of ``rounds`` rounds of ``CALLS`` calls)."""
    proc, url = start_server()
    try:
        print(f"client CPU per call, {rounds} rounds x {CALLS} calls, uvloop, canned server")
        for operation in sorted(OPERATIONS):
            for kind in ("botocore", "fast"):
                runner = Runner(kind, url, operation)
                samples = []
                for _ in range(rounds):
                    started = time.process_time()
                    runner.round()
                    samples.append((time.process_time() - started) / CALLS * 1e6)
                runner.close()
                median, best = statistics.median(samples), min(samples)
                print(f"  {operation:16s} {kind:9s} median {median:7.1f} us   best {best:7.1f} us")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
    else:
        table(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
