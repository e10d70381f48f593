"""PublisherAdapter: every accepted and refused shape, and a round trip through moto."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from goraxfast.config import Config
from goraxfast.core.message import decode_message
from goraxfast.errors import MessageDecodeError, MessageError, ValidationError
from goraxfast.publish.adapter import PublisherAdapter, build_message
from goraxfast.publish.publisher import Publisher
from goraxfast.sqs.botocore import SQSClient

NOW = datetime(2025, 12, 18, 10, 0, 0, 123456, tzinfo=UTC)
BASE: dict[str, Any] = {
    "execution_id": "exec-1",
    "tenant_id": "tenant-1",
    "workflow_id": "workflow-1",
    "workflow_version": 3,
    "trigger_type": "webhook",
}


class NumpyLikeInt:
    """What numpy integers look like to us: not an int, but integral through __index__."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def build(**changes: Any) -> Any:
    data = {**BASE, **changes}
    return build_message({k: v for k, v in data.items() if v is not _DROP}, now=NOW)


_DROP = object()


@pytest.mark.parametrize(
    ("given", "raw"),
    [
        (b'{"a": 1}', b'{"a": 1}'),  # raw bytes kept byte for byte, spaces included
        (bytearray(b"[1,2]"), b"[1,2]"),
        (memoryview(b'"s"'), b'"s"'),
        ('{"k":"é"}', '{"k":"é"}'.encode()),  # str is JSON text
        ("42", b"42"),
        ({"a": [1, None, True]}, b'{"a":[1,null,true]}'),  # other values are encoded
        ([1, "two"], b'[1,"two"]'),
        (7, b"7"),
        (2.5, b"2.5"),
        (False, b"false"),
        ("", b""),  # empty raw input: no trigger data
        (b"", b""),
        (None, b""),  # None: no trigger data, as Go omits a nil RawMessage
        (_DROP, b""),
    ],
)
def test_trigger_data_shapes(given: Any, raw: bytes) -> None:
    msg = build(trigger_data=given)
    assert bytes(msg.trigger_data) == raw


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("hello", "given as str must be a JSON document"),
        (b"{bad", "given as bytes must be a JSON document"),
        (b'"\xff"', "given as bytes must be a JSON document"),
        (bytearray(b"1 2"), "given as bytearray"),
        (object(), "of type object cannot be encoded as JSON"),
        ({1j: 1}, "of type dict cannot be encoded"),
    ],
)
def test_trigger_data_refused(given: Any, words: str) -> None:
    with pytest.raises(MessageDecodeError, match=f"`trigger_data` {words}"):
        build(trigger_data=given)


def test_raw_trigger_data_as_deep_as_go_allows_is_accepted() -> None:
    raw = b"[" * 9_999 + b"]" * 9_999  # 10,000 levels with the message object

    assert bytes(build(trigger_data=raw).trigger_data) == raw


def test_raw_trigger_data_deeper_than_go_allows_is_refused() -> None:
    with pytest.raises(MessageDecodeError, match="deeper than 10000 levels"):
        build(trigger_data=b"[" * 10_000 + b"]" * 10_000)


def test_blanks_around_raw_trigger_data_are_dropped() -> None:
    assert bytes(build(trigger_data=b' \n {"a": 1} \t').trigger_data) == b'{"a": 1}'


def _cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deep_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "given", [_cyclic(), _deep_dict(5_000)], ids=["holding itself", "5,000 levels"]
)
def test_trigger_data_python_cannot_encode_is_refused_by_name(given: Any) -> None:
    with pytest.raises(MessageDecodeError, match=r"`trigger_data` of type .* cannot be encoded"):
        build(trigger_data=given)


@pytest.mark.parametrize("given", [1, 7, 2**40, NumpyLikeInt(5)])
def test_workflow_version_accepts_integral_values(given: Any) -> None:
    assert build(workflow_version=given).workflow_version == int(given.__index__())


@pytest.mark.parametrize(
    ("given", "kind"),
    [("3", "str"), (3.0, "float"), (True, "bool"), (b"3", "bytes"), ([3], "list"), ({}, "dict")],
)
def test_workflow_version_refuses_non_integers(given: Any, kind: str) -> None:
    with pytest.raises(
        MessageDecodeError, match=f"`workflow_version` must be an integer, got {kind}"
    ):
        build(workflow_version=given)


def test_workflow_version_must_fit_go_int() -> None:
    assert build(workflow_version=2**63 - 1).workflow_version == 2**63 - 1
    with pytest.raises(MessageDecodeError, match=r"`workflow_version` .* 64-bit"):
        build(workflow_version=2**63)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("tenant_id", "tenant_id is required"),
        ("workflow_id", "workflow_id is required"),
        ("workflow_version", "workflow_version must be greater than 0"),
        ("trigger_type", "trigger_type is required"),
    ],
)
def test_missing_fields_give_gorax_texts(field: str, text: str) -> None:
    with pytest.raises(ValidationError, match=text):
        build(**{field: _DROP})
    with pytest.raises(ValidationError, match=text):
        build(**{field: None})


@pytest.mark.parametrize(
    "field", ["execution_id", "tenant_id", "workflow_id", "trigger_type", "correlation_id"]
)
@pytest.mark.parametrize("given", [1, b"x", ["x"]])
def test_string_fields_refuse_other_types(field: str, given: Any) -> None:
    with pytest.raises(
        MessageDecodeError, match=f"`{field}` must be a string, got {type(given).__name__}"
    ):
        build(**{field: given})


def test_ids_defaults_and_propagation() -> None:
    generated = build(execution_id=_DROP)
    assert uuid.UUID(generated.execution_id).version == 4
    assert build(execution_id=None).execution_id != generated.execution_id
    with pytest.raises(ValidationError, match="execution_id is required"):
        build(execution_id="")
    msg = build(correlation_id="corr-9", unknown_key="ignored")
    assert (
        msg.correlation_id == "corr-9"
        and msg.message_attributes()["correlation_id"]["StringValue"] == "corr-9"
    )
    assert build().correlation_id == "" and msg.enqueued_at == NOW and msg.retry_count == 0


@pytest.mark.parametrize("data", [None, [("tenant_id", "t")], "tenant_id=t", 3])
def test_non_mappings_are_refused(data: Any) -> None:
    with pytest.raises(MessageDecodeError, match="must be a mapping"):
        build_message(data)


def test_every_error_is_a_message_error_not_a_key_or_type_error() -> None:
    for data in ({}, {"workflow_version": "x"}, {"trigger_data": {1, 2}}, {"tenant_id": 5}):
        with pytest.raises(MessageError):
            build_message(data)


async def test_round_trip_through_the_server(config: Config) -> None:
    items: list[Mapping[str, Any]] = [
        {
            **BASE,
            "execution_id": "raw",
            "trigger_data": b'{"order": 17, "items": ["a"]}',
            "correlation_id": "c-1",
        },
        {**BASE, "execution_id": "text", "trigger_data": "[1, 2.5, null]"},
        {
            **BASE,
            "execution_id": "obj",
            "trigger_data": {"nested": {"ok": True}},
            "workflow_version": NumpyLikeInt(9),
        },
        {**BASE, "execution_id": "none"},
    ]
    async with SQSClient(config) as client:
        adapter = PublisherAdapter(Publisher(client))
        message_id = await adapter.publish(items[0])
        result = await adapter.publish_many(items[1:])
        assert result.published_ids == ("text", "obj", "none")
        got: dict[str, Any] = {}
        while len(got) < 4:
            for m in await client.receive(10, 1, 30):
                got[decode_message(m.body).execution_id] = (m, decode_message(m.body))
    raw_msg, decoded = got["raw"]
    assert raw_msg.message_id == message_id
    assert bytes(decoded.trigger_data) == b'{"order": 17, "items": ["a"]}'
    assert decoded.correlation_id == "c-1"
    assert raw_msg.message_attributes["correlation_id"]["StringValue"] == "c-1"
    assert got["text"][1].trigger_json() == [1, 2.5, None]
    assert got["obj"][1].trigger_json() == {"nested": {"ok": True}}
    assert got["obj"][1].workflow_version == 9
    assert got["none"][1].trigger_json() is None and b"trigger_data" not in got["none"][0].body
    for key, (_, msg) in got.items():
        expected = build_message(
            next(i for i in items if i["execution_id"] == key), now=msg.enqueued_at
        )
        assert msg == expected


async def test_publish_many_builds_everything_before_sending(config: Config) -> None:
    async with SQSClient(config) as client:
        adapter = PublisherAdapter(Publisher(client))
        with pytest.raises(MessageDecodeError, match=r"item 1: `tenant_id` must be a string"):
            await adapter.publish_many([BASE, {**BASE, "tenant_id": 3}])
        with pytest.raises(ValidationError, match=r"item 2: trigger_type is required"):
            await adapter.publish_many([BASE, BASE, {**BASE, "trigger_type": ""}])
        assert (await client.queue_attributes()).total == 0
