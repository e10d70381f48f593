"""ExecutionMessage, the JSON body of every SQS message: the wire contract with gorax.

Each test is one rule of the contract. Go's ``encoding/json`` is the reference for everything the
spec leaves implicit (``omitempty``, ``json.RawMessage``, ``time.Time`` as RFC3339Nano).
"""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from goraxfast.core.message import (
    ExecutionMessage,
    UTCTimestamp,
    decode_message,
    decode_trusted_message,
    encode_message,
    validation_problem,
)
from goraxfast.errors import (
    GoraxfastError,
    MessageDecodeError,
    MessageError,
    ValidationError,
)

#: A body gorax's Go service produced, verbatim.
GO_EXAMPLE = (
    b'{"execution_id":"exec-1","tenant_id":"tenant-1","workflow_id":"workflow-1",'
    b'"workflow_version":1,"trigger_type":"webhook","enqueued_at":"2025-12-18T10:00:00.123456789Z"}'
)

#: What Go's json.Marshal writes for a message with every field set (microsecond timestamp, so
#: nothing is lost to Python's precision): field order of the Go struct, compact raw JSON.
GO_FULL = (
    b'{"execution_id":"exec-2","tenant_id":"tenant-2","workflow_id":"workflow-2",'
    b'"workflow_version":7,"trigger_type":"schedule","trigger_data":{"cron":"* * * * *","n":[1,2]},'
    b'"enqueued_at":"2025-12-18T10:00:00.1234Z","retry_count":2,"correlation_id":"corr-9"}'
)

#: Every string field the Go struct declares, in its order.
STRING_FIELDS = ("execution_id", "tenant_id", "workflow_id", "trigger_type", "correlation_id")


def valid(**changes: Any) -> ExecutionMessage:
    """A message that passes validation, with some fields changed."""
    fields: dict[str, Any] = {
        "execution_id": "exec-1",
        "tenant_id": "tenant-1",
        "workflow_id": "workflow-1",
        "workflow_version": 1,
        "trigger_type": "webhook",
        "enqueued_at": datetime(2025, 12, 18, 10, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return ExecutionMessage(**fields)


def body(**changes: Any) -> bytes:
    """The JSON body of a valid message, with keys changed (``None`` removes a key)."""
    obj: dict[str, Any] = {
        "execution_id": "exec-1",
        "tenant_id": "tenant-1",
        "workflow_id": "workflow-1",
        "workflow_version": 1,
        "trigger_type": "webhook",
        "enqueued_at": "2025-12-18T10:00:00Z",
    }
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


def keys_of(encoded: bytes) -> list[str]:
    return list(json.loads(encoded))


# --- the Go-produced example ---------------------------------------------------------------------


def test_go_example_decodes_every_field() -> None:
    msg = decode_message(GO_EXAMPLE)

    assert msg.execution_id == "exec-1"
    assert msg.tenant_id == "tenant-1"
    assert msg.workflow_id == "workflow-1"
    assert msg.workflow_version == 1
    assert msg.trigger_type == "webhook"
    assert bytes(msg.trigger_data) == b""
    assert msg.retry_count == 0
    assert msg.correlation_id == ""


def test_go_example_keeps_enqueued_at_to_the_nanosecond() -> None:
    msg = decode_message(GO_EXAMPLE)

    assert isinstance(msg.enqueued_at, UTCTimestamp)
    assert msg.enqueued_at.utcoffset() == timedelta(0)
    assert msg.enqueued_at.microsecond == 123456  # truncated, never rounded into the next one
    assert msg.enqueued_at.nanosecond == 123_456_789
    assert msg.enqueued_at_ns == 1_766_052_000_123_456_789


def test_go_example_reencodes_byte_for_byte() -> None:
    assert encode_message(decode_message(GO_EXAMPLE)) == GO_EXAMPLE


def test_go_message_with_every_field_reencodes_byte_for_byte() -> None:
    assert encode_message(decode_message(GO_FULL)) == GO_FULL


def test_go_message_with_every_field_decodes_every_field() -> None:
    msg = decode_message(GO_FULL)

    assert (msg.execution_id, msg.tenant_id, msg.workflow_id) == (
        "exec-2",
        "tenant-2",
        "workflow-2",
    )
    assert (msg.workflow_version, msg.trigger_type) == (7, "schedule")
    assert bytes(msg.trigger_data) == b'{"cron":"* * * * *","n":[1,2]}'
    assert msg.trigger_json() == {"cron": "* * * * *", "n": [1, 2]}
    assert msg.enqueued_at == datetime(2025, 12, 18, 10, 0, 0, 123400, tzinfo=UTC)
    assert (msg.retry_count, msg.correlation_id) == (2, "corr-9")


# --- validation: gorax's rules, texts and order --------------------------------------------------

#: (what breaks the rule, gorax's exact text), in gorax's order of checks.
RULES: list[tuple[dict[str, Any], str]] = [
    ({"execution_id": ""}, "execution_id is required"),
    ({"tenant_id": ""}, "tenant_id is required"),
    ({"workflow_id": ""}, "workflow_id is required"),
    ({"workflow_version": 0}, "workflow_version must be greater than 0"),
    ({"trigger_type": ""}, "trigger_type is required"),
]


def test_a_message_with_every_required_field_is_valid() -> None:
    msg = valid()

    assert validation_problem(msg) is None
    msg.validate()  # does not raise


@pytest.mark.parametrize(("breakage", "text"), RULES, ids=[text for _, text in RULES])
def test_each_rule_is_reported_with_gorax_text(breakage: dict[str, Any], text: str) -> None:
    msg = valid(**breakage)

    assert validation_problem(msg) == text
    with pytest.raises(ValidationError) as info:
        msg.validate()
    assert str(info.value) == text


@pytest.mark.parametrize("version", [0, -1, -(2**31)])
def test_workflow_version_must_be_greater_than_zero(version: int) -> None:
    assert validation_problem(valid(workflow_version=version)) == (
        "workflow_version must be greater than 0"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.combinations(RULES, 2)),
    ids=[f"{a[1]} before {b[1]}" for a, b in itertools.combinations(RULES, 2)],
)
def test_a_message_breaking_two_rules_reports_the_first_in_gorax_order(
    first: tuple[dict[str, Any], str], second: tuple[dict[str, Any], str]
) -> None:
    msg = valid(**first[0], **second[0])

    assert validation_problem(msg) == first[1]


def test_an_empty_object_reports_execution_id_first() -> None:
    with pytest.raises(ValidationError, match=r"^execution_id is required$"):
        decode_message(b"{}")


@pytest.mark.parametrize(("breakage", "text"), RULES, ids=[text for _, text in RULES])
def test_decode_validates_by_default(breakage: dict[str, Any], text: str) -> None:
    raw = body(**{k: v if v != "" else None for k, v in breakage.items()})

    with pytest.raises(ValidationError) as info:
        decode_message(raw)
    assert str(info.value) == text


@pytest.mark.parametrize(("breakage", "text"), RULES, ids=[text for _, text in RULES])
def test_decode_without_validation_returns_the_invalid_message(
    breakage: dict[str, Any], text: str
) -> None:
    msg = decode_message(
        body(**{k: v if v != "" else None for k, v in breakage.items()}), validate=False
    )

    assert validation_problem(msg) == text


def test_a_present_but_empty_required_string_is_reported_like_a_missing_one() -> None:
    with pytest.raises(ValidationError, match=r"^tenant_id is required$"):
        decode_message(body(tenant_id=""))


def test_message_errors_are_one_family() -> None:
    assert issubclass(ValidationError, MessageError)
    assert issubclass(MessageDecodeError, MessageError)
    assert issubclass(MessageError, GoraxfastError)
    assert issubclass(MessageError, ValueError)


# --- omission rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key", "written"),
    [
        ({}, "trigger_data", False),
        ({"trigger_data": msgspec.Raw(b'{"a":1}')}, "trigger_data", True),
        ({}, "retry_count", False),
        ({"retry_count": 0}, "retry_count", False),
        ({"retry_count": 1}, "retry_count", True),
        ({}, "correlation_id", False),
        ({"correlation_id": ""}, "correlation_id", False),
        ({"correlation_id": "c-1"}, "correlation_id", True),
        ({}, "enqueued_at", True),
    ],
    ids=[
        "trigger_data omitted when empty",
        "trigger_data written when set",
        "retry_count omitted by default",
        "retry_count omitted when 0",
        "retry_count written when set",
        "correlation_id omitted by default",
        "correlation_id omitted when empty",
        "correlation_id written when set",
        "enqueued_at always written",
    ],
)
def test_omission_rules(changes: dict[str, Any], key: str, written: bool) -> None:
    assert (key in keys_of(encode_message(valid(**changes)))) is written


def test_required_fields_are_always_written_even_when_empty() -> None:
    encoded = json.loads(encode_message(ExecutionMessage()))

    assert encoded == {
        "execution_id": "",
        "tenant_id": "",
        "workflow_id": "",
        "workflow_version": 0,
        "trigger_type": "",
        "enqueued_at": "0001-01-01T00:00:00Z",  # Go's zero time.Time
    }


def test_keys_are_written_in_the_go_struct_order() -> None:
    msg = valid(trigger_data=msgspec.Raw(b"{}"), retry_count=1, correlation_id="c")

    assert keys_of(encode_message(msg)) == [
        "execution_id",
        "tenant_id",
        "workflow_id",
        "workflow_version",
        "trigger_type",
        "trigger_data",
        "enqueued_at",
        "retry_count",
        "correlation_id",
    ]


@pytest.mark.parametrize("blank", [b"", b"  \n"], ids=["empty", "blanks"])
def test_an_empty_raw_trigger_data_assigned_after_construction_is_omitted(blank: bytes) -> None:
    msg = valid()
    msg.trigger_data = msgspec.Raw(blank)

    assert "trigger_data" not in json.loads(encode_message(msg))


@pytest.mark.parametrize("how", ["new() without trigger_data", "new(trigger_data=b'')", "Raw(b'')"])
def test_empty_trigger_data_is_omitted_however_the_message_was_built(how: str) -> None:
    common: dict[str, Any] = {
        "tenant_id": "t",
        "workflow_id": "w",
        "workflow_version": 1,
        "trigger_type": "manual",
    }
    if how == "new() without trigger_data":
        msg = ExecutionMessage.new(**common)
    elif how == "new(trigger_data=b'')":
        msg = ExecutionMessage.new(**common, trigger_data=b"")
    else:
        msg = ExecutionMessage(execution_id="e", trigger_data=msgspec.Raw(b""), **common)

    encoded = encode_message(msg)

    assert "trigger_data" not in json.loads(encoded)


# --- enqueued_at: RFC 3339, UTC, Z, Go's trimming ------------------------------------------------


@pytest.mark.parametrize(
    ("when", "written"),
    [
        (datetime(2025, 12, 18, 10, 0, 0, tzinfo=UTC), "2025-12-18T10:00:00Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 500000, tzinfo=UTC), "2025-12-18T10:00:00.5Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 120000, tzinfo=UTC), "2025-12-18T10:00:00.12Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 123400, tzinfo=UTC), "2025-12-18T10:00:00.1234Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 123456, tzinfo=UTC), "2025-12-18T10:00:00.123456Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 1, tzinfo=UTC), "2025-12-18T10:00:00.000001Z"),
        (datetime(2025, 12, 18, 10, 0, 0, 10, tzinfo=UTC), "2025-12-18T10:00:00.00001Z"),
        (datetime(9, 2, 3, 4, 5, 6, tzinfo=UTC), "0009-02-03T04:05:06Z"),
    ],
    ids=[
        "no fraction when zero",
        "one digit",
        "two digits",
        "four digits",
        "six digits",
        "leading zeros kept",
        "trailing zeros trimmed",
        "year padded",
    ],
)
def test_enqueued_at_is_written_in_utc_with_z_and_trailing_zeros_trimmed(
    when: datetime, written: str
) -> None:
    assert json.loads(encode_message(valid(enqueued_at=when)))["enqueued_at"] == written


@pytest.mark.parametrize(
    ("when", "written"),
    [
        (
            datetime(2025, 12, 18, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            "2025-12-18T10:00:00Z",
        ),
        (
            datetime(
                2025, 12, 18, 4, 30, 0, 250000, tzinfo=timezone(timedelta(hours=-5, minutes=-30))
            ),
            "2025-12-18T10:00:00.25Z",
        ),
        (
            datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=14))),
            "2025-12-31T11:00:00Z",
        ),
    ],
    ids=["east of UTC", "west of UTC, half hour", "across a year boundary"],
)
def test_enqueued_at_with_an_offset_is_normalised_to_utc(when: datetime, written: str) -> None:
    msg = valid(enqueued_at=when)

    assert msg.enqueued_at.utcoffset() == timedelta(0)
    assert msg.enqueued_at == when  # the same instant
    assert json.loads(encode_message(msg))["enqueued_at"] == written


def test_naive_enqueued_at_is_taken_as_utc() -> None:
    msg = valid(enqueued_at=datetime(2025, 12, 18, 10, 0, 0, 5000))

    assert msg.enqueued_at == datetime(2025, 12, 18, 10, 0, 0, 5000, tzinfo=UTC)
    assert json.loads(encode_message(msg))["enqueued_at"] == "2025-12-18T10:00:00.005Z"


@pytest.mark.parametrize(
    ("received", "instant", "written"),
    [
        (
            "2025-12-18T12:00:00+02:00",
            datetime(2025, 12, 18, 10, 0, tzinfo=UTC),
            "2025-12-18T10:00:00Z",
        ),
        (
            "2025-12-18T08:30:00.5-01:30",
            datetime(2025, 12, 18, 10, 0, 0, 500000, tzinfo=UTC),
            "2025-12-18T10:00:00.5Z",
        ),
        (
            "2025-12-18T10:00:00.120+00:00",
            datetime(2025, 12, 18, 10, 0, 0, 120000, tzinfo=UTC),
            "2025-12-18T10:00:00.12Z",
        ),
    ],
    ids=["east of UTC", "west of UTC, half hour", "explicit +00:00"],
)
def test_decoded_enqueued_at_with_an_offset_is_normalised_to_utc(
    received: str, instant: datetime, written: str
) -> None:
    msg = decode_message(body(enqueued_at=received))

    assert msg.enqueued_at == instant
    assert msg.enqueued_at.utcoffset() == timedelta(0)
    assert json.loads(encode_message(msg))["enqueued_at"] == written


def test_a_decoded_enqueued_at_without_an_offset_is_refused_as_go_refuses_it() -> None:
    with pytest.raises(MessageDecodeError, match="enqueued_at"):
        decode_message(body(enqueued_at="2025-12-18T10:00:00"))


def test_missing_enqueued_at_decodes_as_go_zero_time() -> None:
    msg = decode_message(body(enqueued_at=None))

    assert msg.enqueued_at == datetime(1, 1, 1, tzinfo=UTC)
    assert json.loads(encode_message(msg))["enqueued_at"] == "0001-01-01T00:00:00Z"


def test_utc_timestamp_of_keeps_the_instant() -> None:
    stamp = UTCTimestamp.of(datetime(2025, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))))

    assert stamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert stamp.rfc3339() == "2025-01-01T00:00:00Z"


# --- UTCTimestamp: a datetime to the nanosecond ---------------------------------------------------

NS = 1_766_052_000_123_456_789  # 2025-12-18T10:00:00.123456789Z


def test_utc_timestamp_from_unix_ns_keeps_every_nanosecond() -> None:
    stamp = UTCTimestamp.from_unix_ns(NS)

    assert stamp.unix_ns == NS
    assert (stamp.microsecond, stamp.nanosecond) == (123456, 123_456_789)
    assert stamp.rfc3339() == "2025-12-18T10:00:00.123456789Z"


def test_utc_timestamps_a_nanosecond_apart_are_unequal_and_ordered() -> None:
    early, late = UTCTimestamp.from_unix_ns(NS), UTCTimestamp.from_unix_ns(NS + 1)

    assert early != late
    assert early < late and late > early and early <= late and late >= early
    assert sorted([late, early]) == [early, late]


def test_a_utc_timestamp_equals_a_datetime_only_without_nanoseconds_below_the_microsecond() -> None:
    plain = datetime(2025, 12, 18, 10, 0, 0, 123456, tzinfo=UTC)

    assert UTCTimestamp.from_unix_ns(NS - 789) == plain
    assert UTCTimestamp.from_unix_ns(NS) != plain
    assert UTCTimestamp.from_unix_ns(NS) > plain


def test_a_utc_timestamp_keeps_its_nanoseconds_through_copy_and_pickle() -> None:
    stamp = UTCTimestamp.from_unix_ns(NS)

    assert copy.deepcopy(stamp).unix_ns == NS
    assert pickle.loads(pickle.dumps(stamp)).unix_ns == NS
    assert pickle.loads(pickle.dumps(decode_message(GO_EXAMPLE))) == decode_message(GO_EXAMPLE)


@pytest.mark.parametrize("ns", [-62_135_596_800 * 10**9 - 1, 253_402_300_800 * 10**9])
def test_a_utc_timestamp_outside_years_1_to_9999_is_a_value_error(ns: int) -> None:
    with pytest.raises(ValueError, match="outside years 1-9999"):
        UTCTimestamp.from_unix_ns(ns)


def test_enqueued_at_ns_can_be_set() -> None:
    msg = valid()

    msg.enqueued_at_ns = NS

    assert msg.enqueued_at_ns == NS
    assert json.loads(encode_message(msg))["enqueued_at"] == "2025-12-18T10:00:00.123456789Z"


@pytest.mark.parametrize(
    ("when", "written"),
    [
        (datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), "2025-01-01T10:00:00Z"),
        (datetime(2025, 1, 1, 10), "2025-01-01T10:00:00Z"),
        (datetime(2025, 1, 1, 10, 0, 0, 500000, tzinfo=UTC), "2025-01-01T10:00:00.5Z"),
    ],
    ids=["offset", "naive", "untrimmed"],
)
def test_enqueued_at_assigned_after_construction_is_still_written_utc_z_trimmed(
    when: datetime, written: str
) -> None:
    msg = valid()
    msg.enqueued_at = when

    assert json.loads(encode_message(msg))["enqueued_at"] == written


# --- trigger_data is raw -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"b":1,"a":2}',
        b'{ "b" : 1,\n\t"a" : [ 1 , 2 ] }',
        b'{"nested":{"deep":{"list":[{"x":null},true,false,1.50,-0,1e3]}}}',
        b'"just a string with \\u00e9scapes and \\"quotes\\""',
        b"[]",
        b"12345678901234567890123",
        b"0.10000000000000000001",
        b"null",
        b'"\xc3\xa9t\xc3\xa9"',
    ],
    ids=[
        "key order",
        "whitespace",
        "nested",
        "escaped string",
        "empty array",
        "big integer",
        "long decimal",
        "null",
        "utf-8 string",
    ],
)
def test_trigger_data_is_kept_byte_for_byte_through_decode_and_encode(raw: bytes) -> None:
    received = body().rstrip(b"}") + b', "trigger_data": ' + raw + b"}"

    msg = decode_message(received)

    assert bytes(msg.trigger_data) == raw
    assert b'"trigger_data":' + raw + b"," in encode_message(msg)


def test_trigger_data_null_is_kept_as_go_keeps_it() -> None:
    # Go's json.RawMessage receives the 4 bytes `null`, which are not empty, so it writes them.
    msg = decode_message(body(trigger_data=None).rstrip(b"}") + b', "trigger_data": null}')

    assert json.loads(encode_message(msg))["trigger_data"] is None
    assert msg.trigger_json() is None


def test_trigger_json_parses_the_raw_bytes_on_demand() -> None:
    msg = valid(trigger_data=msgspec.Raw(b'{"order": {"id": 7}}'))

    assert msg.trigger_json() == {"order": {"id": 7}}
    assert valid().trigger_json() is None


def test_trigger_json_builds_256_levels() -> None:
    msg = valid(trigger_data=msgspec.Raw(b"[" * 256 + b"]" * 256))

    assert msg.trigger_json() is not None


@pytest.mark.parametrize("depth", [257, 9_999])
def test_trigger_json_refuses_to_build_past_256_levels(depth: int) -> None:
    msg = valid(trigger_data=msgspec.Raw(b"[" * depth + b"]" * depth))

    with pytest.raises(MessageDecodeError, match="nested too deep"):
        msg.trigger_json()


def test_trigger_json_refuses_a_number_beyond_a_float() -> None:
    with pytest.raises(MessageDecodeError, match="trigger_data"):
        valid(trigger_data=msgspec.Raw(b"[1e999999]")).trigger_json()


def test_invalid_utf8_inside_trigger_data_is_a_decode_error_naming_it() -> None:
    received = body().rstrip(b"}") + b', "trigger_data": {"a": "\xff"}}'

    with pytest.raises(MessageDecodeError, match="trigger_data"):
        decode_message(received)


# --- decode errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workflow_version", 1.0),
        ("workflow_version", 1.5),
        ("workflow_version", "1"),
        ("workflow_version", True),
        ("workflow_version", [1]),
        ("tenant_id", 42),
        ("execution_id", {"id": "x"}),
        ("workflow_id", ["w"]),
        ("trigger_type", False),
        ("retry_count", "2"),
        ("retry_count", 1.0),
        ("correlation_id", 7),
        ("enqueued_at", 1734516000),
        ("enqueued_at", "yesterday"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_a_wrong_type_is_a_decode_error_naming_the_field(key: str, value: Any) -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode_message(body(**{key: value}))
    assert key in str(info.value)


@pytest.mark.parametrize("key", ["enqueued_at", "retry_count", "correlation_id"])
def test_a_json_null_for_an_optional_field_reads_as_not_set_as_in_go(key: str) -> None:
    received = body(**{key: None}).rstrip(b"}") + f', "{key}": null}}'.encode()

    assert decode_message(received) == decode_message(body(**{key: None}))


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("execution_id", "execution_id is required"),
        ("tenant_id", "tenant_id is required"),
        ("workflow_version", "workflow_version must be greater than 0"),
    ],
)
def test_a_json_null_for_a_required_field_fails_gorax_validation_as_in_go(
    key: str, text: str
) -> None:
    received = body(**{key: None}).rstrip(b"}") + f', "{key}": null}}'.encode()

    with pytest.raises(ValidationError, match=f"^{text}$"):
        decode_message(received)


def test_workflow_version_as_exponent_float_is_a_type_error() -> None:
    received = body(workflow_version=None).rstrip(b"}") + b', "workflow_version": 1e0}'

    with pytest.raises(MessageDecodeError, match="workflow_version"):
        decode_message(received)


@pytest.mark.parametrize(
    "received",
    [b"null", b"[]", b'[{"execution_id":"e"}]', b'"a string"', b"42", b"true"],
    ids=["null", "empty array", "array of object", "string", "number", "boolean"],
)
def test_a_body_that_is_not_an_object_is_a_decode_error(received: bytes) -> None:
    with pytest.raises(MessageDecodeError, match="object"):
        decode_message(received)


@pytest.mark.parametrize(
    "received",
    [b"", b"   ", b"{", b'{"execution_id": "e",}', b"not json", b'{"execution_id" "e"}', b"{}{}"],
    ids=[
        "empty",
        "blank",
        "truncated",
        "trailing comma",
        "not json",
        "missing colon",
        "two objects",
    ],
)
def test_malformed_json_is_a_decode_error(received: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode_message(received)


def test_decode_errors_chain_the_underlying_error() -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode_message(b"{")
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("key", STRING_FIELDS)
def test_invalid_utf8_in_a_string_field_is_a_decode_error_naming_the_field(key: str) -> None:
    received = body(**{key: None}).rstrip(b"}") + f', "{key}": "ok\xff"}}'.encode("latin-1")

    with pytest.raises(MessageDecodeError, match=key):
        decode_message(received, validate=False)


def test_an_encoded_surrogate_in_a_string_field_is_a_decode_error_naming_the_field() -> None:
    received = body(tenant_id=None).rstrip(b"}") + b', "tenant_id": "\xed\xa0\x80"}'

    with pytest.raises(MessageDecodeError, match="tenant_id"):
        decode_message(received)


def test_a_str_body_with_invalid_utf8_is_a_decode_error_naming_the_field() -> None:
    received = body(tenant_id="ok\udcff").decode("ascii").replace("\\udcff", "\udcff")

    with pytest.raises(MessageDecodeError, match="tenant_id"):
        decode_message(received)


@pytest.mark.parametrize("key", ["workflow_version", "retry_count"])
def test_an_integer_beyond_go_int64_is_a_decode_error_naming_the_field(key: str) -> None:
    with pytest.raises(MessageDecodeError, match=key):
        decode_message(body(**{key: 2**63}))


def test_a_str_body_decodes_like_bytes() -> None:
    assert decode_message(GO_EXAMPLE.decode()) == decode_message(GO_EXAMPLE)


def test_unicode_in_string_fields_is_decoded() -> None:
    msg = decode_message(body(tenant_id="téñant-😀", correlation_id="関連"))

    assert (msg.tenant_id, msg.correlation_id) == ("téñant-😀", "関連")


@pytest.mark.parametrize(
    "extra",
    [
        {"priority": 5},
        {"metadata": {"nested": [1, {"a": None}]}},
        {"EXECUTION_ID": 12},
        {"future_field": None, "another": "x"},
    ],
    ids=["number", "nested", "uppercase twin of a field", "several"],
)
def test_unknown_keys_are_ignored(extra: dict[str, Any]) -> None:
    received = body().rstrip(b"}") + b"," + json.dumps(extra).encode()[1:]

    msg = decode_message(received)

    assert msg == decode_message(body())
    assert keys_of(encode_message(msg)) == keys_of(body())


# --- the constructor -----------------------------------------------------------------------------


def _new(**changes: Any) -> ExecutionMessage:
    args: dict[str, Any] = {
        "tenant_id": "tenant-1",
        "workflow_id": "workflow-1",
        "workflow_version": 3,
        "trigger_type": "webhook",
        "trigger_data": b'{"k": "v"}',
    }
    args.update(changes)
    return ExecutionMessage.new(**args)


def test_constructor_sets_enqueued_at_to_now_in_utc() -> None:
    before = time.time_ns() // 1000 * 1000  # datetime.now: to the microsecond
    msg = _new()
    after = time.time_ns()

    assert before <= msg.enqueued_at_ns <= after
    assert msg.enqueued_at.utcoffset() == timedelta(0)
    assert json.loads(encode_message(msg))["enqueued_at"].endswith("Z")


def test_constructor_takes_now_as_a_parameter() -> None:
    now = datetime(2025, 12, 18, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    msg = _new(now=now)

    assert msg.enqueued_at == now
    assert msg.enqueued_at.utcoffset() == timedelta(0)


def test_constructor_takes_a_naive_now_as_utc() -> None:
    assert _new(now=datetime(2025, 12, 18, 10)).enqueued_at == datetime(
        2025, 12, 18, 10, tzinfo=UTC
    )


def test_constructor_starts_with_retry_count_zero() -> None:
    msg = _new()

    assert msg.retry_count == 0
    assert "retry_count" not in keys_of(encode_message(msg))


def test_constructor_generates_a_distinct_execution_id_when_none_is_given() -> None:
    first, second = _new(), _new()

    assert first.execution_id
    assert second.execution_id
    assert first.execution_id != second.execution_id
    first.validate()


def test_constructor_keeps_a_given_execution_id() -> None:
    assert _new(execution_id="exec-42").execution_id == "exec-42"


def test_constructor_keeps_every_given_field() -> None:
    msg = _new(correlation_id="corr-1", trigger_data=msgspec.Raw(b"[1, 2]"))

    assert (msg.tenant_id, msg.workflow_id, msg.workflow_version, msg.trigger_type) == (
        "tenant-1",
        "workflow-1",
        3,
        "webhook",
    )
    assert bytes(msg.trigger_data) == b"[1, 2]"
    assert msg.correlation_id == "corr-1"


def test_constructor_keeps_trigger_data_bytes_raw() -> None:
    msg = _new(trigger_data=b'{ "z" : 1, "a" : 2 }')

    assert b'"trigger_data":{ "z" : 1, "a" : 2 },' in encode_message(msg)


# --- SQS message attributes ----------------------------------------------------------------------


def test_message_attributes_are_strings_for_tenant_workflow_and_trigger_type() -> None:
    msg = valid(tenant_id="t-1", workflow_id="w-1", trigger_type="schedule")

    assert msg.message_attributes() == {
        "tenant_id": {"DataType": "String", "StringValue": "t-1"},
        "workflow_id": {"DataType": "String", "StringValue": "w-1"},
        "trigger_type": {"DataType": "String", "StringValue": "schedule"},
    }


def test_message_attributes_carry_correlation_id_only_when_set() -> None:
    assert "correlation_id" not in valid().message_attributes()
    assert valid(correlation_id="corr-1").message_attributes()["correlation_id"] == {
        "DataType": "String",
        "StringValue": "corr-1",
    }


# --- property: every valid message survives encode -> decode -------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _raw_json(draw: st.DrawFn) -> bytes:
    value = draw(_json_values)
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    text = json.dumps(value, separators=separators, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8")


_offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)


@st.composite
def _messages(draw: st.DrawFn) -> ExecutionMessage:
    fields: dict[str, Any] = {
        "execution_id": draw(st.text(min_size=1)),
        "tenant_id": draw(st.text(min_size=1)),
        "workflow_id": draw(st.text(min_size=1)),
        "workflow_version": draw(st.integers(min_value=1, max_value=2**63 - 1)),
        "trigger_type": draw(st.text(min_size=1)),
        "enqueued_at": draw(
            st.datetimes(
                min_value=datetime(1000, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=_offsets,
            )
        ),
        "retry_count": draw(st.integers(min_value=0, max_value=2**31)),
        "correlation_id": draw(st.text()),
    }
    # No trigger_data at all, or a JSON value: the empty payload is covered by the omission tests.
    trigger = draw(st.none() | _raw_json())
    if trigger is not None:
        fields["trigger_data"] = msgspec.Raw(trigger)
    return ExecutionMessage(**fields)


@given(_messages())
def test_any_valid_message_survives_encode_then_decode(msg: ExecutionMessage) -> None:
    assert validation_problem(msg) is None

    back = decode_message(encode_message(msg))

    for name in (
        "execution_id",
        "tenant_id",
        "workflow_id",
        "workflow_version",
        "trigger_type",
        "enqueued_at",
        "retry_count",
        "correlation_id",
    ):
        assert getattr(back, name) == getattr(msg, name), name
    assert back.enqueued_at.utcoffset() == timedelta(0)
    assert bytes(back.trigger_data) == bytes(msg.trigger_data)
    assert encode_message(back) == encode_message(msg)


def test_trusted_decode_of_an_accepted_body_equals_the_checked_decode() -> None:
    """The worker decodes without the checks, bodies the parent already accepted."""
    msg = ExecutionMessage.new(
        tenant_id="t",
        workflow_id="w",
        workflow_version=2,
        trigger_type="webhook",
        trigger_data=b'{"k": "\xc3\xa9"}',
        correlation_id="c",
    )
    body = encode_message(msg)
    assert decode_trusted_message(body) == decode_message(body)
