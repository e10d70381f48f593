"""The gorax ``ExecutionMessage``: the JSON body of every SQS message, read and written as Go does.

The wire format is a compatibility contract with the Go service (the README's "Compatibility
with gorax's wire format"), so the JSON keys, omission rules and error texts here are fixed; Go's
``encoding/json`` with gorax's struct is the reference for everything else
(``tests/test_go_wire_table.py`` records its behaviour case by case, and the few deliberate
differences). ``trigger_data`` stays raw bytes end to end: the engine never re-parses a payload
it only passes through.

Decoding is total: whatever bytes arrive, :func:`decode_message` returns a message or raises
:class:`MessageError` (never ``RecursionError``, ``OverflowError`` or anything else), and what a
body may cost is bounded: :data:`MAX_BODY_BYTES`, and the nesting limits of
:mod:`goraxfast.core.jsonbounds`. Encoding is checked: :func:`encode_message` writes only bodies
Go's decoder reads back to the same message, or raises :class:`MessageEncodeError` naming the field.
"""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from goraxfast.core.gotime import UTCTimestamp, is_known_go_time, parse_go_time, zero_time
from goraxfast.core.jsonbounds import (
    MAX_NESTING_DEPTH,
    SHORT_BODY_BYTES,
    JSONProblem,
    TooDeep,
    at_most_msgspec_depth,
    check_value,
    fits_msgspec,
    scan_object,
)
from goraxfast.core.sqs_model import SQS_MAX_MESSAGE_BYTES
from goraxfast.errors import MessageDecodeError, MessageEncodeError, MessageError, ValidationError

__all__ = [
    "ATTRIBUTE_FIELDS",
    "GO_INT_MAX",
    "GO_INT_MIN",
    "MAX_BODY_BYTES",
    "MAX_NESTING_DEPTH",
    "ExecutionMessage",
    "UTCTimestamp",
    "checked_trigger_data",
    "decode_message",
    "decode_trusted_message",
    "encode_message",
    "validation_problem",
]

#: Message attributes every published message carries (DataType String), besides correlation_id.
ATTRIBUTE_FIELDS = ("tenant_id", "workflow_id", "trigger_type")
#: The largest body decoded: SQS's hard MaximumMessageSize (body and attributes together), so
#: no SQS message is larger. Bounds the cost of every string and number in a body.
MAX_BODY_BYTES = SQS_MAX_MESSAGE_BYTES
#: Go's ``int`` is 64 bits: a larger number would be a body gorax itself cannot decode.
GO_INT_MIN, GO_INT_MAX = -(2**63), 2**63 - 1
GoInt = Annotated[int, msgspec.Meta(ge=GO_INT_MIN, le=GO_INT_MAX)]

#: The one empty ``trigger_data``: ``omit_defaults`` omits the default object itself, not an
#: equal one, so every empty payload is normalised to this instance.
_EMPTY_RAW = msgspec.Raw(b"")
_Raw = msgspec.Raw
_STRING_FIELDS = ("execution_id", "tenant_id", "workflow_id", "trigger_type", "correlation_id")
_INT_FIELDS = ("workflow_version", "retry_count")
_JSON_WS = b" \t\n\r"

if TYPE_CHECKING:
    _WireTime = datetime
else:
    # msgspec hands __post_init__ the JSON text of enqueued_at, which becomes a UTCTimestamp
    # there: msgspec's own datetime parsing rounds to microseconds and is laxer than Go's.
    _WireTime = str


class ExecutionMessage(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One workflow execution to run. Field order and names match the Go struct's JSON tags.

    Required strings default to empty (as Go's decoder leaves them) so that a missing key (or a
    JSON ``null``, which Go reads as "not set") is reported by :meth:`validate` with gorax's own
    texts rather than as a decode error.

    ``enqueued_at`` is always a :class:`UTCTimestamp`: the aware UTC ``datetime`` handler authors
    had, which also keeps the nanoseconds gorax writes, so decode then encode returns the same
    instant to the nanosecond; :attr:`enqueued_at_ns` gives them as one exact integer. (An
    instant UTC cannot hold, before year 1 or after 9999, keeps its own offset, as in Go: see
    :mod:`goraxfast.core.gotime`.) Given by hand, a naive ``datetime`` is taken as UTC, an aware
    one converted, and a ``str`` read as gorax's RFC 3339 text.
    """

    # default_factory, not a plain default: omit_defaults never omits these, as Go never does
    execution_id: str = msgspec.field(default_factory=str)
    tenant_id: str = msgspec.field(default_factory=str)
    workflow_id: str = msgspec.field(default_factory=str)
    workflow_version: GoInt = msgspec.field(default_factory=int)
    trigger_type: str = msgspec.field(default_factory=str)
    trigger_data: msgspec.Raw = _EMPTY_RAW
    enqueued_at: _WireTime = msgspec.field(default_factory=zero_time)
    retry_count: GoInt = 0
    correlation_id: str = ""

    def __post_init__(self) -> None:
        t: Any = self.enqueued_at
        if type(t) is str:  # decoding: the wire text, read as Go reads it
            try:
                self.enqueued_at = parse_go_time(t)
            except ValueError as exc:
                raise MessageDecodeError(f"`enqueued_at`: {exc}") from None
        elif type(t) is not UTCTimestamp or t.tzinfo is not UTC:  # built by hand
            self.enqueued_at = _wire_time(t)
        raw: Any = self.trigger_data
        if raw is not _EMPTY_RAW and (type(raw) is not _Raw or not len(raw)):
            self.trigger_data = _raw_of(raw)

    @classmethod
    def new(
        cls,
        *,
        tenant_id: str,
        workflow_id: str,
        workflow_version: int,
        trigger_type: str,
        trigger_data: bytes | msgspec.Raw | None = None,
        execution_id: str | None = None,
        correlation_id: str = "",
        now: datetime | None = None,
    ) -> ExecutionMessage:
        """Build a message enqueued ``now`` with ``retry_count`` 0, as gorax's constructor does.

        ``now`` defaults to this instant (to the microsecond: the core reads no ``time`` module;
        pass ``now`` to stamp nanoseconds).
        ``trigger_data`` must already be JSON bytes; :class:`goraxfast.publish.adapter.PublisherAdapter`
        converts other shapes.
        """
        return cls(
            execution_id=execution_id if execution_id is not None else str(uuid.uuid4()),
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            workflow_version=workflow_version,
            trigger_type=trigger_type,
            trigger_data=_EMPTY_RAW if trigger_data is None else trigger_data,  # type: ignore[arg-type]
            enqueued_at=now if now is not None else datetime.now(UTC),
            correlation_id=correlation_id,
        )

    @property
    def enqueued_at_ns(self) -> int:
        """``enqueued_at`` exactly, in nanoseconds since the Unix epoch (Go's ``UnixNano``)."""
        return _wire_time(self.enqueued_at).unix_ns

    @enqueued_at_ns.setter
    def enqueued_at_ns(self, ns: int) -> None:
        self.enqueued_at = UTCTimestamp.from_unix_ns(ns)

    def validate(self) -> None:
        """Raise :class:`ValidationError` for the first rule broken, in gorax's order and words."""
        problem = validation_problem(self)
        if problem is not None:
            raise ValidationError(problem)

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """The SQS message attributes gorax attaches to every published message."""
        attrs = {
            "tenant_id": {"DataType": "String", "StringValue": self.tenant_id},
            "workflow_id": {"DataType": "String", "StringValue": self.workflow_id},
            "trigger_type": {"DataType": "String", "StringValue": self.trigger_type},
        }
        if self.correlation_id:
            attrs["correlation_id"] = {"DataType": "String", "StringValue": self.correlation_id}
        return attrs

    def trigger_json(self) -> Any:
        """``trigger_data`` parsed; for callers that want it (the engine never needs to).

        Raises :class:`MessageDecodeError` for what it will not build: nesting past
        ``jsonbounds.MSGSPEC_MAX_DEPTH`` (256) levels (a body may be 10,000 deep, as Go allows;
        building costs ~350 bytes of C stack per level, so 256 fit any thread of 128 KiB), or a
        number beyond a float.
        """
        raw = bytes(self.trigger_data)
        if not raw:
            return None
        if not at_most_msgspec_depth(raw):
            raise MessageDecodeError(
                "`trigger_data` is nested too deep to build as Python objects: "
                "read msg.trigger_data with a parser of your own"
            )
        try:
            return msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise MessageDecodeError(f"`trigger_data`: {exc}") from exc


class _NullableMessage(msgspec.Struct, kw_only=True):
    """The same fields, each of which may also be JSON ``null``: Go's decoder leaves a field it
    reads ``null`` for at its zero value, so gorax reads such a body (and then validates it)."""

    execution_id: str | None = None
    tenant_id: str | None = None
    workflow_id: str | None = None
    workflow_version: GoInt | None = None
    trigger_type: str | None = None
    trigger_data: msgspec.Raw = _EMPTY_RAW  # null stays raw `null`, as in Go's json.RawMessage
    enqueued_at: str | None = None
    retry_count: GoInt | None = None
    correlation_id: str | None = None


_FIELDS = ExecutionMessage.__struct_fields__


def validation_problem(msg: ExecutionMessage) -> str | None:
    """The first broken rule as gorax words it, or ``None``: an expected result, not an error."""
    if not msg.execution_id:
        return "execution_id is required"
    if not msg.tenant_id:
        return "tenant_id is required"
    if not msg.workflow_id:
        return "workflow_id is required"
    try:
        too_small = msg.workflow_version <= 0
    except TypeError:  # not a number: encode_message names the type
        too_small = True
    if too_small:
        return "workflow_version must be greater than 0"
    if not msg.trigger_type:
        return "trigger_type is required"
    return None


# --- encoding ------------------------------------------------------------------------------------


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, UTCTimestamp):
        return obj.rfc3339()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


#: The one module-level encoder/decoder set (msgspec: create them once, reuse them).
_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.json.Decoder(ExecutionMessage)
_NULLABLE_DECODER = msgspec.json.Decoder(_NullableMessage)
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode


def encode_message(msg: ExecutionMessage) -> bytes:
    """The JSON body exactly as the Go service writes it.

    Fields may have been assigned anything since the message was built, so each is checked (and
    normalised: a UTC ``Z`` timestamp, exact ``str``/``int`` for their subclasses, one empty
    payload) first; :class:`MessageEncodeError` names the first field Go could not read back.
    """
    if (
        type(msg.execution_id) is not str
        or type(msg.tenant_id) is not str
        or type(msg.workflow_id) is not str
        or type(msg.trigger_type) is not str
        or type(msg.correlation_id) is not str
    ):
        _fix_strings(msg)
    version, retries = msg.workflow_version, msg.retry_count
    if (
        type(version) is not int
        or type(retries) is not int
        or not GO_INT_MIN <= version <= GO_INT_MAX
        or not GO_INT_MIN <= retries <= GO_INT_MAX
    ):
        _fix_ints(msg)
    t: Any = msg.enqueued_at
    if type(t) is not UTCTimestamp or t.tzinfo is not UTC:
        msg.enqueued_at = _wire_time(t)
    raw: Any = msg.trigger_data
    if raw is not _EMPTY_RAW:
        if type(raw) is not _Raw or not len(raw):
            raw = msg.trigger_data = _raw_of(raw)  # the one empty payload, which is omitted
        if raw is not _EMPTY_RAW:
            value = checked_trigger_data(raw)
            if value is _EMPTY_RAW or len(value) != len(raw):
                msg.trigger_data = value
    try:
        return _ENCODER.encode(msg)
    except UnicodeEncodeError as exc:  # a lone surrogate: not UTF-8, so not JSON Go reads
        raise MessageEncodeError(_surrogate_problem(msg)) from exc
    except (TypeError, ValueError, NotImplementedError, OverflowError) as exc:
        raise MessageEncodeError(f"cannot encode the message: {exc}") from exc


def _fix_strings(msg: ExecutionMessage) -> None:
    for name in _STRING_FIELDS:
        value = getattr(msg, name)
        if type(value) is str:
            continue
        if not isinstance(value, str):
            raise MessageEncodeError(f"`{name}` must be a str, got {type(value).__name__}")
        setattr(msg, name, str.__str__(value))  # a str subclass (StrEnum, ...): its text


def _fix_ints(msg: ExecutionMessage) -> None:
    for name in _INT_FIELDS:
        value = getattr(msg, name)
        if type(value) is not int:
            if isinstance(value, bool) or not hasattr(type(value), "__index__"):
                raise MessageEncodeError(f"`{name}` must be an integer, got {type(value).__name__}")
            try:
                value = operator.index(value)  # numpy integers, IntEnum, ...: the exact int
            except Exception as exc:
                raise MessageEncodeError(f"`{name}` is not an integer: {exc}") from exc
            setattr(msg, name, value)
        if not GO_INT_MIN <= value <= GO_INT_MAX:
            shown = (
                str(value) if value.bit_length() < 128 else f"a {value.bit_length()}-bit integer"
            )
            raise MessageEncodeError(
                f"`{name}` {shown} does not fit Go's int (64 bits): gorax could not decode it"
            )


def _wire_time(value: Any) -> UTCTimestamp:
    """``enqueued_at`` as it is written: UTC, to the nanosecond; MessageEncodeError if it cannot be."""
    if type(value) is UTCTimestamp and value.tzinfo is UTC:
        return value
    if isinstance(value, datetime):
        try:
            return UTCTimestamp.of(value)
        except Exception as exc:  # out of range in UTC, or a tzinfo that fails
            raise MessageEncodeError(f"`enqueued_at`: {exc}") from exc
    if isinstance(value, str):
        try:
            return parse_go_time(value)
        except ValueError as exc:
            raise MessageEncodeError(f"`enqueued_at`: {exc}") from None
    raise MessageEncodeError(f"`enqueued_at` must be a datetime, got {type(value).__name__}")


def _raw_of(value: Any) -> msgspec.Raw:
    """``trigger_data`` as given when a message is built: raw JSON bytes or text, or nothing."""
    if value is None:
        return _EMPTY_RAW
    if isinstance(value, msgspec.Raw):
        return value if len(value) else _EMPTY_RAW
    if isinstance(value, bytes | bytearray | memoryview):
        return msgspec.Raw(bytes(value)) if len(value) else _EMPTY_RAW
    if isinstance(value, str):
        try:
            return msgspec.Raw(value.encode()) if value else _EMPTY_RAW
        except UnicodeEncodeError:
            raise MessageEncodeError("`trigger_data` is not valid UTF-8 text") from None
    raise MessageEncodeError(
        f"`trigger_data` must be raw JSON (bytes, str or msgspec.Raw), got {type(value).__name__}: "
        "PublisherAdapter encodes Python values"
    )


def checked_trigger_data(raw: msgspec.Raw | bytes) -> msgspec.Raw:
    """``raw`` as ``trigger_data`` is written: exactly one JSON value that Go's decoder (and
    ours) reads, in UTF-8, without the blanks around it (none at all: the empty payload).

    Raises :class:`MessageEncodeError` saying why not.
    """
    try:
        str(raw, "utf-8")  # msgspec does not check the UTF-8 of what it skips
    except UnicodeDecodeError as exc:
        raise MessageEncodeError(f"`trigger_data` is not valid UTF-8 (byte {exc.start})") from None
    if len(raw) <= SHORT_BODY_BYTES or fits_msgspec(bytes(raw)):
        try:
            value: msgspec.Raw = _decode_raw(raw)  # the value without the blanks around it
        except msgspec.DecodeError as exc:
            if bytes(raw).strip(_JSON_WS):
                raise MessageEncodeError(f"`trigger_data` is not one JSON value: {exc}") from None
            return _EMPTY_RAW  # only blanks: no trigger data
        except RecursionError:  # a short stack: the iterative check gives the same answer
            return _checked_deep(bytes(raw))
        return value
    return _checked_deep(bytes(raw))


def _checked_deep(data: bytes) -> msgspec.Raw:
    value = data.strip(_JSON_WS)
    if not value:
        return _EMPTY_RAW
    try:
        check_value(value, depth=1)  # inside the message object
    except JSONProblem as exc:
        raise MessageEncodeError(f"`trigger_data` is not one JSON value: {exc}") from None
    return msgspec.Raw(value)


def _surrogate_problem(msg: ExecutionMessage) -> str:
    for name in _STRING_FIELDS:
        try:
            getattr(msg, name).encode()
        except UnicodeEncodeError:
            return f"`{name}` holds a lone surrogate: not UTF-8, so not a JSON string Go reads"
    return "a string holds a lone surrogate: not UTF-8"


# --- decoding ------------------------------------------------------------------------------------


def decode_message(body: bytes | str, *, validate: bool = True) -> ExecutionMessage:
    """Decode (and by default validate) one body; for any input, a message or a MessageError.

    Raises :class:`MessageDecodeError` naming the field for wrong types, non-objects, malformed
    JSON, invalid UTF-8, bodies over :data:`MAX_BODY_BYTES` or nested past Go's limit, and
    timestamps Go refuses; :class:`ValidationError` with gorax's texts for broken rules.
    """
    try:
        if type(body) is not bytes:
            body = _as_bytes(body)
        deep = False
        if len(body) > SHORT_BODY_BYTES:
            if len(body) > MAX_BODY_BYTES:
                raise MessageDecodeError(
                    f"invalid message: body is {len(body)} bytes, over SQS's {MAX_BODY_BYTES}"
                )
            deep = not fits_msgspec(body)
        if not body.isascii():
            # msgspec checks the UTF-8 of the strings it decodes, not of raw trigger_data or
            # skipped keys; goraxfast makes any invalid UTF-8 a decode error.
            body.decode("utf-8")
        if deep:
            msg = _decode_deep(body)
        else:
            try:
                msg = _decode_fast(body)
            except (msgspec.DecodeError, RecursionError) as exc:
                msg = _decode_again(body, exc)
    except MessageError:
        raise
    except UnicodeDecodeError as exc:
        assert isinstance(body, bytes)
        raise MessageDecodeError(f"invalid message: {_utf8_problem(body, exc.start)}") from exc
    except MemoryError:  # not this message's fault
        raise
    except Exception as exc:  # a bug of ours must cost one message, never the engine
        raise MessageDecodeError(
            f"invalid message: unexpected {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    if validate:
        problem = validation_problem(msg)
        if problem is not None:
            raise ValidationError(problem)
    return msg


class _Verdict(msgspec.Struct, kw_only=True, gc=False):
    """The fields the parent's verdict needs, ``enqueued_at`` left as its text."""

    execution_id: str = ""
    tenant_id: str = ""
    workflow_id: str = ""
    workflow_version: GoInt = 0
    trigger_type: str = ""
    trigger_data: msgspec.Raw = _EMPTY_RAW
    enqueued_at: str | None = None
    retry_count: GoInt = 0
    correlation_id: str = ""


_decode_verdict = msgspec.json.Decoder(_Verdict).decode


def accepted_tenant(body: bytes) -> str:
    """``decode_message(body).tenant_id``: the parent's one question of a body it received
    (valid or poison, and whose tenant), answered without building the message.

    A plain body (ASCII, no ``null``, a timestamp whose second was seen before) is checked by
    msgspec alone and :func:`is_known_go_time`; anything else takes :func:`decode_message`'s
    whole road, so the verdict is always the same as its (the table and property tests hold
    both to it). Saves the timestamp's construction, which the worker does once anyway.
    """
    if (
        type(body) is bytes
        and body.isascii()
        and (len(body) <= SHORT_BODY_BYTES or (len(body) <= MAX_BODY_BYTES and fits_msgspec(body)))
    ):
        try:
            v = _decode_verdict(body)
        except Exception:
            v = None
        if (
            v is not None
            and (v.enqueued_at is None or is_known_go_time(v.enqueued_at))
            and v.execution_id
            and v.tenant_id
            and v.workflow_id
            and v.workflow_version > 0
            and v.trigger_type
        ):
            return v.tenant_id
    return decode_message(body).tenant_id


def decode_trusted_message(body: bytes) -> ExecutionMessage:
    """Decode a body that :func:`decode_message` has already accepted, without its checks.

    The worker's case: the parent decodes and validates every body before dispatching it. Most
    bodies go straight to msgspec's decoder; a deep one, or one with ``null`` fields, goes the
    way :func:`decode_message` took, so both give the same message.
    """
    if len(body) <= SHORT_BODY_BYTES or fits_msgspec(body):
        try:
            return _decode_fast(body)
        except (msgspec.ValidationError, RecursionError):
            pass
    return decode_message(body, validate=False)


_decode_fast: Callable[[bytes], ExecutionMessage] = _DECODER.decode


def _as_bytes(body: object) -> bytes:
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            raw = body.encode("utf-8", "surrogatepass")
            try:
                raw.decode("utf-8")
                offset = 0
            except UnicodeDecodeError as exc:
                offset = exc.start
            raise MessageDecodeError(f"invalid message: {_utf8_problem(raw, offset)}") from None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise MessageDecodeError(f"invalid message: a body is bytes or str, not {type(body).__name__}")


def _decode_again(body: bytes, exc: Exception, *, shallow: bool = False) -> ExecutionMessage:
    """After msgspec refused a body: Go's reading of ``null``, the iterative way for a short
    stack, or the error as a MessageDecodeError."""
    if isinstance(exc, RecursionError):
        if shallow:
            raise exc
        # The caller's stack or recursion limit is short: the same answer, the iterative way.
        return _decode_deep(body)
    if not isinstance(exc, msgspec.ValidationError) or "got `null`" not in str(exc):
        raise MessageDecodeError(f"invalid message: {_reason(body, exc)}") from exc
    try:
        loose = _NULLABLE_DECODER.decode(body)
    except msgspec.DecodeError as again:
        raise MessageDecodeError(f"invalid message: {again}") from again
    given = {name: getattr(loose, name) for name in _FIELDS}
    return ExecutionMessage(**{k: v for k, v in given.items() if v is not None})


def _reason(body: bytes, exc: Exception) -> str:
    text = str(exc)
    if text == "Input data was truncated" and _LONE_SURROGATE.search(body):
        # msgspec's words for a \uD800-\uDBFF escape not followed by its low half
        return "JSON is malformed: a \\u escape is half of a UTF-16 surrogate pair"
    return text


_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")


def _decode_deep(body: bytes) -> ExecutionMessage:
    """A body msgspec's recursive decoder must not see: scanned iteratively (up to Go's limit),
    then decoded with each top-level container replaced by an empty one of its kind (a typed
    field still gets msgspec's own type error) and the real ``trigger_data`` put back."""
    try:
        members = scan_object(body)
    except TooDeep as exc:
        where = f" in `{_key_name(body, exc.key_span)}`" if exc.key_span else ""
        raise MessageDecodeError(
            f"invalid message: JSON nested deeper than {MAX_NESTING_DEPTH} levels{where} "
            "(Go's encoding/json limit)"
        ) from exc
    except JSONProblem as exc:
        raise MessageDecodeError(f"invalid message: JSON is malformed: {exc}") from exc
    except TypeError as exc:
        raise MessageDecodeError(f"invalid message: {exc}") from exc
    parts = []
    trigger: tuple[int, int] | None = None
    for key_start, key_end, start, end, container in members:
        key = body[key_start:key_end]
        is_trigger = key == b'"trigger_data"' or (b"\\" in key and _key_text(key) == "trigger_data")
        if container:
            value = b"[]" if body[start] == ord("[") else b"{}"
            if is_trigger:
                trigger = (start, end)
        else:
            value = body[start:end]
            if is_trigger:
                trigger = None  # a later trigger_data replaces an earlier one, as in msgspec
        parts.append(key + b":" + value)
    shallow = b"{" + b",".join(parts) + b"}"
    try:
        msg = _decode_fast(shallow)
    except (msgspec.DecodeError, RecursionError) as exc:
        msg = _decode_again(shallow, exc, shallow=True)
    if trigger is not None:
        msg.trigger_data = msgspec.Raw(body[trigger[0] : trigger[1]])
    return msg


def _key_text(key: bytes) -> str:
    try:
        text: str = msgspec.json.decode(key)
        return text
    except msgspec.DecodeError:
        return ""


def _key_name(body: bytes, span: tuple[int, int]) -> str:
    """A top-level key as an error message shows it (cut if long: a body may be hostile)."""
    text = body[span[0] + 1 : span[1] - 1].decode("utf-8", "replace")
    return text if len(text) <= 64 else text[:61] + "..."


def _utf8_problem(body: bytes, offset: int) -> str:
    """Name the field holding invalid UTF-8 (cold path: only after a decode already failed)."""
    try:
        members = scan_object(body)
    except (JSONProblem, TypeError):
        return f"body is not valid UTF-8 (byte {offset})"
    for key_start, key_end, start, end, _ in members:
        if key_start <= offset < key_end:
            return f"invalid UTF-8 in a key (byte {offset})"
        if start <= offset < end:
            return f"invalid UTF-8 in field `{_key_name(body, (key_start, key_end))}`"
    return f"body is not valid UTF-8 (byte {offset})"
