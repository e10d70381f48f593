"""OpenTelemetry tracing, when the application traces: the whole integration, in one module.

The switch is OpenTelemetry's own convention for libraries: goraxfast makes spans when the
application has set a tracer provider (``trace.set_tracer_provider``, or a distro /
``opentelemetry-instrument``), and does nothing otherwise. :func:`enabled` is false when
``opentelemetry.trace`` was never imported (so goraxfast never imports it: an application that
configured a provider has necessarily imported it), when ``OTEL_SDK_DISABLED=true``, and while
the global provider is still the API's default proxy or its no-op one. Each part asks once, when
it is built (a publisher, the fast client, the dispatcher, the bound handler: so the provider is
to be set before them, as any instrumentation asks), and when the answer is no it runs exactly
the code it ran before tracing existed.

What is traced, named after OpenTelemetry's messaging semantic conventions (the current ones:
``{operation} {queue}`` span names, ``messaging.system=aws_sqs``):

- publishing: ``send {queue}``. One message: a PRODUCER span whose context is the message's
  creation context. A batch: a CLIENT span (``messaging.batch.message_count``) with one
  ``create {queue}`` PRODUCER span per message inside it, each the creation context of its own
  message, ended with its SQS message id (or its failure) when the call returns.
- the creation context travels as W3C Trace Context in two message attributes, ``traceparent``
  and ``tracestate``, only when they fit: SQS's 10 attributes per message and the queue's
  size limit, counted with the body. A message that would not fit with them is sent without
  them (``goraxfast.trace_context_dropped`` on its span): tracing never makes a publish fail.
- consuming: the parent copies the two attributes into the delivery (``Delivery.trace``); the
  worker runs the handler inside a CONSUMER span ``process {queue}`` that *links* to the
  producer's context (the conventions' default: the handler may run hours later, after
  retries, and each attempt is a trace of its own rather than a growth of the publisher's).
  A handler's own spans are children of it. Failures are recorded (exception, ERROR status,
  ``error.type``); Retry and Reject are events.
- the fast client's SQS calls: CLIENT spans named and attributed as
  opentelemetry-instrumentation-botocore names botocore's (``SQS.ReceiveMessage``,
  ``rpc.system=aws-api``, ``rpc.service=SQS``, ``rpc.method``), plus the messaging attributes.
  The botocore client is botocore's instrumentation's to trace.

Forked workers: the SDK re-creates a ``BatchSpanProcessor``'s export thread in each child
(``os.register_at_fork``, the queue it copied emptied, so no span is exported twice), so a
provider set before the engine forks works in its workers. A worker leaves by ``os._exit``,
which runs no ``atexit``: :func:`flush` sends what a processor still holds, for a worker's exit
path to call; spans a worker held when it was killed (SIGKILL: a timeout, a forced stop) are
lost, as is the span of the handler it was running.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from goraxfast.core.sqs_model import (
    SQS_MAX_ATTRIBUTES,
    BatchResult,
    attributes_size,
    queue_name_of,
)
from goraxfast.errors import SQSError
from goraxfast.version import installed_version

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, Tracer, TracerProvider

    from goraxfast.core.message import ExecutionMessage
    from goraxfast.core.records import Delivery

__all__ = [
    "CURRENT_CALL",
    "TRACEPARENT",
    "TRACESTATE",
    "ClientCall",
    "PublishSpans",
    "carried",
    "enabled",
    "end_processing",
    "fit_trace_context",
    "flush",
    "queue_name",
    "start_processing",
    "tracer",
]

#: The instrumentation scope of every goraxfast span.
SCOPE = "goraxfast"
#: W3C Trace Context's two fields, as SQS message attribute names (what other SQS
#: instrumentations use, so a consumer other than goraxfast finds them too).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Longest values taken from a received message: a version-00 traceparent is 55 characters
#: (later versions may append fields); W3C asks vendors to propagate at least 512 of tracestate.
TRACEPARENT_MAX_CHARS = 128
TRACESTATE_MAX_CHARS = 512
#: ``messaging.system`` for SQS.
SYSTEM = "aws_sqs"
#: The environment variable with which OpenTelemetry turns its SDK off; honoured here too.
SDK_DISABLED = "OTEL_SDK_DISABLED"

#: ``messaging.operation.type`` of the fast client's SQS actions (the others have none).
OPERATION_TYPES = {
    "ReceiveMessage": "receive",
    "DeleteMessage": "settle",
    "DeleteMessageBatch": "settle",
    "ChangeMessageVisibility": "settle",
    "ChangeMessageVisibilityBatch": "settle",
    "SendMessage": "send",
    "SendMessageBatch": "send",
}

_tracer_of: tuple[object, Tracer] | None = None


class _OTel:
    """The OpenTelemetry API as this module uses it, imported on first use (never by goraxfast
    unless the application imported it: see :func:`enabled`) and kept, so a span pays no
    import statements."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.context = context
        self.trace = trace
        self.propagator = TraceContextTextMapPropagator()
        self.error = trace.StatusCode.ERROR


_otel_cache: _OTel | None = None


def _otel() -> _OTel:
    global _otel_cache
    if _otel_cache is None:
        _otel_cache = _OTel()
    return _otel_cache


def enabled() -> bool:
    """Whether spans are to be made: OpenTelemetry is imported, the application has set a
    tracer provider, and ``OTEL_SDK_DISABLED`` is not true. ~0.04 µs when OpenTelemetry is not
    imported, ~0.5 µs when it is but no provider is set (callers ask once, when built)."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return False
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return False
    return os.environ.get(SDK_DISABLED, "").strip().lower() != "true"


def tracer() -> Tracer:
    """goraxfast's tracer from the global provider (made again only if the provider changed)."""
    global _tracer_of
    provider = _otel().trace.get_tracer_provider()
    if _tracer_of is None or _tracer_of[0] is not provider:
        _tracer_of = (provider, provider.get_tracer(SCOPE, installed_version()))
    return _tracer_of[1]


def flush(timeout_s: float = 5.0) -> bool:
    """Export the spans a processor still holds (a worker about to ``os._exit``; a test).

    True when there was nothing to do or everything went out within ``timeout_s``.
    """
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return True
    provider: TracerProvider = api.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)  # the SDK's; the API has none
    if force_flush is None:
        return True
    return bool(force_flush(int(timeout_s * 1000)))


#: ``messaging.destination.name``: the queue's name, the last part of its URL.
queue_name = queue_name_of


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def fit_trace_context(
    attributes: dict[str, Any], context: Mapping[str, str], room_bytes: int
) -> str:
    """Add ``context`` (traceparent, tracestate) to a message's ``attributes`` as far as SQS
    allows; what was left out and why ("" when nothing was).

    SQS counts attribute names, types and values against the message size and allows
    :data:`~goraxfast.core.sqs_model.SQS_MAX_ATTRIBUTES` of them: ``room_bytes`` is what the
    body and the other attributes leave of the limit. tracestate goes first (a trace is still
    linked without it); without room for traceparent, nothing is added.
    """
    parent = context.get(TRACEPARENT)
    if not parent:
        return ""
    wanted = {TRACEPARENT: _string(parent)}
    state = context.get(TRACESTATE)
    if state:
        wanted[TRACESTATE] = _string(state)
    while wanted:
        count = len(attributes) + sum(1 for name in wanted if name not in attributes)
        if count <= SQS_MAX_ATTRIBUTES and attributes_size(wanted) <= room_bytes:
            attributes.update(wanted)
            return "" if len(wanted) == len(context) or not state else "tracestate: no room"
        if TRACESTATE in wanted:
            del wanted[TRACESTATE]
            continue
        break
    limit = "attributes" if count > SQS_MAX_ATTRIBUTES else "size"
    return f"trace context: no room ({limit})"


def carried(queue: str, attributes: Mapping[str, Any]) -> str:
    """``Delivery.trace`` for a received message: the queue's name, then the trace context the
    message carries (``queue``, ``queue\ntraceparent`` or ``queue\ntraceparent\ntracestate``).

    Received attributes are whatever a producer sent: anything not a string of a sane length
    is left out here rather than handed to a worker.
    """
    parent = _value(attributes.get(TRACEPARENT), TRACEPARENT_MAX_CHARS)
    if not parent:
        return queue
    state = _value(attributes.get(TRACESTATE), TRACESTATE_MAX_CHARS)
    return f"{queue}\n{parent}\n{state}" if state else f"{queue}\n{parent}"


def _value(attribute: object, longest: int) -> str:
    if not isinstance(attribute, Mapping):
        return ""
    value = attribute.get("StringValue")
    if not isinstance(value, str) or len(value) > longest or "\n" in value:
        return ""
    return value


def _links(parent: str, state: str) -> list[Link]:
    """A link to the producer's context (none when absent or invalid)."""
    if not parent:
        return []
    o = _otel()
    carrier = {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}
    span_context = o.trace.get_current_span(o.propagator.extract(carrier)).get_span_context()
    return [o.trace.Link(span_context)] if span_context.is_valid else []


def _inject(span: Span) -> dict[str, str]:
    o = _otel()
    carrier: dict[str, str] = {}
    o.propagator.inject(carrier, o.trace.set_span_in_context(span))
    return carrier


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, SQSError) and exc.code:
        return exc.code
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _record_error(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", _error_type(exc))
    _set_error(span, f"{type(exc).__name__}: {exc}")


def _set_error(span: Span, description: str) -> None:
    o = _otel()
    span.set_status(o.trace.Status(o.error, description[:1000]))


def _messaging(queue: str, operation: str, kind: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": queue,
    }


def _message_attributes(msg: ExecutionMessage) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "goraxfast.execution_id": msg.execution_id,
        "goraxfast.tenant_id": msg.tenant_id,
        "goraxfast.workflow_id": msg.workflow_id,
    }
    if msg.correlation_id:
        attributes["messaging.message.conversation_id"] = msg.correlation_id
    return attributes


# --- publishing ----------------------------------------------------------------------------------


class PublishSpans:
    """The spans of one publish call; the publisher enters it around the whole call."""

    def __init__(self, queue_url: str, msgs: Sequence[ExecutionMessage]) -> None:
        self.queue = queue_name(queue_url)
        self.queue_url = queue_url
        self.msgs = msgs
        self.batch = len(msgs) != 1
        self.send: Span | None = None
        self.creates: list[Span] = []
        self._token: Token[Context] | None = None

    def __enter__(self) -> PublishSpans:
        t = tracer()
        attributes = _messaging(self.queue, "send", "send")
        attributes["aws.sqs.queue.url"] = self.queue_url
        if self.batch:
            attributes["messaging.batch.message_count"] = len(self.msgs)
        else:
            attributes.update(_message_attributes(self.msgs[0]))
        o = _otel()
        kind = o.trace.SpanKind.CLIENT if self.batch else o.trace.SpanKind.PRODUCER
        self.send = t.start_span(f"send {self.queue}", kind=kind, attributes=attributes)
        self._token = o.context.attach(o.trace.set_span_in_context(self.send))
        if self.batch:
            base = _messaging(self.queue, "create", "create")
            self.creates = [
                t.start_span(
                    f"create {self.queue}",
                    kind=o.trace.SpanKind.PRODUCER,
                    attributes={**base, **_message_attributes(m)},
                )
                for m in self.msgs
            ]
        return self

    def inject(self, index: int, attributes: dict[str, Any], room_bytes: int) -> None:
        """Put message ``index``'s creation context into its SQS ``attributes`` if it fits."""
        span = self.creates[index] if self.batch else self.send
        assert span is not None
        left_out = fit_trace_context(attributes, _inject(span), room_bytes)
        if left_out:
            span.set_attribute("goraxfast.trace_context_dropped", left_out)

    def sent_one(self, message_id: str) -> str:
        if self.send is not None:
            self.send.set_attribute("messaging.message.id", message_id)
        return message_id

    def settled(self, result: BatchResult) -> None:
        """Each message's span gets its SQS message id, or its failure."""
        failed = {f.id: f for f in result.failed}
        for index, span in enumerate(self.creates):
            key = str(index)
            message_id = result.message_ids.get(key)
            if message_id is not None:
                span.set_attribute("messaging.message.id", message_id)
            elif key in failed:
                f = failed[key]
                span.set_attribute("error.type", f.code or "_OTHER")
                _set_error(span, f"{f.code}: {f.message}")
        if result.failed and self.send is not None:
            self.send.set_attribute("goraxfast.failed_count", len(result.failed))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            for span in self.creates:
                if span.is_recording():
                    _record_error(span, exc)
            if self.send is not None:
                _record_error(self.send, exc)
        for span in self.creates:
            span.end()
        if self._token is not None:
            _otel().context.detach(self._token)
        if self.send is not None:
            self.send.end()


# --- the worker ----------------------------------------------------------------------------------


def start_processing(delivery: Delivery, msg: ExecutionMessage) -> tuple[Span, Token[Context]]:
    """Open the handler's ``process {queue}`` CONSUMER span and make it current; returns the
    span and the token :func:`end_processing` needs."""
    o = _otel()
    queue, _, context_carried = delivery.trace.partition("\n")
    parent, _, state = context_carried.partition("\n")
    attributes = _messaging(queue, "process", "process")
    attributes["messaging.message.id"] = delivery.message_id
    attributes["goraxfast.receive_count"] = delivery.receive_count
    attributes.update(_message_attributes(msg))
    span = tracer().start_span(
        f"process {queue}" if queue else "process",
        kind=o.trace.SpanKind.CONSUMER,
        links=_links(parent, state),
        attributes=attributes,
    )
    return span, o.context.attach(o.trace.set_span_in_context(span))


def end_processing(
    span: Span,
    token: Token[Context],
    exc: BaseException | None,
    outcome: str,
    reason: str = "",
    delay_s: float = -1.0,
) -> None:
    """Close the span with the handler's outcome: ``success``, ``retry`` (an event with the
    delay), ``reject`` (an event, and ERROR: the message goes to the DLQ), ``fail`` (the
    exception recorded, ERROR)."""

    try:
        span.set_attribute("goraxfast.outcome", outcome)
        if outcome == "retry":
            span.add_event(
                "goraxfast.retry", {"goraxfast.retry.delay_s": delay_s, "goraxfast.reason": reason}
            )
        elif outcome == "reject":
            span.add_event("goraxfast.reject", {"goraxfast.reason": reason})
            span.set_attribute("error.type", "goraxfast.Reject")
            _set_error(span, reason)
        elif exc is not None:
            _record_error(span, exc)
    finally:
        _otel().context.detach(token)
        span.end()


# --- the fast client's SQS calls -----------------------------------------------------------------


class ClientCall:
    """The CLIENT span of one SQS call (all its attempts), current while it runs: the HTTP
    layer finds it through :data:`CURRENT_CALL` to report each exchange."""

    __slots__ = ("_call_token", "_token", "attempts", "span")

    def __init__(
        self, operation: str, queue_url: str, region: str, host: str, port: int | None
    ) -> None:
        o = _otel()
        attributes: dict[str, Any] = {
            "rpc.system": "aws-api",
            "rpc.service": "SQS",
            "rpc.method": operation,
            "cloud.region": region,
            "server.address": host,
            "aws.sqs.queue.url": queue_url,
            "messaging.system": SYSTEM,
            "messaging.operation.name": operation,
            "messaging.destination.name": queue_name(queue_url),
        }
        if port is not None:
            attributes["server.port"] = port
        kind = OPERATION_TYPES.get(operation)
        if kind is not None:
            attributes["messaging.operation.type"] = kind
        self.span = tracer().start_span(
            f"SQS.{operation}", kind=o.trace.SpanKind.CLIENT, attributes=attributes
        )
        self.attempts = 0
        self._token = o.context.attach(o.trace.set_span_in_context(self.span))
        self._call_token = CURRENT_CALL.set(self)

    def answered(self, status: int, request_id: str | None) -> None:
        """One HTTP exchange of the call came back (each attempt reports)."""
        self.attempts += 1
        self.span.set_attribute("http.response.status_code", status)
        if request_id:
            self.span.set_attribute("aws.request_id", request_id)

    def end(self, exc: BaseException | None, attributes: Mapping[str, Any] | None = None) -> None:
        try:
            if attributes:
                self.span.set_attributes(attributes)
            if self.attempts > 1:
                self.span.set_attribute("goraxfast.retries", self.attempts - 1)
            if exc is not None:
                _record_error(self.span, exc)
        finally:
            CURRENT_CALL.reset(self._call_token)
            _otel().context.detach(self._token)
            self.span.end()


#: The SQS call running in this context (set by :class:`ClientCall`).
CURRENT_CALL: ContextVar[ClientCall | None] = ContextVar("goraxfast_sqs_call", default=None)
