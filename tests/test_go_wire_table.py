"""gorax's wire format, case by case: Go's ``encoding/json`` with gorax's struct is the reference.

Go is not installed here, so each row records what Go does (``go=``) next to what goraxfast
does; where they agree the expectation *is* Go's behaviour. The few rows where goraxfast differs
on purpose say so (``differs=``, with the reason); the README's compatibility section lists them.

gorax's struct, as the reference reads it::

    type ExecutionMessage struct {
        ExecutionID     string          `json:"execution_id"`
        TenantID        string          `json:"tenant_id"`
        WorkflowID      string          `json:"workflow_id"`
        WorkflowVersion int             `json:"workflow_version"`
        TriggerType     string          `json:"trigger_type"`
        TriggerData     json.RawMessage `json:"trigger_data,omitempty"`
        EnqueuedAt      time.Time       `json:"enqueued_at"`
        RetryCount      int             `json:"retry_count,omitempty"`
        CorrelationID   string          `json:"correlation_id,omitempty"`
    }

and its consumer runs ``json.Unmarshal`` then ``Validate()`` (gorax's texts, in order).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from goraxfast.core.message import (
    ExecutionMessage,
    accepted_tenant,
    decode_message,
    encode_message,
)
from goraxfast.errors import MessageDecodeError, MessageEncodeError, MessageError, ValidationError

_BASE: dict[str, bytes] = {
    "execution_id": b'"exec-1"',
    "tenant_id": b'"tenant-1"',
    "workflow_id": b'"workflow-1"',
    "workflow_version": b"1",
    "trigger_type": b'"webhook"',
    "enqueued_at": b'"2025-12-18T10:00:00Z"',
}


def body(**raw_json: bytes | str | None) -> bytes:
    """A gorax body with some keys' raw JSON replaced (``None`` drops the key); extra keys last."""
    fields: dict[str, bytes | str | None] = {**_BASE, **raw_json}
    parts = [
        b'"' + key.encode() + b'":' + (value.encode() if isinstance(value, str) else value)
        for key, value in fields.items()
        if value is not None
    ]
    return b"{" + b",".join(parts) + b"}"


def nested(depth: int) -> bytes:
    """A JSON value ``depth`` levels deep: arrays of arrays."""
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Reads:
    """Go decodes the body (and gorax's Validate accepts it); so does goraxfast, to these values."""

    name: str
    body: bytes
    go: str
    expect: dict[str, Any]
    differs: str = ""


@dataclass(frozen=True)
class Refuses:
    """The body is refused: by Go's decoder or by gorax's Validate (``go`` says which)."""

    name: str
    body: bytes
    go: str
    error: type[MessageError]
    match: str
    differs: str = ""


#: What goraxfast reads from bodies, against what Go reads. ``enqueued_at`` is compared as the
#: RFC 3339 text goraxfast writes back (UTC, nanoseconds, trailing zeros trimmed).
READ_TABLE: list[Reads | Refuses] = [
    # --- enqueued_at: time.Time.UnmarshalJSON -------------------------------------------------
    Reads(
        "gorax's Go example keeps its nanoseconds",
        b'{"execution_id":"exec-1","tenant_id":"tenant-1","workflow_id":"workflow-1",'
        b'"workflow_version":1,"trigger_type":"webhook","enqueued_at":"2025-12-18T10:00:00.123456789Z"}',
        go="EnqueuedAt.Nanosecond() == 123456789",
        expect={"enqueued_at": "2025-12-18T10:00:00.123456789Z"},
    ),
    Reads(
        "the last nanosecond of a year stays in that year",
        body(enqueued_at=b'"2025-12-31T23:59:59.999999999Z"'),
        go="2025-12-31T23:59:59.999999999Z (fractions are truncated, never rounded)",
        expect={"enqueued_at": "2025-12-31T23:59:59.999999999Z"},
    ),
    Reads(
        "the last nanosecond of year 9999",
        body(enqueued_at=b'"9999-12-31T23:59:59.999999999Z"'),
        go="accepted: the largest time RFC 3339 can write",
        expect={"enqueued_at": "9999-12-31T23:59:59.999999999Z"},
    ),
    Reads(
        "digits past the ninth are dropped",
        body(enqueued_at=b'"2025-12-18T10:00:00.1234567891234Z"'),
        go="parseNanoseconds keeps the first 9 digits",
        expect={"enqueued_at": "2025-12-18T10:00:00.123456789Z"},
    ),
    Reads(
        "one fraction digit",
        body(enqueued_at=b'"2025-12-18T10:00:00.5Z"'),
        go="500 ms",
        expect={"enqueued_at": "2025-12-18T10:00:00.5Z"},
    ),
    Reads(
        "an offset east of UTC",
        body(enqueued_at=b'"2025-12-18T12:00:00.000000001+02:00"'),
        go="the same instant, kept in a +02:00 location (Marshal writes it back with +02:00)",
        expect={"enqueued_at": "2025-12-18T10:00:00.000000001Z"},
        differs="goraxfast holds and writes every time in UTC with Z: the same instant",
    ),
    Reads(
        "year 1 in a zone east of UTC, still year 1 in UTC",
        body(enqueued_at=b'"0001-01-01T01:00:00+01:00"'),
        go="the zero time's instant (IsZero() is true)",
        expect={"enqueued_at": "0001-01-01T00:00:00Z"},
    ),
    Reads(
        "year 0 west of UTC lands on year 1 in UTC",
        body(enqueued_at=b'"0000-12-31T23:00:00-01:00"'),
        go="accepted (years 0000-9999 parse); the instant is 0001-01-01T00:00:00Z",
        expect={"enqueued_at": "0001-01-01T00:00:00Z"},
    ),
    Reads(
        "a one-digit hour",
        body(enqueued_at=b'"2025-12-18T9:00:00Z"'),
        go="accepted: time.Parse(RFC3339) reads hour 15 as one or two digits (golang/go#54580)",
        expect={"enqueued_at": "2025-12-18T09:00:00Z"},
    ),
    Reads(
        "a comma before the fraction",
        body(enqueued_at=b'"2025-12-18T10:00:00,25Z"'),
        go="accepted: time.Parse takes ',' or '.' (golang/go#54580)",
        expect={"enqueued_at": "2025-12-18T10:00:00.25Z"},
    ),
    Reads(
        "offset +24:00",
        body(enqueued_at=b'"2025-12-19T10:00:00+24:00"'),
        go='accepted: the range test is "> 24", as some people do write offsets of 24 hours',
        expect={"enqueued_at": "2025-12-18T10:00:00Z"},
    ),
    Reads(
        "offset +24:60 is read as +25:00",
        body(enqueued_at=b'"2025-12-19T11:00:00+24:60"'),
        go="accepted: minutes up to 60, so the offset is 25 hours",
        expect={"enqueued_at": "2025-12-18T10:00:00Z"},
    ),
    Reads(
        "29 February of a leap year",
        body(enqueued_at=b'"2024-02-29T10:00:00Z"'),
        go="accepted",
        expect={"enqueued_at": "2024-02-29T10:00:00Z"},
    ),
    Reads(
        "year 1 east of UTC, before year 1 in UTC, keeps its offset",
        body(enqueued_at=b'"0001-01-01T00:30:00+01:00"'),
        go="accepted: 30 minutes before the zero time, in +01:00; Marshal writes it back so",
        expect={"enqueued_at": "0001-01-01T00:30:00+01:00", "enqueued_at_ns": -62135598600 * 10**9},
    ),
    Refuses(
        "year 0 in UTC",
        body(enqueued_at=b'"0000-06-01T00:00:00Z"'),
        go="accepted",
        error=MessageDecodeError,
        match=r"`enqueued_at`.*before 0001-01-01T00:00:00Z",
        differs="Python's datetime has no year 0, in UTC or in any offset it allows",
    ),
    Reads(
        "year 9999 west of UTC, after 9999 in UTC, keeps its offset",
        body(enqueued_at=b'"9999-12-31T23:30:00.000000001-01:00"'),
        go="accepted, in -01:00; Marshal writes it back so (in UTC it could not: year 10000)",
        expect={"enqueued_at": "9999-12-31T23:30:00.000000001-01:00"},
    ),
    Refuses(
        "before year 1 in UTC with an offset of 24 hours",
        body(enqueued_at=b'"0001-01-01T00:30:00+24:00"'),
        go="accepted",
        error=MessageDecodeError,
        match=r"`enqueued_at`.*offset of 24 hours or more",
        differs="no Python datetime holds it: its year in UTC is 0 and offsets stop below 24 h",
    ),
    Refuses(
        "offset +25:00",
        body(enqueued_at=b'"2025-12-18T10:00:00+25:00"'),
        go='refused: "time zone offset hour out of range"',
        error=MessageDecodeError,
        match="`enqueued_at`.*time zone offset hour out of range",
    ),
    Refuses(
        "no offset at all",
        body(enqueued_at=b'"2025-12-18T10:00:00"'),
        go='refused: cannot parse "" as "Z07:00"',
        error=MessageDecodeError,
        match="`enqueued_at`.*not RFC 3339",
    ),
    Refuses(
        "lower-case t and z",
        body(enqueued_at=b'"2025-12-18t10:00:00z"'),
        go="refused: the layout's T and Z are matched exactly",
        error=MessageDecodeError,
        match="`enqueued_at`.*not RFC 3339",
    ),
    Refuses(
        "a space instead of T",
        body(enqueued_at=b'"2025-12-18 10:00:00Z"'),
        go='refused: cannot parse " 10:00:00Z" as "T"',
        error=MessageDecodeError,
        match="`enqueued_at`.*not RFC 3339",
    ),
    Refuses(
        "a leap second",
        body(enqueued_at=b'"2016-12-31T23:59:60Z"'),
        go='refused: "second out of range"',
        error=MessageDecodeError,
        match="`enqueued_at`.*second out of range",
    ),
    Refuses(
        "hour 24",
        body(enqueued_at=b'"2025-12-18T24:00:00Z"'),
        go='refused: "hour out of range"',
        error=MessageDecodeError,
        match="`enqueued_at`.*hour out of range",
    ),
    Refuses(
        "29 February of a common year",
        body(enqueued_at=b'"2023-02-29T10:00:00Z"'),
        go='refused: "day out of range"',
        error=MessageDecodeError,
        match="`enqueued_at`.*day out of range",
    ),
    Refuses(
        "digits of another script in the fraction",
        body(enqueued_at='"2025-12-18T10:00:00.\u0661\u0662Z"'),
        go="refused: Go's isDigit is '0' to '9'",
        error=MessageDecodeError,
        match="`enqueued_at`.*not RFC 3339",
    ),
    Refuses(
        "a date alone",
        body(enqueued_at=b'"2025-12-18"'),
        go="refused: too short for RFC 3339",
        error=MessageDecodeError,
        match="`enqueued_at`.*not RFC 3339",
    ),
    Refuses(
        "a number for the time",
        body(enqueued_at=b"1734516000"),
        go='refused: "Time.UnmarshalJSON: input is not a JSON string"',
        error=MessageDecodeError,
        match="enqueued_at",
    ),
    Reads(
        "a time written with JSON escapes",
        body(enqueued_at=b'"\\u0032025-12-18T10:00:00Z"'),
        go="refused: UnmarshalJSON parses the raw bytes, escapes included (golang/go#47353)",
        expect={"enqueued_at": "2025-12-18T10:00:00Z"},
        differs="goraxfast reads the JSON string's value, as JSON defines it",
    ),
    # --- null: "has no effect on the value and produces no error" ------------------------------
    Reads(
        "enqueued_at null",
        body(enqueued_at=b"null"),
        go="UnmarshalJSON(null) is a no-op: the zero time",
        expect={"enqueued_at": "0001-01-01T00:00:00Z"},
    ),
    Reads(
        "retry_count null",
        body(retry_count=b"null"),
        go="no effect: 0",
        expect={"retry_count": 0},
    ),
    Reads(
        "correlation_id null",
        body(correlation_id=b"null"),
        go='no effect: ""',
        expect={"correlation_id": ""},
    ),
    Reads(
        "trigger_data null",
        body(trigger_data=b"null"),
        go="json.RawMessage(`null`): 4 bytes, so omitempty writes it back",
        expect={"trigger_data": b"null"},
    ),
    Refuses(
        "execution_id null",
        body(execution_id=b"null"),
        go='"" after decoding; Validate: "execution_id is required"',
        error=ValidationError,
        match="^execution_id is required$",
    ),
    Refuses(
        "workflow_version null",
        body(workflow_version=b"null"),
        go='0 after decoding; Validate: "workflow_version must be greater than 0"',
        error=ValidationError,
        match="^workflow_version must be greater than 0$",
    ),
    Refuses(
        "trigger_type null",
        body(trigger_type=b"null"),
        go='"" after decoding; Validate: "trigger_type is required"',
        error=ValidationError,
        match="^trigger_type is required$",
    ),
    Refuses(
        "a later null for a key already set",
        body(tenant_id=None)[:-1] + b',"tenant_id":"a","tenant_id":null}',
        go='"a": the null has no effect on the value already decoded',
        error=ValidationError,
        match="^tenant_id is required$",
        differs="goraxfast's last key wins, null included; found only in hand-made bodies",
    ),
    Refuses(
        "a null body",
        b"null",
        go='no error from Unmarshal, a zero struct; Validate: "execution_id is required"',
        error=MessageDecodeError,
        match="object",
        differs="goraxfast makes a null body a decode error; refused either way",
    ),
    # --- numbers and types ----------------------------------------------------------------------
    Reads(
        "the smallest int64",
        body(retry_count=str(-(2**63))),
        go="fits Go's int",
        expect={"retry_count": -(2**63)},
    ),
    Refuses(
        "workflow_version 2**63",
        body(workflow_version=str(2**63)),
        go="refused: cannot unmarshal number 9223372036854775808 into ... of type int",
        error=MessageDecodeError,
        match="workflow_version",
    ),
    Refuses(
        "retry_count with 5,000 digits",
        body(retry_count="9" * 5000),
        go="refused: number out of range for int",
        error=MessageDecodeError,
        match="retry_count",
    ),
    Refuses(
        "workflow_version 1.0",
        body(workflow_version=b"1.0"),
        go="refused: cannot unmarshal number 1.0 into ... of type int",
        error=MessageDecodeError,
        match="workflow_version",
    ),
    Refuses(
        "workflow_version 1e0",
        body(workflow_version=b"1e0"),
        go="refused: cannot unmarshal number 1e0 into ... of type int",
        error=MessageDecodeError,
        match="workflow_version",
    ),
    Refuses(
        'workflow_version "1"',
        body(workflow_version=b'"1"'),
        go="refused: cannot unmarshal string into ... of type int",
        error=MessageDecodeError,
        match="workflow_version",
    ),
    Refuses(
        "workflow_version true",
        body(workflow_version=b"true"),
        go="refused: cannot unmarshal bool into ... of type int",
        error=MessageDecodeError,
        match="workflow_version",
    ),
    Reads(
        "retry_count -0",
        body(retry_count=b"-0"),
        go="strconv.ParseInt(-0) is 0",
        expect={"retry_count": 0},
    ),
    Refuses(
        "a number for tenant_id",
        body(tenant_id=b"42"),
        go="refused: cannot unmarshal number into ... .tenant_id of type string",
        error=MessageDecodeError,
        match="tenant_id",
    ),
    Refuses(
        "an array for tenant_id",
        body(tenant_id=nested(3)),
        go="refused: cannot unmarshal array into ... of type string",
        error=MessageDecodeError,
        match="tenant_id",
    ),
    # --- trigger_data: json.RawMessage -----------------------------------------------------------
    Reads(
        "any JSON value is kept raw, numbers beyond float too",
        body(trigger_data=b'{"big":123456789012345678901234567890,"e":1e999999}'),
        go="RawMessage holds the bytes; numbers are only checked for syntax",
        expect={"trigger_data": b'{"big":123456789012345678901234567890,"e":1e999999}'},
    ),
    Reads(
        "whitespace inside trigger_data is kept, around it is not",
        body(trigger_data=b'  { "a" : [ 1 ,2 ] }  '),
        go="RawMessage gets the value's bytes from its first to its last byte",
        expect={"trigger_data": b'{ "a" : [ 1 ,2 ] }'},
    ),
    Reads(
        "trigger_data nested 9,999 levels: 10,000 with the message",
        body(trigger_data=nested(9_999)),
        go="accepted: maxNestingDepth is 10000, the message object being level 1",
        expect={"trigger_data": nested(9_999)},
    ),
    Refuses(
        "trigger_data nested 10,000 levels: 10,001 with the message",
        body(trigger_data=nested(10_000)),
        go='refused: "exceeded max depth"',
        error=MessageDecodeError,
        match=r"deeper than 10000 levels in `trigger_data`",
    ),
    Refuses(
        "an unknown key nested past the limit",
        body(extra=nested(20_000)),
        go='refused: "exceeded max depth" (unknown keys are still scanned)',
        error=MessageDecodeError,
        match=r"deeper than 10000 levels in `extra`",
    ),
    # --- keys -------------------------------------------------------------------------------------
    Reads(
        "unknown keys are ignored, whatever they hold",
        body(priority=b"5", meta=b'{"nested":[1,{"a":null}]}'),
        go="ignored",
        expect={"tenant_id": "tenant-1"},
    ),
    Reads(
        "a key written with JSON escapes",
        body(tenant_id=None)[:-1] + b',"tenant\\u005fid":"t-9"}',
        go="keys are unescaped before they are matched",
        expect={"tenant_id": "t-9"},
    ),
    Reads(
        "a repeated key: the last one wins",
        body(tenant_id=None)[:-1] + b',"tenant_id":"a","tenant_id":"b"}',
        go="the last value decoded overwrites the first",
        expect={"tenant_id": "b"},
    ),
    Refuses(
        "a key in another case",
        body(tenant_id=None)[:-1] + b',"TENANT_ID":"tenant-1"}',
        go='accepted: encoding/json matches keys case-insensitively, so TenantID is "tenant-1"',
        error=ValidationError,
        match="^tenant_id is required$",
        differs="keys are matched exactly, as every Go marshaller writes them",
    ),
    # --- UTF-8 and JSON syntax --------------------------------------------------------------------
    Refuses(
        "invalid UTF-8 in a string",
        body(tenant_id=b'"t\xff"'),
        go="accepted, the byte replaced with U+FFFD",
        error=MessageDecodeError,
        match="tenant_id",
        differs="SQS cannot carry invalid UTF-8, so goraxfast refuses it; Go would alter the value",
    ),
    Refuses(
        "a lone UTF-16 surrogate escape",
        body(tenant_id=b'"t\\ud800"'),
        go="accepted, the escape replaced with U+FFFD",
        error=MessageDecodeError,
        match="surrogate",
        differs="not a Unicode character; Go would alter the value",
    ),
    Refuses(
        "an array body",
        b"[]",
        go="refused: cannot unmarshal array",
        error=MessageDecodeError,
        match="object",
    ),
    Refuses(
        "a second value after the object",
        body() + b"{}",
        go="refused: invalid character '{' after top-level value",
        error=MessageDecodeError,
        match="trailing characters",
    ),
    Refuses(
        "a byte order mark",
        b"\xef\xbb\xbf" + body(),
        go="refused: invalid character 'ï' looking for beginning of value",
        error=MessageDecodeError,
        match="invalid",
    ),
    Refuses(
        "an empty body",
        b"",
        go="refused: unexpected end of JSON input",
        error=MessageDecodeError,
        match="truncated",
    ),
    Refuses(
        "a body over 1 MiB",
        body(trigger_data=b'"' + b"x" * 1_048_576 + b'"'),
        go="accepted: encoding/json has no size limit",
        error=MessageDecodeError,
        match="over SQS's 1048576",
        differs="no SQS message is larger (MaximumMessageSize is at most 1 MiB)",
    ),
    Refuses(
        "a leading zero in trigger_data",
        body(trigger_data=b"[01]"),
        go="refused: invalid character '1' after array element",
        error=MessageDecodeError,
        match="invalid number",
    ),
]


def _row_id(row: Reads | Refuses) -> str:
    return row.name


@pytest.mark.parametrize("row", READ_TABLE, ids=_row_id)
def test_goraxfast_reads_a_body_as_gorax_does(row: Reads | Refuses) -> None:
    if isinstance(row, Refuses):
        with pytest.raises(row.error, match=row.match):
            decode_message(row.body)
        return
    msg = decode_message(row.body)
    for name, expected in row.expect.items():
        got = getattr(msg, name)
        if name == "enqueued_at":
            got = got.rfc3339()
        elif name == "enqueued_at_ns":
            got = msg.enqueued_at_ns
        elif name == "trigger_data":
            got = bytes(got)
        assert got == expected, name


@pytest.mark.parametrize("row", READ_TABLE, ids=_row_id)
def test_the_parents_check_gives_the_same_verdict_twice(row: Reads | Refuses) -> None:
    """The parent asks accepted_tenant, which skips building a message for a plain body whose
    second it has seen: the first call and the second (the cached one) agree with the table."""
    for _ in range(2):
        if isinstance(row, Refuses):
            with pytest.raises(row.error, match=row.match):
                accepted_tenant(row.body)
        else:
            assert accepted_tenant(row.body) == decode_message(row.body).tenant_id


@pytest.mark.parametrize("row", [r for r in READ_TABLE if isinstance(r, Reads)], ids=_row_id)
def test_a_body_gorax_reads_survives_decode_then_encode(row: Reads) -> None:
    msg = decode_message(row.body)

    again = decode_message(encode_message(msg))

    assert again == msg
    assert again.enqueued_at_ns == msg.enqueued_at_ns


# --- writing: what the encoder sends, against what Go's decoder makes of it ------------------------


def built(**changes: Any) -> Callable[[], ExecutionMessage]:
    """A valid message, then fields assigned as a caller might (after construction)."""

    def build() -> ExecutionMessage:
        msg = ExecutionMessage(
            execution_id="exec-1",
            tenant_id="tenant-1",
            workflow_id="workflow-1",
            workflow_version=1,
            trigger_type="webhook",
            enqueued_at=datetime(2025, 12, 18, 10, 0, tzinfo=UTC),
        )
        for name, value in changes.items():
            setattr(msg, name, value)
        return msg

    return build


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    TWO = 2


@dataclass(frozen=True)
class Writes:
    """The encoder writes this body, which Go's decoder reads back to the same message."""

    name: str
    build: Callable[[], ExecutionMessage]
    go: str
    written: bytes
    differs: str = ""


@dataclass(frozen=True)
class Refused:
    """The encoder refuses before anything is sent: Go could not read the body back."""

    name: str
    build: Callable[[], ExecutionMessage]
    go: str
    match: str
    errors: tuple[type[MessageError], ...] = field(default=(MessageEncodeError,))


_HEAD = b'"execution_id":"exec-1","tenant_id":"tenant-1","workflow_id":"workflow-1"'

WRITE_TABLE: list[Writes | Refused] = [
    Writes(
        "every field, in the struct's order",
        built(
            trigger_data=msgspec.Raw(b'{"n":[1,2]}'),
            retry_count=2,
            correlation_id="corr-9",
            enqueued_at=datetime(2025, 12, 18, 10, 0, 0, 123400, tzinfo=UTC),
        ),
        go="json.Marshal writes the same bytes",
        written=b"{" + _HEAD + b',"workflow_version":1,"trigger_type":"webhook",'
        b'"trigger_data":{"n":[1,2]},"enqueued_at":"2025-12-18T10:00:00.1234Z",'
        b'"retry_count":2,"correlation_id":"corr-9"}',
    ),
    Writes(
        "nanoseconds, trailing zeros trimmed",
        built(enqueued_at=datetime(2025, 12, 18, 10, 0, tzinfo=UTC) + timedelta(microseconds=1)),
        go="RFC3339Nano: .000001Z",
        written=b"{" + _HEAD + b',"workflow_version":1,"trigger_type":"webhook",'
        b'"enqueued_at":"2025-12-18T10:00:00.000001Z"}',
    ),
    Writes(
        "an offset is written in UTC",
        built(enqueued_at=datetime(2025, 12, 18, 12, 0, tzinfo=timezone(timedelta(hours=2)))),
        go="json.Marshal would keep +02:00; either text is the same instant to Go",
        written=b"{" + _HEAD + b',"workflow_version":1,"trigger_type":"webhook",'
        b'"enqueued_at":"2025-12-18T10:00:00Z"}',
        differs="goraxfast writes every time in UTC with Z",
    ),
    Writes(
        "blanks around raw trigger_data are dropped",
        built(trigger_data=msgspec.Raw(b"  [1, 2]\n")),
        go="the decoder ignores them; json.Marshal would also compact the inside",
        written=b"{" + _HEAD + b',"workflow_version":1,"trigger_type":"webhook",'
        b'"trigger_data":[1, 2],"enqueued_at":"2025-12-18T10:00:00Z"}',
        differs="goraxfast keeps trigger_data raw: its inside is sent byte for byte",
    ),
    Writes(
        "< > & are written as they are",
        built(tenant_id="a<b>&c"),
        go='json.Marshal writes "a\\u003cb\\u003e\\u0026c"; both decode to the same string',
        written=b'{"execution_id":"exec-1","tenant_id":"a<b>&c","workflow_id":"workflow-1",'
        b'"workflow_version":1,"trigger_type":"webhook","enqueued_at":"2025-12-18T10:00:00Z"}',
        differs="HTML escaping protects HTML pages, not queue bodies",
    ),
    Writes(
        "a StrEnum and an IntEnum are written as their values",
        built(trigger_type=Color.RED, workflow_version=Level.TWO),
        go="a string and an int",
        written=b"{" + _HEAD + b',"workflow_version":2,"trigger_type":"red",'
        b'"enqueued_at":"2025-12-18T10:00:00Z"}',
    ),
    Refused(
        "workflow_version 2**63",
        built(workflow_version=2**63),
        go="cannot unmarshal number 9223372036854775808 into ... of type int",
        match="`workflow_version` 9223372036854775808 does not fit Go's int",
    ),
    Refused(
        "retry_count below -2**63",
        built(retry_count=-(2**63) - 1),
        go="cannot unmarshal number into ... of type int",
        match="`retry_count`",
    ),
    Refused(
        "True for an int",
        built(workflow_version=True),
        go="cannot unmarshal bool into ... of type int",
        match="`workflow_version` must be an integer, got bool",
    ),
    Refused(
        "a float for an int",
        built(retry_count=1.5),
        go="cannot unmarshal number 1.5 into ... of type int",
        match="`retry_count` must be an integer, got float",
    ),
    Refused(
        "a str for an int",
        built(workflow_version="3"),
        go="cannot unmarshal string into ... of type int",
        match="`workflow_version` must be an integer, got str",
    ),
    Refused(
        "an int for a string",
        built(tenant_id=5),
        go="cannot unmarshal number into ... of type string",
        match="`tenant_id` must be a str, got int",
    ),
    Refused(
        "None for a string",
        built(correlation_id=None),
        go='null would read as "": not what the caller meant',
        match="`correlation_id` must be a str, got NoneType",
    ),
    Refused(
        "bytes for a string",
        built(workflow_id=b"wf"),
        go="msgspec would write base64 text: a different string",
        match="`workflow_id` must be a str, got bytes",
    ),
    Refused(
        "a lone surrogate in a string",
        built(tenant_id="t\udc80"),
        go="not UTF-8: not a JSON text",
        match="`tenant_id` holds a lone surrogate",
    ),
    Refused(
        "raw trigger_data holding two values",
        built(trigger_data=msgspec.Raw(b"1 2")),
        go="invalid character '2' after object key:value pair",
        match="`trigger_data` is not one JSON value",
    ),
    Refused(
        "raw trigger_data that is not JSON",
        built(trigger_data=msgspec.Raw(b"{")),
        go="unexpected end of JSON input",
        match="`trigger_data` is not one JSON value",
    ),
    Refused(
        "raw trigger_data that is not UTF-8",
        built(trigger_data=msgspec.Raw(b'"\xff"')),
        go="read with U+FFFD in place of the byte: a different value (goraxfast refuses it)",
        match="`trigger_data` is not valid UTF-8",
    ),
    Refused(
        "raw trigger_data nested past Go's limit",
        built(trigger_data=msgspec.Raw(nested(10_000))),
        go="exceeded max depth",
        match="deeper than 10000 levels",
    ),
    Refused(
        "a dict for trigger_data",
        built(trigger_data={"a": 1}),
        go="msgspec would write an object Go reads, but the caller meant raw JSON: use the adapter",
        match="`trigger_data` must be raw JSON",
    ),
    Refused(
        "None for enqueued_at",
        built(enqueued_at=None),
        go="null would read as the zero time: not what the caller meant",
        match="`enqueued_at` must be a datetime, got NoneType",
    ),
    Writes(
        "a time before year 1 in UTC keeps its offset",
        built(enqueued_at=datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))),
        go="json.Marshal writes the same text; in UTC it would be year 0",
        written=b"{" + _HEAD + b',"workflow_version":1,"trigger_type":"webhook",'
        b'"enqueued_at":"0001-01-01T00:30:00+01:00"}',
    ),
    Refused(
        "a time before year 1 in UTC with an offset in seconds",
        built(enqueued_at=datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(seconds=30)))),
        go="RFC 3339 offsets have no seconds: Go would write +00:00, a different instant",
        match="`enqueued_at`.*offset has seconds",
    ),
]


@pytest.mark.parametrize("row", WRITE_TABLE, ids=_row_id)
def test_goraxfast_writes_only_what_gorax_reads_back(row: Writes | Refused) -> None:
    msg = row.build()
    if isinstance(row, Refused):
        with pytest.raises(row.errors, match=row.match):
            encode_message(msg)
        return

    written = encode_message(msg)

    assert written == row.written
    assert decode_message(written) == msg
