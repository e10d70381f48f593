"""Log lines for operators: the text format people read, and one JSON object per line for log
pipelines (Loki, CloudWatch Logs, Elastic, Datadog), written so that the lines of a parent and
its forked workers sharing one stderr never mix within a line.

Only the ``goraxfast`` command installs these (:mod:`goraxfast.cli.main`); an application that
embeds the engine keeps its own logging and may use them on its own handlers.

Fields beyond the stdlib's come from attributes of the record: the ones a record is given with
``extra=`` and the ones :class:`goraxfast.worker.logcontext.MessageContext` adds in a worker
while a handler runs (:data:`CONTEXT_FIELDS`). This module knows their names, not where they
come from (a worker's context is a layer above).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

from goraxfast.version import installed_version

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "OneWriteHandler",
    "TextFormatter",
    "package_version",
]

#: The message a line is about, where there is one, in this order in both formats.
MESSAGE_FIELDS = ("message_id", "execution_id", "tenant_id", "receive_count")
#: Those, and the worker (its index) that logged the line.
CONTEXT_FIELDS = (*MESSAGE_FIELDS, "worker")
#: A mapping a record may carry that the text format writes out as ``KEY=value`` pairs
#: (the engine's start line: its whole configuration).
PAIRS_FIELD = "config"

_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",  # 3.12+
}
_OWN = frozenset(CONTEXT_FIELDS)
#: The JSON line's own fields: an ``extra=`` of one of these names is kept as ``extra_<name>``.
_RESERVED = frozenset(
    {"time", "level", "logger", "message", "pid", "exc_type", "exc_info", "stack"}
)
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


package_version = installed_version  # the start line, ``--version``


def _fallback(value: object) -> Any:
    """What orjson cannot serialise natively becomes its ``str()``: a log line must never fail
    because an ``extra=`` value is a Decimal, a Path or an exception."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _safe_text(text: str) -> str:
    """A str orjson takes: lone surrogates (a ``surrogateescape``-decoded name) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_value(value: object) -> Any:
    """``value`` if orjson takes it, else its repr made safe: ints past 64 bits, circular or too
    deeply nested structures, surrogates in a key."""
    try:
        orjson.dumps(value, default=_fallback, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        try:
            return _safe_text(repr(value))
        except Exception:
            return f"<{type(value).__name__}>"
    return value


_last_second: tuple[int, str] = (-1, "")


def rfc3339_ms(created: float) -> str:
    """``2025-03-04T05:06:07.089Z``: RFC 3339 in UTC with milliseconds (what Loki, CloudWatch
    and Elastic parse without a pattern). The text of the second is kept from the last call:
    strftime was half of a JSON line's formatting."""
    global _last_second
    seconds = math.floor(created)
    ms = min(int((created - seconds) * 1000), 999)
    cached_second, prefix = _last_second
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, prefix)
    return f"{prefix}.{ms:03d}Z"


def _message_of(record: logging.LogRecord) -> str:
    """The record's text, or (a call whose arguments do not fit its format) what was given and
    why it does not fit: the line is still written, and still one line."""
    try:
        return record.getMessage()
    except Exception as exc:
        return (
            f"{record.msg!r} % {record.args!r} "
            f"(the log call's arguments do not fit: {type(exc).__name__}: {exc})"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or a traceback are
    escaped by JSON): ``time``, ``level``, ``logger``, ``message``, then the message's ids and
    the worker where there are some, ``pid``, the record's ``extra=`` fields, and the exception
    as one string (``exc_type``, ``exc_info``) and a ``stack_info`` as ``stack``."""

    def format(self, record: logging.LogRecord) -> str:
        attrs = record.__dict__
        doc: dict[str, Any] = {
            "time": rfc3339_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message_of(record),
        }
        for name in CONTEXT_FIELDS:
            if name in attrs:
                doc[name] = attrs[name]
        doc["pid"] = record.process
        for name, value in attrs.items():
            if name not in _RECORD_ATTRS and name not in _OWN:
                doc[f"extra_{name}" if name in _RESERVED else name] = value
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            exc_type = record.exc_info[0]
            if exc_type is not None:
                doc["exc_type"] = exc_type.__name__
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        try:
            return orjson.dumps(doc, default=_fallback, option=_ORJSON_OPTIONS).decode()
        except (orjson.JSONEncodeError, TypeError, RecursionError):
            safe = {
                _safe_text(str(k)): _safe_text(v) if isinstance(v, str) else _safe_value(v)
                for k, v in doc.items()
            }
            return orjson.dumps(safe, default=_fallback, option=_ORJSON_OPTIONS).decode()


def _text_value(value: object) -> str:
    """A value as ``KEY=value`` shows it: as the environment would spell it, quoted when it
    holds a space, a quote or an ``=`` (logfmt), or is empty."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "auto"
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, Mapping):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    else:
        text = str(value)
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        return orjson.dumps(_safe_text(text)).decode()
    return text


class TextFormatter(logging.Formatter):
    """``2025-03-04 05:06:07,089 INFO myapp.jobs: handling x [message_id=... execution_id=...
    tenant_id=... receive_count=1 worker=0]``: the stdlib's line, then the ids of the message
    it is about, if any; a record's ``config`` mapping as ``KEY=value`` pairs after the text."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        attrs = record.__dict__
        pairs = attrs.get(PAIRS_FIELD)
        if isinstance(pairs, Mapping):
            text += " " + " ".join(f"{k}={_text_value(v)}" for k, v in pairs.items())
        if any(name in attrs for name in MESSAGE_FIELDS):
            ids = " ".join(f"{n}={attrs[n]}" for n in CONTEXT_FIELDS if n in attrs)
            text += f" [{ids}]"
        return text


class OneWriteHandler(logging.Handler):
    """Writes each record with one ``write(2)`` on the stream's file descriptor.

    The parent and every forked worker write to the same stderr: a record written in pieces
    could be split by another process's line. One call keeps it whole on a terminal and in a
    file (Linux holds the file position across a write), and on a pipe up to PIPE_BUF (4 KiB)
    by POSIX, and longer while the pipe's buffer (64 KiB) has room for it, as it does for a
    reader that keeps up. A short write (non-blocking or interrupted) is finished in further
    calls. A stream with no descriptor (a test's capture) gets a plain ``write``.
    """

    terminator = b"\n"

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = sys.stderr if stream is None else stream
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self.fd = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self.fd is None:
                self.stream.write(line + "\n")
                self.stream.flush()
                return
            data = line.encode("utf-8", "backslashreplace") + self.terminator
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()  # what print() or a traceback left buffered goes first
            _write_all(self.fd, data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a non-blocking stderr that is full: wait for room
            select.select([], [fd], [])
            continue
        view = view[written:]
