"""What one JSON body may cost, and a scanner that reads any depth without recursion.

msgspec's decoder is recursive in C: one C frame per level of nesting (~32 bytes of stack,
measured) and one count against Python's recursion limit. Under the default limit of 1,000 it
therefore stops itself with ``RecursionError`` within ~32 KiB of C stack, whatever the body;
goraxfast answers that ``RecursionError`` with :func:`scan_object`, an iterative scanner
(regular expressions for the flat parts, a Python loop for each nested container) as strict as
msgspec about JSON, so the answer for a body never depends on the caller's stack or recursion
limit. Where msgspec could instead run past the C stack (a crash, not an exception): under a
raised recursion limit, or with threads of less than 64 KiB of stack, only bodies proven at most
:data:`MSGSPEC_MAX_DEPTH` deep (8 KiB of C stack) go to msgspec (:func:`fits_msgspec`).

The limits and why:

- :data:`MAX_NESTING_DEPTH` = 10,000: Go's ``encoding/json`` refuses deeper (``maxNestingDepth``,
  "exceeded max depth"), counting the message object itself as level 1; so does goraxfast, with
  a reason naming the field.
- Body size: :data:`goraxfast.core.message.MAX_BODY_BYTES` (SQS's hard limit).
- Numbers and strings have no limit of their own: Go has none, msgspec reads them in linear time
  without converting those it skips, and the body size bounds them; the integer fields are held
  to Go's int64 where they are decoded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import accumulate
from sys import getrecursionlimit as _recursion_limit
from threading import stack_size as _thread_stack_size

#: Go's encoding/json limit (``maxNestingDepth``), the message object counted as level 1.
MAX_NESTING_DEPTH = 10_000
#: The deepest body given to msgspec's recursive decoder: ~8 KiB of C stack at most, and far
#: inside the default recursion limit of 1,000. Real payloads are a few levels deep.
MSGSPEC_MAX_DEPTH = 256
#: Python's default recursion limit: msgspec counts each level against it, so under this limit it
#: raises RecursionError (answered by the iterative scanner) before using ~32 KiB of C stack.
STACK_SAFE_RECURSION_LIMIT = 1_000
#: Threads with less stack than this could overflow before that RecursionError (measured: a
#: 32 KiB thread, Python's minimum, crashes at ~830 levels; a 64 KiB one holds ~1,850).
SAFE_THREAD_STACK_BYTES = 64 * 1024
#: A body this short cannot be nested deeper than MSGSPEC_MAX_DEPTH (each level takes 2 bytes).
SHORT_BODY_BYTES = 2 * MSGSPEC_MAX_DEPTH

_WS = rb"[ \t\n\r]*+"
# msgspec's strings: no raw control characters, the JSON escapes only, \u surrogates in pairs.
_STRING = (
    rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4}'
    rb'|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*+"'
)
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_SCALAR = rb"(?:" + _STRING + rb"|" + _NUMBER + rb"|true|false|null)"
_FLAT_ARRAY = rb"\[" + _WS + rb"(?:\]|(?:" + _SCALAR + _WS + rb"," + _WS + rb")*+" + _SCALAR
_FLAT_ARRAY += _WS + rb"\])"
_MEMBER = _STRING + _WS + rb":" + _WS
_FLAT_OBJECT = rb"\{" + _WS + rb"(?:\}|(?:" + _MEMBER + _SCALAR + _WS + rb"," + _WS + rb")*+"
_FLAT_OBJECT += _MEMBER + _SCALAR + _WS + rb"\})"
# A flat value: a scalar, or a container of scalars (read in C, one level below the current).
_FLAT = rb"(?:" + _SCALAR + rb"|" + _FLAT_ARRAY + rb"|" + _FLAT_OBJECT + rb")"

_ws_match = re.compile(_WS).match
_scalar = re.compile(_SCALAR).match
_member = re.compile(_MEMBER).match
_key = re.compile(_STRING).match
# Runs of "value," inside an array and of "key: value," inside an object: the flat elements of a
# container are read in C, so the Python loop turns once per nested container, not per element.
_array_run = re.compile(rb"(?:" + _FLAT + _WS + rb"," + _WS + rb")*+").match
_object_run = re.compile(rb"(?:" + _MEMBER + _FLAT + _WS + rb"," + _WS + rb")*+").match
_scalar_array_run = re.compile(rb"(?:" + _SCALAR + _WS + rb"," + _WS + rb")*+").match
_scalar_object_run = re.compile(rb"(?:" + _MEMBER + _SCALAR + _WS + rb"," + _WS + rb")*+").match


def _ws(body: bytes, pos: int) -> int:
    """The position after the blanks at ``pos``."""
    return _always(_ws_match, body, pos)


def _always(match: Callable[[bytes, int], re.Match[bytes] | None], body: bytes, pos: int) -> int:
    """The end of a match of a pattern that also matches the empty string."""
    m = match(body, pos)
    assert m is not None
    return m.end()


_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 / -1 as signed chars

_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT, _COMMA, _COLON = b"[]{},:"


class JSONProblem(ValueError):
    """The body is not one JSON value msgspec (and Go) would read; ``offset`` is where."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (byte {offset})")
        self.reason = reason
        self.offset = offset


class TooDeep(JSONProblem):
    """Nested deeper than MAX_NESTING_DEPTH; ``key_span`` is the top-level key it happened under."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", offset)
        self.key_span: tuple[int, int] | None = None


def fits_msgspec(body: bytes) -> bool:
    """Whether msgspec's recursive decoder may be given ``body``: cheap, and never wrong.

    Yes for a short body. Yes, whatever its depth, while the recursion limit is at most
    STACK_SAFE_RECURSION_LIMIT and threads get at least SAFE_THREAD_STACK_BYTES: msgspec then
    stops itself with RecursionError, which the caller answers with :func:`scan_object` (so a
    wide payload of many small objects keeps msgspec's speed). Otherwise, where a hostile body
    could take msgspec past the C stack, only if it is provably at most MSGSPEC_MAX_DEPTH deep
    (:func:`at_most_msgspec_depth`).
    """
    if len(body) <= SHORT_BODY_BYTES:
        return True
    if _recursion_limit() <= STACK_SAFE_RECURSION_LIMIT and not (
        0 < _configured_thread_stack() < SAFE_THREAD_STACK_BYTES
    ):
        return True  # two calls in constant time, where counting costs ~1 ns a byte
    return at_most_msgspec_depth(body)


def at_most_msgspec_depth(body: bytes) -> bool:
    """Whether ``body`` is provably nested at most MSGSPEC_MAX_DEPTH levels (cheap for most)."""
    if len(body) <= SHORT_BODY_BYTES or body.count(b"[") + body.count(b"{") <= MSGSPEC_MAX_DEPTH:
        return True
    return _bracket_depth(body) <= MSGSPEC_MAX_DEPTH


def _bracket_depth(body: bytes) -> int:
    """The deepest nesting of brackets outside strings (an upper bound for broken JSON)."""
    skeleton = _STRINGS.sub(b"", body).translate(_SIGNS, _NOT_BRACKETS)
    return max(accumulate(memoryview(skeleton).cast("b")), default=0)


def _configured_thread_stack() -> int:
    """``threading.stack_size()``: the stack new threads get (0: the platform's default, 8 MiB on
    Linux). Asking without an argument also resets it to 0, so it is set back at once."""
    size = _thread_stack_size()
    if size:
        _thread_stack_size(size)
    return size


#: One member of the top-level object: key and value spans, and whether the value is a container.
Member = tuple[int, int, int, int, bool]


def scan_object(body: bytes) -> list[Member]:
    """Check that ``body`` is one JSON object (any depth up to Go's) and return its members.

    Raises :class:`JSONProblem` for anything msgspec would refuse as JSON, and ``TypeError``
    naming the JSON type when the body is a value of another type (as msgspec reports it).
    """
    n = len(body)
    pos = _ws(body, 0)
    if pos >= n:
        raise JSONProblem("input data was truncated", pos)
    if body[pos] != _OPEN_OBJECT:
        raise TypeError(f"Expected `object`, got `{_json_type(body, pos)}`")
    members: list[Member] = []
    pos = _ws(body, pos + 1)
    if pos < n and body[pos] == _CLOSE_OBJECT:
        pos += 1
    else:
        while True:
            k = _key(body, pos)
            if k is None:
                raise JSONProblem("expected '\"'", pos)
            colon = _ws(body, k.end())
            if colon >= n or body[colon] != _COLON:
                raise JSONProblem("expected ':'", colon)
            start = _ws(body, colon + 1)
            try:
                end = skip_value(body, start, 1)
            except TooDeep as exc:
                exc.key_span = (pos, k.end())
                raise
            members.append((pos, k.end(), start, end, body[start] in b"[{"))
            pos = _ws(body, end)
            if pos >= n:
                raise JSONProblem("input data was truncated", pos)
            if body[pos] == _CLOSE_OBJECT:
                pos += 1
                break
            if body[pos] != _COMMA:
                raise JSONProblem("expected ',' or '}'", pos)
            pos = _ws(body, pos + 1)
    end = _ws(body, pos)
    if end != n:
        raise JSONProblem("trailing characters", end)
    return members


def check_value(raw: bytes, depth: int = 0) -> None:
    """Check that ``raw`` is exactly one JSON value, nested at most MAX_NESTING_DEPTH - ``depth``."""
    pos = _ws(raw, 0)
    end = _ws(raw, skip_value(raw, pos, depth))
    if end != len(raw):
        raise JSONProblem("trailing characters", end)


def skip_value(body: bytes, pos: int, depth: int) -> int:
    """The end of the JSON value starting at ``body[pos]``, ``depth`` levels already open.

    Iterative: a stack of expected closers instead of recursion, so any depth costs only memory
    (and is refused past MAX_NESTING_DEPTH).
    """
    n = len(body)
    closers = bytearray()
    while True:
        # A value is expected at pos (whitespace skipped).
        if pos >= n:
            raise JSONProblem("input data was truncated", pos)
        c = body[pos]
        if c in (_CLOSE_ARRAY, _CLOSE_OBJECT):
            raise JSONProblem("trailing comma", pos)
        if c in (_OPEN_ARRAY, _OPEN_OBJECT):
            if depth + len(closers) >= MAX_NESTING_DEPTH:
                raise TooDeep(pos)
            closer = c + 2  # "[" + 2 is "]", "{" + 2 is "}"
            closers.append(closer)
            pos = _ws(body, pos + 1)
            if pos < n and body[pos] == closer:
                closers.pop()
                pos += 1
            else:
                pos = _first_of_run(body, pos, closer, depth + len(closers))
                continue
        else:
            m = _scalar(body, pos)
            if m is None:
                raise JSONProblem("invalid value", pos)
            pos = m.end()
        # A value ended at pos: close what it closes, or go on to the next element.
        while True:
            if not closers:
                return pos
            pos = _ws(body, pos)
            if pos >= n:
                raise JSONProblem("input data was truncated", pos)
            c = body[pos]
            if c == closers[-1]:
                closers.pop()
                pos += 1
                continue
            if c != _COMMA:
                raise JSONProblem(f"expected ',' or {chr(closers[-1])!r}", pos)
            pos = _ws(body, pos + 1)
            pos = _first_of_run(body, pos, closers[-1], depth + len(closers))
            break


def _first_of_run(body: bytes, pos: int, closer: int, depth: int) -> int:
    """Read the flat elements of a container in C, up to the next one the loop must handle."""
    flat_fits = depth + 1 <= MAX_NESTING_DEPTH  # a flat container is one level further down
    if closer == _CLOSE_ARRAY:
        run = _array_run if flat_fits else _scalar_array_run
        return _always(run, body, pos)
    run = _object_run if flat_fits else _scalar_object_run
    pos = _always(run, body, pos)
    m = _member(body, pos)
    if m is None:
        raise JSONProblem("expected a key and ':'", pos)
    return m.end()


def _json_type(body: bytes, pos: int) -> str:
    """The JSON type starting at ``body[pos]``, named as msgspec names it."""
    first = body[pos]
    if first == _OPEN_ARRAY:
        return "array"
    if first == ord('"'):
        return "str"
    if first in b"tf":
        return "bool"
    if first == ord("n"):
        return "null"
    m = re.compile(_NUMBER).match(body, pos)
    if m is not None and not set(m.group()) & set(b".eE"):
        return "int"
    return "float"
