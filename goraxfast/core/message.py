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

This module is where all of it is imported from; the work is done in two beside it:
:mod:`goraxfast.core.message_model` (the struct, gorax's validation rules, encoding) and
:mod:`goraxfast.core.message_decode` (decoding, and the parent's and the workers' cheaper roads
to the same verdict).
"""

from __future__ import annotations

from goraxfast.core.gotime import UTCTimestamp
from goraxfast.core.jsonbounds import MAX_NESTING_DEPTH
from goraxfast.core.message_decode import (
    accepted_tenant,
    decode_message,
    decode_trusted_message,
)
from goraxfast.core.message_model import (
    ATTRIBUTE_FIELDS,
    GO_INT_MAX,
    GO_INT_MIN,
    MAX_BODY_BYTES,
    ExecutionMessage,
    GoInt,
    checked_trigger_data,
    encode_message,
    validation_problem,
)

__all__ = [
    "ATTRIBUTE_FIELDS",
    "GO_INT_MAX",
    "GO_INT_MIN",
    "MAX_BODY_BYTES",
    "MAX_NESTING_DEPTH",
    "ExecutionMessage",
    "GoInt",
    "UTCTimestamp",
    "accepted_tenant",
    "checked_trigger_data",
    "decode_message",
    "decode_trusted_message",
    "encode_message",
    "validation_problem",
]
