"""The user's side of the engine: what a handler receives and how it says what happened.

A handler returns normally on success, raises :class:`Retry` to be run again later, raises
:class:`Reject` to dead-letter the message at once, and raises anything else to fail (retried
with backoff by receive count until QUEUE_MAX_RETRIES, then dead-lettered).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from goraxfast.core.message import ExecutionMessage
from goraxfast.errors import HandlerError
from goraxfast.ops import tracing
from goraxfast.worker.current import running


class Retry(Exception):
    """Run this message again after ``delay_s`` seconds (its visibility is set to that)."""

    def __init__(self, delay_s: float = 0.0, reason: str = "") -> None:
        if delay_s < 0:
            raise ValueError(f"Retry delay_s must be >= 0, got {delay_s}")
        self.delay_s = delay_s
        self.reason = reason
        super().__init__(f"retry in {delay_s:g} s" + (f": {reason}" if reason else ""))


class Reject(Exception):
    """This message can never succeed: send it to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    """Facts about this delivery of the message (not part of the message itself)."""

    message_id: str
    receive_count: int
    first_received_ms: int
    sent_ms: int
    worker_index: int


SyncHandler: TypeAlias = Callable[..., Any]
AsyncHandler: TypeAlias = Callable[..., Awaitable[Any]]
Handler: TypeAlias = SyncHandler | AsyncHandler


@dataclass(frozen=True, slots=True)
class BoundHandler:
    """A handler with its calling convention worked out once, not on every message."""

    func: Handler
    is_async: bool
    wants_info: bool

    def describe(self) -> str:
        name = getattr(self.func, "__qualname__", repr(self.func))
        module = getattr(self.func, "__module__", "?")
        return f"{module}:{name}"


#: ``package.module`` or ``attribute.path``: the two halves of a handler path.
DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def bind_handler(handler: Handler | str) -> BoundHandler:
    """Accept a callable or a ``module:function`` path; a handler takes (message) or (message, info).

    A callable that could never be called that way (no positional parameter, more than two
    required ones, a required keyword-only one) is refused here, once, rather than failing
    every message with a TypeError.
    """
    func = load_handler(handler) if isinstance(handler, str) else handler
    if not callable(func):
        raise HandlerError(f"handler {func!r} is not callable")
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have none: take them on trust
        signature = None
    every = list(signature.parameters.values()) if signature is not None else []
    params = [
        p for p in every if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if signature is not None and not _callable_as_handler(every):
        name = getattr(func, "__qualname__", repr(func))
        raise HandlerError(
            f"handler {name}{signature} cannot be called as (message) or (message, info)"
        )
    wants_info = len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    bound = BoundHandler(func=func, is_async=is_async, wants_info=wants_info)
    return traced(bound) if tracing.enabled() else bound


def traced(bound: BoundHandler) -> BoundHandler:
    """The handler run inside its message's ``process {queue}`` span.

    Decided at bind time, before the engine forks, from the tracer provider the application set
    by then (:func:`goraxfast.ops.tracing.enabled`); without one the handler is bound as it is,
    and the worker loops call it with nothing in between. The span reads the delivery from
    :func:`goraxfast.worker.current.running`, which both loops set before calling; called
    outside a worker loop (a test calling ``bound.func``), the handler just runs.
    """
    func = bound.func
    start, end = tracing.start_processing, tracing.end_processing
    if bound.is_async:

        @functools.wraps(func)
        async def run_async(*args: Any) -> Any:
            current = running()
            if current is None:
                return await func(*args)
            span, token = start(*current)
            try:
                result = await func(*args)
            except BaseException as exc:
                end(span, token, exc, *_outcome(exc))
                raise
            end(span, token, None, "success")
            return result

        return BoundHandler(func=run_async, is_async=True, wants_info=bound.wants_info)

    @functools.wraps(func)
    def run(*args: Any) -> Any:
        current = running()
        if current is None:
            return func(*args)
        span, token = start(*current)
        try:
            result = func(*args)
        except BaseException as exc:
            end(span, token, exc, *_outcome(exc))
            raise
        end(span, token, None, "success")
        return result

    return BoundHandler(func=run, is_async=False, wants_info=bound.wants_info)


def _outcome(exc: BaseException) -> tuple[str, str, float]:
    """(outcome, reason, retry delay) of a handler that raised, for its span."""
    if isinstance(exc, Retry):
        return "retry", exc.reason, exc.delay_s
    if isinstance(exc, Reject):
        return "reject", exc.reason, -1.0
    return "fail", "", -1.0


def _callable_as_handler(params: list[inspect.Parameter]) -> bool:
    empty = inspect.Parameter.empty
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind is p.VAR_POSITIONAL for p in params)
    required = [p for p in positional if p.default is empty]
    required_keywords = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is empty]
    return (bool(positional) or takes_any) and len(required) <= 2 and not required_keywords


def load_handler(path: str, what: str = "handler") -> Handler:
    """Import ``module:function`` (dotted attributes allowed after the colon).

    Every failure is one :class:`HandlerError` line: a path of the wrong shape, a module that is
    not there, a module that raised while importing (with the exception and where it was
    raised), a missing attribute, something not callable. ``what`` names it in those lines
    (``handler``, ``worker_init``).
    """
    module_name, sep, attr_path = path.partition(":")
    if not sep or not DOTTED_NAME.fullmatch(module_name) or not DOTTED_NAME.fullmatch(attr_path):
        raise HandlerError(f"{what} {path!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise HandlerError(
                f"cannot import {what} module {module_name!r}: there is no module {missing!r} "
                "(looked in the current directory and the installed packages)"
            ) from exc
        raise HandlerError(
            f"cannot import {what} module {module_name!r}: importing it raised {_where(exc)}"
        ) from exc
    except (Exception, SystemExit) as exc:
        raise HandlerError(
            f"cannot import {what} module {module_name!r}: importing it raised {_where(exc)}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise HandlerError(f"{what} {path!r}: {module_name!r} has no {attr_path!r}") from exc
    if not callable(obj):
        raise HandlerError(f"{what} {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _where(exc: BaseException) -> str:
    """``Type: text (file:line)`` on one line: where the import went wrong."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}:{exc.lineno})"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "importlib" not in f.filename]
    if inner:
        return f"{text} ({inner[-1].filename}:{inner[-1].lineno})"
    return text


def call_args(
    bound: BoundHandler, message: ExecutionMessage, info: DeliveryInfo
) -> tuple[Any, ...]:
    return (message, info) if bound.wants_info else (message,)


def worker_init_problem(func: Callable[..., object]) -> str:
    """Why ``func`` cannot be a worker_init ("" if it can): each worker calls it once,
    synchronously, with its index, and a mistake there would only show as three failed
    worker starts."""
    if inspect.iscoroutinefunction(func):
        return (
            "worker_init must be a plain function (def, not async def): it runs before the "
            "worker's loop"
        )
    try:
        inspect.signature(func).bind(0)
    except TypeError:
        return "worker_init must take the worker's index: FUNCTION(worker_index)"
    except ValueError:  # no signature to read (a builtin): left to the call
        pass
    return ""
