"""Reading a message body as gorax's Go service reads it, totally: whatever bytes arrive,
:func:`decode_message` returns an :class:`~goraxfast.core.message_model.ExecutionMessage` or
raises :class:`MessageError` (never ``RecursionError``, ``OverflowError`` or anything else), at a
bounded cost (:data:`MAX_BODY_BYTES`, the nesting limits of :mod:`goraxfast.core.jsonbounds`,
iterative scanning where msgspec's recursive decoder would need a deep stack); plus the two
cheaper roads that give the same verdict: :func:`accepted_tenant` for the parent and
:func:`decode_trusted_message` for a worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from goraxfast.core.gotime import is_known_go_time
from goraxfast.core.jsonbounds import (
    MAX_NESTING_DEPTH,
    SHORT_BODY_BYTES,
    JSONProblem,
    TooDeep,
    fits_msgspec,
    scan_object,
)
from goraxfast.core.message_model import (
    EMPTY_RAW,
    MAX_BODY_BYTES,
    ExecutionMessage,
    GoInt,
    validation_problem,
)
from goraxfast.errors import MessageDecodeError, MessageError, ValidationError


class _NullableMessage(msgspec.Struct, kw_only=True):
    """The same fields, each of which may also be JSON ``null``: Go's decoder leaves a field it
    reads ``null`` for at its zero value, so gorax reads such a body (and then validates it)."""

    execution_id: str | None = None
    tenant_id: str | None = None
    workflow_id: str | None = None
    workflow_version: GoInt | None = None
    trigger_type: str | None = None
    trigger_data: msgspec.Raw = EMPTY_RAW  # null stays raw `null`, as in Go's json.RawMessage
    enqueued_at: str | None = None
    retry_count: GoInt | None = None
    correlation_id: str | None = None


_FIELDS = ExecutionMessage.__struct_fields__


#: The module-level decoders (msgspec: create them once, reuse them).
_DECODER = msgspec.json.Decoder(ExecutionMessage)
_NULLABLE_DECODER = msgspec.json.Decoder(_NullableMessage)


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
    trigger_data: msgspec.Raw = EMPTY_RAW
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
