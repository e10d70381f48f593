"""Publish from plain mappings (request bodies, task kwargs) without building messages by hand.

Callers hand over whatever their framework decoded, so every field is checked for its type here
and a wrong one is reported by name as a :class:`MessageDecodeError`, never as an unrelated
KeyError or TypeError; missing required fields give gorax's own :class:`ValidationError` texts.

``trigger_data`` shapes (the wire keeps it as raw JSON: the README's "Compatibility with gorax's wire format"):

- ``bytes`` / ``bytearray`` / ``memoryview``: raw JSON bytes, checked to be valid UTF-8 JSON and
  sent byte for byte;
- ``str``: raw JSON text, checked the same way (so ``"hello"`` is refused: JSON text would be
  ``'"hello"'``);
- absent, ``None`` or empty raw input: no trigger data (the key is omitted, as Go omits a nil
  ``json.RawMessage``); to send a JSON ``null``, pass ``b"null"``;
- anything else (dict, list, number, bool, ...): encoded as JSON with msgspec.

``workflow_version`` takes any integral value (``int``, numpy integers: anything with
``__index__``), never a bool, float or string. Unknown keys are ignored, as on the wire.

``message_group_id`` (optional string) is not part of the message: it is passed to the
publisher as the message's MessageGroupId, instead of the one its grouping would choose (see
:class:`goraxfast.publish.publisher.Grouping`; required when ``QUEUE_FIFO_GROUP_BY=caller``).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from goraxfast.core.message import ExecutionMessage, checked_trigger_data
from goraxfast.errors import MessageDecodeError, MessageEncodeError, ValidationError
from goraxfast.publish.publisher import Publisher, PublishResult

_RAW_JSON = bytes | bytearray | memoryview
_GO_INT_MAX = 2**63 - 1  # gorax's consumer decodes workflow_version into a Go int


def _type_name(value: Any) -> str:
    return type(value).__name__


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MessageDecodeError(f"`{key}` must be a string, got {_type_name(value)}")
    return value


def _version(data: Mapping[str, Any]) -> int:
    value = data.get("workflow_version")
    if value is None:
        return 0  # validation then reports gorax's "workflow_version must be greater than 0"
    if isinstance(value, bool | str | bytes | float):
        raise MessageDecodeError(
            f"`workflow_version` must be an integer, got {_type_name(value)} {value!r}"
        )
    try:
        version = operator.index(value)
    except TypeError:
        raise MessageDecodeError(
            f"`workflow_version` must be an integer, got {_type_name(value)}"
        ) from None
    if version > _GO_INT_MAX:
        raise MessageDecodeError(f"`workflow_version` {version} does not fit Go's 64-bit int")
    return version


def _trigger_data(data: Mapping[str, Any]) -> msgspec.Raw:
    value = data.get("trigger_data")
    if value is None:
        return msgspec.Raw(b"")
    if isinstance(value, str | _RAW_JSON):
        shape = "str" if isinstance(value, str) else _type_name(value)
        try:
            raw = value.encode() if isinstance(value, str) else bytes(value)
        except UnicodeEncodeError:
            raise MessageDecodeError(
                f"`trigger_data` given as {shape} is not valid UTF-8"
            ) from None
        if not raw:
            return msgspec.Raw(b"")
        try:
            return checked_trigger_data(raw)  # one JSON value Go reads, at any depth Go allows
        except MessageEncodeError as exc:
            raise MessageDecodeError(
                f"`trigger_data` given as {shape} must be a JSON document: {exc}"
            ) from exc
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError, RecursionError) as exc:
        # RecursionError: nested deeper than Python can encode, or a container holding itself
        raise MessageDecodeError(
            f"`trigger_data` of type {_type_name(value)} cannot be encoded as JSON: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        return checked_trigger_data(encoded)
    except MessageEncodeError as exc:
        raise MessageDecodeError(f"`trigger_data` of type {_type_name(value)}: {exc}") from exc


def build_message(data: Mapping[str, Any], *, now: datetime | None = None) -> ExecutionMessage:
    """An ExecutionMessage from a plain mapping; type errors name their field, then validation."""
    if not isinstance(data, Mapping):
        raise MessageDecodeError(f"execution data must be a mapping, got {_type_name(data)}")
    execution_id = data.get("execution_id")
    if execution_id is None:
        execution_id = str(uuid.uuid4())
    elif not isinstance(execution_id, str):
        raise MessageDecodeError(f"`execution_id` must be a string, got {_type_name(execution_id)}")
    msg = ExecutionMessage.new(
        execution_id=execution_id,
        tenant_id=_string(data, "tenant_id"),
        workflow_id=_string(data, "workflow_id"),
        workflow_version=_version(data),
        trigger_type=_string(data, "trigger_type"),
        trigger_data=_trigger_data(data),
        correlation_id=_string(data, "correlation_id"),
        now=now,
    )
    msg.validate()
    return msg


def group_id_of(data: Mapping[str, Any]) -> str | None:
    """The ``message_group_id`` a mapping carries, if any (a string, or absent / None); call
    it after :func:`build_message` accepted the mapping."""
    value = data.get(GROUP_ID_KEY)
    if value is None or isinstance(value, str):
        return value
    raise MessageDecodeError(f"`{GROUP_ID_KEY}` must be a string, got {_type_name(value)}")


#: The key of a mapping that gives its message's MessageGroupId.
GROUP_ID_KEY = "message_group_id"


class PublisherAdapter:
    """Publishes plain mappings through a :class:`Publisher`."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, data: Mapping[str, Any]) -> str:
        """Publish one mapping; the SQS MessageId."""
        msg = build_message(data)
        return await self.publisher.publish(msg, group_id=group_id_of(data))

    async def publish_many(self, items: Iterable[Mapping[str, Any]]) -> PublishResult:
        """Build every message first (nothing is sent if one is bad), then publish in batches."""
        msgs = []
        groups: list[str | None] = []
        for index, data in enumerate(items):
            try:
                msgs.append(build_message(data))
                groups.append(group_id_of(data))
            except (MessageDecodeError, ValidationError) as exc:
                raise type(exc)(f"item {index}: {exc}") from exc
        return await self.publisher.publish_batch(msgs, group_ids=groups)
