"""Message encode/decode: msgspec (what goraxfast uses) against the usual alternatives.

Every decoder does the same job: bytes in, a typed message out, with gorax's required-field
rules checked, so the figures compare like with like. Run alone with
``.venv/bin/pytest bench/test_micro_codec.py --benchmark-enable``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from bench.workload import message
from goraxfast.core.message import (
    ExecutionMessage,
    decode_message,
    decode_trusted_message,
    encode_message,
)

MSG = message(42, "micro")
BODY = encode_message(MSG)
#: The same message as gorax's Go code writes it: time.Now() has nanoseconds, so nine digits.
GO_BODY = BODY.replace(b'"2026-01-01T00:00:00Z"', b'"2026-01-01T00:00:00.123456789Z"')
REQUIRED_STR = ("execution_id", "tenant_id", "workflow_id", "trigger_type")


@dataclass(slots=True)
class PlainMessage:
    """What a hand-written decoder builds: a slotted dataclass from a validated dict."""

    execution_id: str
    tenant_id: str
    workflow_id: str
    workflow_version: int
    trigger_type: str
    trigger_data: Any
    enqueued_at: str
    retry_count: int
    correlation_id: str


def validate_dict(doc: Any) -> PlainMessage:
    """Manual validation as a careful author writes it: types, required keys, the version rule."""
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    for key in REQUIRED_STR:
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f"{key} is required")
    version = doc.get("workflow_version")
    if not isinstance(version, int) or isinstance(version, bool) or version <= 0:
        raise ValueError("workflow_version must be greater than 0")
    retry = doc.get("retry_count", 0)
    if not isinstance(retry, int):
        raise ValueError("retry_count must be an integer")
    return PlainMessage(
        doc["execution_id"],
        doc["tenant_id"],
        doc["workflow_id"],
        version,
        doc["trigger_type"],
        doc.get("trigger_data"),
        str(doc.get("enqueued_at", "")),
        retry,
        str(doc.get("correlation_id", "")),
    )


def test_decode_msgspec(benchmark: Any) -> None:
    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(decode_message, BODY).execution_id == MSG.execution_id


def test_decode_msgspec_go_nanoseconds(benchmark: Any) -> None:
    """gorax's own bodies: ``enqueued_at`` with nine digits, kept to the nanosecond."""
    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(decode_message, GO_BODY).execution_id == MSG.execution_id


def test_decode_trusted_go_nanoseconds(benchmark: Any) -> None:
    """What a worker process pays per message (the parent has already checked the body)."""
    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(decode_trusted_message, GO_BODY).execution_id == MSG.execution_id


def test_decode_orjson_manual(benchmark: Any) -> None:
    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(lambda: validate_dict(orjson.loads(BODY))).execution_id == MSG.execution_id


def test_decode_stdlib_json_manual(benchmark: Any) -> None:
    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(lambda: validate_dict(json.loads(BODY))).execution_id == MSG.execution_id


def test_decode_pydantic(benchmark: Any) -> None:
    pytest.importorskip("pydantic")
    from pydantic import BaseModel, Field

    class Model(BaseModel):
        execution_id: str = Field(min_length=1)
        tenant_id: str = Field(min_length=1)
        workflow_id: str = Field(min_length=1)
        workflow_version: int = Field(gt=0)
        trigger_type: str = Field(min_length=1)
        trigger_data: Any = None
        enqueued_at: str = ""
        retry_count: int = 0
        correlation_id: str = ""

    benchmark.group = "decode one ExecutionMessage"
    assert benchmark(Model.model_validate_json, BODY).execution_id == MSG.execution_id


def test_encode_msgspec(benchmark: Any) -> None:
    benchmark.group = "encode one ExecutionMessage"
    assert benchmark(encode_message, MSG) == BODY


def test_encode_orjson(benchmark: Any) -> None:
    doc = orjson.loads(BODY)
    benchmark.group = "encode one ExecutionMessage"
    assert orjson.loads(benchmark(orjson.dumps, doc)) == doc


def test_encode_stdlib_json(benchmark: Any) -> None:
    doc = json.loads(BODY)
    benchmark.group = "encode one ExecutionMessage"
    assert json.loads(benchmark(json.dumps, doc, separators=(",", ":"))) == doc


def test_messages_round_trip_equal() -> None:
    """The bench message is a valid gorax message (not measured; guards the fixtures)."""
    assert isinstance(decode_message(BODY), ExecutionMessage)
    assert validate_dict(orjson.loads(BODY)).execution_id == MSG.execution_id
