"""The codec is total: whatever arrives, a message or a MessageError; whatever is built, a clear
MessageError or a body that decodes back to the same message (a body Go can decode).

Hypothesis throws arbitrary bytes and text, arbitrary JSON (deep, huge numbers, long strings,
every top-level type) and mutated valid messages at the decoder, and arbitrary field values,
through every way of building a message, at the encoder.
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from goraxfast.core.message import (
    ExecutionMessage,
    UTCTimestamp,
    accepted_tenant,
    decode_message,
    decode_trusted_message,
    encode_message,
)
from goraxfast.errors import MessageError

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_VALID: dict[str, bytes] = {
    "execution_id": b'"exec-1"',
    "tenant_id": b'"tenant-1"',
    "workflow_id": b'"workflow-1"',
    "workflow_version": b"3",
    "trigger_type": b'"webhook"',
    "trigger_data": b'{"order":{"id":7,"items":[1,2]}}',
    "enqueued_at": b'"2025-12-18T10:00:00.123456789Z"',
    "retry_count": b"2",
    "correlation_id": b'"corr-1"',
}


def outcome(decode: Callable[[], ExecutionMessage]) -> ExecutionMessage | type[MessageError]:
    """The message, or the kind of MessageError; anything else fails the test."""
    try:
        return decode()
    except MessageError as exc:
        return type(exc)


def check_total(body: bytes | str) -> ExecutionMessage | type[MessageError]:
    """decode_message's answer, with what must hold of an accepted body."""
    got = outcome(lambda: decode_message(body))
    event("accepted" if isinstance(got, ExecutionMessage) else f"refused: {got.__name__}")
    if isinstance(got, ExecutionMessage):
        raw = body.encode() if isinstance(body, str) else body
        assert decode_trusted_message(raw) == got  # the worker reads what the parent accepted
        assert decode_message(encode_message(got)) == got  # and it can be written back
    return got


# --- strategies: bodies ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)

_DEPTHS = st.integers(0, 12_000) | st.sampled_from(
    [255, 256, 257, 511, 512, 999, 1_000, 1_001, 9_998, 9_999, 10_000, 10_001]
)


@st.composite
def _deep_json(draw: st.DrawFn) -> bytes:
    """A value nested ``depth`` levels of arrays and objects, sometimes left unbalanced."""
    depth = draw(_DEPTHS)
    pattern = draw(st.lists(st.sampled_from(["[", '{"k":', "[0,"]), min_size=1, max_size=3))
    opens = (pattern * (depth // len(pattern) + 1))[:depth]
    closes = "".join("]" if o.startswith("[") else "}" for o in reversed(opens))
    inner = json.dumps(draw(_json_values))
    text = "".join(opens) + inner + closes
    damage = draw(st.sampled_from(["", "", "", "drop a closer", "trailing comma", "extra"]))
    if damage == "drop a closer" and text:
        text = text[:-1]
    elif damage == "trailing comma":
        text = text[: len(text) - len(closes)] + "," + closes
    elif damage == "extra":
        text += "]"
    return text.encode()


_HOSTILE: list[bytes] = [
    b"null",
    b"true",
    b"false",
    b"-0",
    b"0.0",
    b"1e999999",
    b"-1e-999999",
    b"9" * 5_000,
    str(2**63).encode(),
    str(-(2**63) - 1).encode(),
    str(2**63 - 1).encode(),
    b"1.0",
    b'""',
    b'"' + b"x" * 200_000 + b'"',
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a":' * 3_000 + b"1" + b"}" * 3_000,
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"\\u0000"',
    b"{}",
    b"[]",
    b'{"nested":[1,{"b":null}]}',
    b'"0001-01-01T00:30:00+01:00"',
    b'"0000-12-31T23:00:00-01:00"',
    b'"9999-12-31T23:59:59.999999999Z"',
    b'"9999-12-31T23:30:00-01:00"',
    b'"2025-12-31T23:59:59.999999999Z"',
    b'"2025-12-18T9:00:00,5+24:60"',
    b'"2025-02-29T10:00:00Z"',
    b'"2016-12-31T23:59:60Z"',
    b'"2025-12-18T10:00:00.' + b"9" * 5_000 + b'Z"',
    b'"\\u0032025-12-18T10:00:00Z"',
]

_raw_json_values = (
    st.sampled_from(_HOSTILE)
    | _json_values.map(lambda v: json.dumps(v).encode())
    | st.text().map(lambda t: json.dumps(t, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    | st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: json.dumps(d.isoformat()).encode())
    | _deep_json()
    | st.binary(max_size=20)
)


@st.composite
def _mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid message with a few keys dropped, repeated, renamed or given hostile values."""
    members = [(key.encode(), value) for key, value in _VALID.items()]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(members) - 1))
        name, value = members[i]
        action = draw(st.sampled_from(["drop", "replace", "repeat", "case", "unknown"]))
        if action == "drop":
            del members[i]
        elif action == "replace":
            members[i] = (name, draw(_raw_json_values))
        elif action == "repeat":
            members.insert(i + 1, (name, draw(_raw_json_values)))
        elif action == "case":
            members[i] = (name.upper(), value)
        else:
            key = draw(st.text(max_size=12)).encode("utf-8", "surrogatepass")
            members.insert(i, (key, draw(_raw_json_values)))
        if not members:
            break
    body = b"{" + b",".join(b'"' + k + b'":' + v for k, v in members) + b"}"
    cut = draw(st.sampled_from(["", "", "", "", "", "truncate", "append", "spaces"]))
    if cut == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif cut == "append":
        body += draw(_raw_json_values)
    elif cut == "spaces":
        body = b" \n\t" + body + b"\r "
    return body


# --- decoding ------------------------------------------------------------------------------------


@BOUNDED
@given(st.binary())
def test_arbitrary_bytes_decode_to_a_message_or_a_message_error(body: bytes) -> None:
    check_total(body)


@BOUNDED
@given(st.text())
def test_arbitrary_text_decodes_to_a_message_or_a_message_error(body: str) -> None:
    check_total(body)


@BOUNDED
@given(_raw_json_values)
def test_any_json_value_at_the_top_level_decodes_to_a_message_or_a_message_error(
    body: bytes,
) -> None:
    check_total(body)


@BOUNDED
@given(_mutated_bodies())
def test_a_mutated_valid_message_decodes_to_a_message_or_a_message_error(body: bytes) -> None:
    check_total(body)


def _with_little_stack(f: Callable[[], Any], headroom: int = 45) -> Any:
    """Call ``f`` with only ``headroom`` frames left below the recursion limit."""
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back

    def dive(n: int) -> Any:
        return f() if n <= 0 else dive(n - 1)

    return dive(sys.getrecursionlimit() - depth - headroom)


@BOUNDED
@given(_mutated_bodies() | _deep_json())
def test_a_short_stack_gives_the_same_answer(body: bytes) -> None:
    """msgspec's decoder is recursive: where the stack runs short, the iterative scanner answers,
    and the answer is the same (never a RecursionError)."""
    expected = outcome(lambda: decode_message(body))

    assert _with_little_stack(lambda: outcome(lambda: decode_message(body))) == expected


@pytest.mark.parametrize(
    ("stack_bytes", "recursion_limit"),
    [(64 * 1024, 1_000_000), (32 * 1024, 1_000)],
    ids=["64 KiB thread, raised limit", "32 KiB thread, default limit"],
)
def test_a_deep_body_in_a_small_thread_does_not_crash(
    stack_bytes: int, recursion_limit: int
) -> None:
    """Where msgspec could recurse past a small thread's C stack, a deep body goes to the
    iterative scanner instead. (In a child process: a crash would be a segfault.)"""
    script = textwrap.dedent(
        f"""
        import sys, threading
        from goraxfast.core.message import decode_message
        from goraxfast.errors import MessageError
        sys.setrecursionlimit({recursion_limit})
        threading.stack_size({stack_bytes})
        answers = []
        def run():
            for depth in (900, 9_999, 100_000):
                body = b'{{"trigger_data":' + b"[" * depth + b"]" * depth + b'}}'
                try:
                    decode_message(body, validate=False)
                    answers.append("ok")
                except MessageError:
                    answers.append("refused")
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        print(",".join(answers))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok,ok,refused"


def test_decoding_leaves_the_thread_stack_setting_as_it_was() -> None:
    """Asking threading.stack_size() resets it: the decoder must put it back."""
    wide = _VALID | {"trigger_data": b"[" + b",".join([b"[]"] * 400) + b"]"}
    body = b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in wide.items()) + b"}"
    before = threading.stack_size(1024 * 1024)
    try:
        decode_message(body)

        assert threading.stack_size(before) == 1024 * 1024
    finally:
        threading.stack_size(before)


# --- encoding ------------------------------------------------------------------------------------


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


class Weird(str):
    """A str subclass of the caller's own."""


_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ),
)
_any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 10**5_000]),
    st.floats(),
    st.text(),
    st.binary(max_size=16),
    st.sampled_from([Color.RED, Level.ONE, Weird("w"), object(), {"a": 1}, [1, 2]]),
    st.datetimes(timezones=st.none() | _offsets),
)
_strings = st.text() | st.sampled_from(
    [Color.RED, Weird("weird"), "a<b>&c", "\ufffe", "\u2028", "t\udc80"]
)
_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from([Level.ONE, 0, 1])
_times = st.one_of(
    st.datetimes(timezones=st.none() | _offsets),
    st.integers(-62_135_596_800 * 10**9, 253_402_300_799 * 10**9 + 999_999_999).map(
        UTCTimestamp.from_unix_ns
    ),
    st.sampled_from(
        [
            datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
            "2025-12-18T10:00:00.123456789Z",
            "not a time",
        ]
    ),
)
_raws = st.one_of(
    _json_values.map(lambda v: msgspec.Raw(json.dumps(v).encode())),
    st.sampled_from([msgspec.Raw(b""), msgspec.Raw(b"  "), b"", None, "[1, 2]", " {} "]),
    _raw_json_values.map(msgspec.Raw),
    _raw_json_values,
)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "execution_id": _strings,
    "tenant_id": _strings,
    "workflow_id": _strings,
    "workflow_version": _ints,
    "trigger_type": _strings,
    "trigger_data": _raws,
    "enqueued_at": _times,
    "retry_count": _ints,
    "correlation_id": _strings,
}


@st.composite
def _field_values(draw: st.DrawFn) -> dict[str, Any]:
    """A value for each field of the field's own kind, and often one field holding anything."""
    fields = {name: draw(values) for name, values in _FIELD_VALUES.items()}
    if draw(st.booleans()):
        fields[draw(st.sampled_from(sorted(fields)))] = draw(_any_value)
    return fields


def _build(how: str, fields: dict[str, Any]) -> ExecutionMessage:
    if how == "init":
        return ExecutionMessage(**fields)
    if how == "new":
        return ExecutionMessage.new(
            tenant_id=fields["tenant_id"],
            workflow_id=fields["workflow_id"],
            workflow_version=fields["workflow_version"],
            trigger_type=fields["trigger_type"],
            trigger_data=fields["trigger_data"],
            execution_id=fields["execution_id"],
            correlation_id=fields["correlation_id"],
            now=fields["enqueued_at"],
        )
    msg = ExecutionMessage()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@BOUNDED
@given(st.sampled_from(["init", "new", "assign"]), _field_values())
def test_whatever_a_message_holds_it_encodes_to_a_body_that_decodes_back_or_a_message_error(
    how: str, fields: dict[str, Any]
) -> None:
    try:
        msg = _build(how, fields)
        written = encode_message(msg)
    except MessageError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("written")

    back = decode_message(written, validate=False)

    assert back == msg
    assert back.enqueued_at_ns == msg.enqueued_at_ns
    assert encode_message(back) == written


@BOUNDED
@given(st.integers(-62_135_596_800 * 10**9, 253_402_300_799 * 10**9 + 999_999_999))
def test_any_instant_survives_encode_then_decode_to_the_nanosecond(ns: int) -> None:
    msg = ExecutionMessage(
        execution_id="e",
        tenant_id="t",
        workflow_id="w",
        workflow_version=1,
        trigger_type="x",
        enqueued_at=UTCTimestamp.from_unix_ns(ns),
    )

    assert decode_message(encode_message(msg)).enqueued_at_ns == ns


@BOUNDED
@given(
    st.integers(-62_135_596_800, 253_402_300_799),
    st.text(alphabet="0123456789", min_size=1, max_size=14),
)
def test_a_time_read_again_within_its_second_is_read_as_the_first_time(
    second: int, digits: str
) -> None:
    """The decoder remembers each second it has checked: the short way reads what the full
    parser reads, truncating past nine digits."""
    head = UTCTimestamp.from_unix_ns(second * 10**9).rfc3339()[:-1]
    text = json.dumps(
        {**{k: json.loads(v) for k, v in _VALID.items()}, "enqueued_at": f"{head}.{digits}Z"}
    )
    expected_ns = second * 10**9 + int(digits[:9].ljust(9, "0"))

    first, again = decode_message(text), decode_message(text)

    assert first.enqueued_at_ns == again.enqueued_at_ns == expected_ns


@pytest.mark.parametrize("depth", [1, 255, 256, 257, 9_999])
def test_trigger_data_as_deep_as_go_allows_is_written_and_read_back(depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    msg = ExecutionMessage(
        execution_id="e",
        tenant_id="t",
        workflow_id="w",
        workflow_version=1,
        trigger_type="x",
        trigger_data=msgspec.Raw(raw),
    )

    assert bytes(decode_message(encode_message(msg)).trigger_data) == raw


def _parent_verdict(body: bytes) -> str | type[MessageError]:
    try:
        return accepted_tenant(body)
    except MessageError:
        return MessageError


def _full_verdict(body: bytes) -> str | type[MessageError]:
    try:
        return decode_message(body).tenant_id
    except MessageError:
        return MessageError


@given(_mutated_bodies() | _deep_json() | st.binary())
def test_the_parents_shortcut_gives_the_whole_decoders_verdict(body: bytes) -> None:
    """accepted_tenant (the parent's per-message check) skips building the message for plain
    bodies; it must accept, refuse and name the tenant exactly as decode_message does, whether
    or not the body's second was seen before."""
    expected = _full_verdict(body)  # also teaches the timestamp cache this body's second
    assert _parent_verdict(body) == expected
