"""The ``ExecutionMessage`` struct and how it is written: its fields as gorax's Go struct has them,
gorax's validation rules in gorax's words, and :func:`encode_message`, which writes only bodies
Go's decoder reads back to the same message (every field checked and normalised first, a
:class:`MessageEncodeError` naming the one it could not). Reading bodies is
:mod:`goraxfast.core.message_decode`'s job; :mod:`goraxfast.core.message` is where both are
imported from.
"""

from __future__ import annotations

import operator
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from goraxfast.core.gotime import UTCTimestamp, parse_go_time, zero_time
from goraxfast.core.jsonbounds import (
    SHORT_BODY_BYTES,
    JSONProblem,
    at_most_msgspec_depth,
    check_value,
    fits_msgspec,
)
from goraxfast.core.sqs_model import SQS_MAX_MESSAGE_BYTES
from goraxfast.errors import MessageDecodeError, MessageEncodeError, ValidationError

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
EMPTY_RAW = msgspec.Raw(b"")
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
    trigger_data: msgspec.Raw = EMPTY_RAW
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
        if raw is not EMPTY_RAW and (type(raw) is not _Raw or not len(raw)):
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
            trigger_data=EMPTY_RAW if trigger_data is None else trigger_data,  # type: ignore[arg-type]
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


#: The module-level encoder and raw-value decoder (msgspec: create them once, reuse them).
_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
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
    if raw is not EMPTY_RAW:
        if type(raw) is not _Raw or not len(raw):
            raw = msg.trigger_data = _raw_of(raw)  # the one empty payload, which is omitted
        if raw is not EMPTY_RAW:
            value = checked_trigger_data(raw)
            if value is EMPTY_RAW or len(value) != len(raw):
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
        return EMPTY_RAW
    if isinstance(value, msgspec.Raw):
        return value if len(value) else EMPTY_RAW
    if isinstance(value, bytes | bytearray | memoryview):
        return msgspec.Raw(bytes(value)) if len(value) else EMPTY_RAW
    if isinstance(value, str):
        try:
            return msgspec.Raw(value.encode()) if value else EMPTY_RAW
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
            return EMPTY_RAW  # only blanks: no trigger data
        except RecursionError:  # a short stack: the iterative check gives the same answer
            return _checked_deep(bytes(raw))
        return value
    return _checked_deep(bytes(raw))


def _checked_deep(data: bytes) -> msgspec.Raw:
    value = data.strip(_JSON_WS)
    if not value:
        return EMPTY_RAW
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
