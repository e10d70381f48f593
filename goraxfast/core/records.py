"""The records that cross the rings between the parent and a worker.

Receipt handles never leave the parent: a delivery travels as a small slot id plus what the
handler needs, and comes back as the same slot id plus an outcome. Records are msgpack arrays
(``array_like``): no field names on the wire, encoders and decoders built once.
"""

from __future__ import annotations

import msgspec


class Delivery(msgspec.Struct, array_like=True, gc=False):
    """Parent → worker: run the handler on ``body``."""

    slot: int
    message_id: str
    receive_count: int
    first_received_ms: int
    sent_ms: int
    body: bytes
    #: Filled only while the engine traces (goraxfast.ops.tracing), and "" otherwise, so that the
    #: untraced path carries one empty string more than before (a record without it decodes
    #: with the default): the queue's name, then the message's W3C trace context when it
    #: carried one, newline-separated: ``queue[\ntraceparent[\ntracestate]]``. One field, not
    #: three: each field costs every delivery ~5 ns to encode and as much to decode.
    trace: str = ""


class Result(msgspec.Struct, array_like=True, gc=False):
    """Worker → parent: what became of ``slot`` (an :class:`~goraxfast.core.retry.Outcome` value)."""

    slot: int
    outcome: int
    delay_s: float = -1.0  # Retry(delay_s); -1 when not a retry
    reason: str = ""
    duration_ns: int = 0
    finished_ms: int = 0  # wall clock, for publish→handled latency
    #: when the handler started (CLOCK_MONOTONIC, shared by every process on the host): the
    #: parent's dwell, receive -> handler start; 0 for a delivery handed back unrun
    started_ns: int = 0


DELIVERY_ENCODER = msgspec.msgpack.Encoder()
DELIVERY_DECODER = msgspec.msgpack.Decoder(Delivery)
RESULT_ENCODER = msgspec.msgpack.Encoder()
RESULT_DECODER = msgspec.msgpack.Decoder(Result)
