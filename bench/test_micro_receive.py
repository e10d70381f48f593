"""Parsing one ReceiveMessage response of 10 messages: the per-receive cost before any handler.

botocore parses the JSON and then walks its service model for every field; the fast data plane
(when present) decodes straight into msgspec Structs; orjson and stdlib json give the floor of
"just parse the JSON". Every variant returns the messages with their receipt handles.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from bench.workload import bodies, messages

MSGS = messages(10, "micro")


def response_body() -> bytes:
    """What SQS returns for a 10-message receive with attributes (JSON 1.0 protocol)."""
    out = []
    for i, (body, msg) in enumerate(zip(bodies(MSGS), MSGS, strict=True)):
        out.append(
            {
                "MessageId": f"00000000-0000-0000-0000-{i:012d}",
                "ReceiptHandle": base64.b64encode(f"handle-{i}".encode() * 12).decode(),
                "MD5OfBody": "0" * 32,
                "Body": body,
                "Attributes": {
                    "ApproximateReceiveCount": "1",
                    "ApproximateFirstReceiveTimestamp": "1767225600000",
                    "SentTimestamp": "1767225600000",
                },
                "MD5OfMessageAttributes": "0" * 32,
                "MessageAttributes": {
                    k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                    for k, v in msg.message_attributes().items()
                },
            }
        )
    return json.dumps({"Messages": out}).encode()


RAW = response_body()


def test_parse_botocore(benchmark: Any) -> None:
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("sqs")
    shape = model.operation_model("ReceiveMessage").output_shape
    parser = create_parser(model.metadata["protocol"])
    response = {"status_code": 200, "headers": {}, "body": RAW}
    benchmark.group = "parse a 10-message ReceiveMessage body"
    parsed = benchmark(parser.parse, response, shape)
    assert len(parsed["Messages"]) == 10


def test_parse_fastsqs_msgspec(benchmark: Any) -> None:
    fastsqs = pytest.importorskip("goraxfast.sqs.fast")
    benchmark.group = "parse a 10-message ReceiveMessage body"
    assert len(benchmark(fastsqs.decode_receive, RAW).Messages) == 10  # the client's own decoder


def test_parse_orjson(benchmark: Any) -> None:
    benchmark.group = "parse a 10-message ReceiveMessage body"
    assert len(benchmark(orjson.loads, RAW)["Messages"]) == 10


def test_parse_stdlib_json(benchmark: Any) -> None:
    benchmark.group = "parse a 10-message ReceiveMessage body"
    assert len(benchmark(json.loads, RAW)["Messages"]) == 10
