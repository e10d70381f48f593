"""The gorax ``ExecutionMessage``: the JSON body of every SQS message, byte-compatible with Go.

The wire format is a compatibility contract with the Go service (shared/SPEC.md §1), so the JSON
keys, omission rules and error texts here are fixed. ``trigger_data`` stays raw bytes end to end:
the engine never re-parses a payload it only passes through.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from goraxfast.errors import MessageDecodeError, ValidationError

#: Message attributes every published message carries (DataType String), besides correlation_id.
ATTRIBUTE_FIELDS = ("tenant_id", "workflow_id", "trigger_type")


class UTCTimestamp(datetime):
    """A UTC datetime that encodes as Go's RFC3339Nano does: ``Z`` suffix, trailing zeros trimmed.

    msgspec writes a plain datetime with all six sub-second digits; a subclass reaches our
    ``enc_hook`` instead, which trims them as Go does.
    """

    @classmethod
    def of(cls, value: datetime) -> UTCTimestamp:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        elif value.utcoffset():
            value = value.astimezone(UTC)
        return cls(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=UTC,
        )

    def rfc3339(self) -> str:
        base = f"{self.year:04d}-{self.month:02d}-{self.day:02d}T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        if self.microsecond:
            base += "." + f"{self.microsecond:06d}".rstrip("0")
        return base + "Z"


_ZERO_TIME = UTCTimestamp(1, 1, 1, tzinfo=UTC)


def _zero_time() -> UTCTimestamp:
    return _ZERO_TIME


#: The one empty ``trigger_data``: ``omit_defaults`` omits the default object itself, not an
#: equal one, so every empty payload is normalised to this instance.
_EMPTY_RAW = msgspec.Raw(b"")
#: Go's ``int`` is 64 bits: a larger number would be a body gorax itself cannot decode.
GoInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class ExecutionMessage(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One workflow execution to run. Field order and names match the Go struct's JSON tags.

    Required strings default to empty (as Go's decoder leaves them) so that a missing key is
    reported by :meth:`validate` with gorax's own texts rather than as a decode error.
    """

    # default_factory, not a plain default: omit_defaults never omits these, as Go never does
    execution_id: str = msgspec.field(default_factory=str)
    tenant_id: str = msgspec.field(default_factory=str)
    workflow_id: str = msgspec.field(default_factory=str)
    workflow_version: GoInt = msgspec.field(default_factory=int)
    trigger_type: str = msgspec.field(default_factory=str)
    trigger_data: msgspec.Raw = _EMPTY_RAW
    enqueued_at: datetime = msgspec.field(default_factory=_zero_time)
    retry_count: GoInt = 0
    correlation_id: str = ""

    def __post_init__(self) -> None:
        # msgspec already decodes a "Z" timestamp to an aware UTC datetime; only other offsets
        # and naive values are converted here (rebuilding every one cost ~1 µs per decode).
        # encode_message() turns the rest into UTCTimestamp when it writes.
        t = self.enqueued_at
        if t.tzinfo is not UTC:
            self.enqueued_at = UTCTimestamp.of(t)
        if self.trigger_data is not _EMPTY_RAW and not len(self.trigger_data):
            self.trigger_data = _EMPTY_RAW

    def _normalise(self) -> None:
        """UTC ``Z`` timestamps and one empty payload, however the fields were set."""
        if type(self.enqueued_at) is not UTCTimestamp:
            self.enqueued_at = UTCTimestamp.of(self.enqueued_at)
        if self.trigger_data is not _EMPTY_RAW and not len(self.trigger_data):
            self.trigger_data = _EMPTY_RAW

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
        """Build a message enqueued ``now`` (UTC) with ``retry_count`` 0, as gorax's constructor does.

        ``trigger_data`` must already be JSON bytes; :class:`goraxfast.adapter.PublisherAdapter`
        converts other shapes.
        """
        raw = (
            trigger_data
            if isinstance(trigger_data, msgspec.Raw)
            else msgspec.Raw(trigger_data or b"")
        )
        return cls(
            execution_id=execution_id if execution_id is not None else str(uuid.uuid4()),
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            workflow_version=workflow_version,
            trigger_type=trigger_type,
            trigger_data=raw,
            enqueued_at=UTCTimestamp.of(now or datetime.now(UTC)),
            correlation_id=correlation_id,
        )

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
        """``trigger_data`` parsed; for callers that want it (the engine never needs to)."""
        raw = bytes(self.trigger_data)
        return msgspec.json.decode(raw) if raw else None


def validation_problem(msg: ExecutionMessage) -> str | None:
    """The first broken rule as gorax words it, or ``None``: an expected result, not an error."""
    if not msg.execution_id:
        return "execution_id is required"
    if not msg.tenant_id:
        return "tenant_id is required"
    if not msg.workflow_id:
        return "workflow_id is required"
    if msg.workflow_version <= 0:
        return "workflow_version must be greater than 0"
    if not msg.trigger_type:
        return "trigger_type is required"
    return None


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, UTCTimestamp):
        return obj.rfc3339()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


#: The one module-level encoder/decoder pair (msgspec: create them once, reuse them).
_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.json.Decoder(ExecutionMessage)


def encode_message(msg: ExecutionMessage) -> bytes:
    """The JSON body exactly as the Go service writes it."""
    msg._normalise()  # fields may have been assigned after construction
    return _ENCODER.encode(msg)


def decode_message(body: bytes | str, *, validate: bool = True) -> ExecutionMessage:
    """Decode (and by default validate) one body.

    Raises :class:`MessageDecodeError` naming the field for wrong types, ``null``, non-objects,
    malformed JSON and invalid UTF-8; :class:`ValidationError` with gorax's texts for broken rules.
    """
    try:
        if isinstance(body, bytes) and not body.isascii():
            # msgspec checks the UTF-8 of the strings it decodes, not of raw trigger_data or
            # skipped keys; the spec makes any invalid UTF-8 a decode error.
            body.decode("utf-8")
        msg = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise MessageDecodeError(f"invalid message: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MessageDecodeError(f"invalid message: {exc}") from exc
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise MessageDecodeError(f"invalid message: {_utf8_problem(body)}") from exc
    if validate:
        problem = validation_problem(msg)
        if problem is not None:
            raise ValidationError(problem)
    return msg


#: Decode a body that :func:`decode_message` has already accepted (the worker's case: the parent
#: decodes and validates every body before dispatching it), without its checks: msgspec's own
#: decoder, with no Python call around it.
decode_trusted_message: Callable[[bytes], ExecutionMessage] = _DECODER.decode


def _utf8_problem(body: bytes | str) -> str:
    """Name the field holding invalid UTF-8 (cold path: only after a decode already failed)."""
    text = body if isinstance(body, str) else body.decode("utf-8", "surrogateescape")
    try:
        loose = json.loads(text)
    except ValueError:
        return "body is not valid UTF-8"
    if isinstance(loose, dict):
        for key, value in loose.items():
            if _has_surrogate(key) or _has_surrogate(value):
                return f"invalid UTF-8 in field `{key}`"
    return "body is not valid UTF-8"


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False
