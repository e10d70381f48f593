"""Every error goraxfast raises on purpose, each carrying the facts a user needs to act on it.

They all derive from :class:`GoraxfastError`, so an app can catch the family in one clause
while still telling a bad config from a failed SQS call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GoraxfastError(Exception):
    """Base of every error raised by goraxfast itself."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One bad setting: which variable, what it held, and what would have been accepted."""

    name: str
    value: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}: {self.allowed}"


class ConfigError(GoraxfastError):
    """Raised once with *every* bad setting, so an operator fixes them all in one go."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class MessageError(GoraxfastError, ValueError):
    """A message body that cannot be decoded or does not satisfy the ExecutionMessage rules."""


class MessageDecodeError(MessageError):
    """The body is not a JSON object of the right shape (wrong type, null, bad UTF-8, ...)."""


class ValidationError(MessageError):
    """The body decoded, but a required field is missing or out of range."""


class MessageEncodeError(MessageError):
    """A message that cannot be written as a body gorax can read back (a field of the wrong type,
    an integer past Go's int64, ``trigger_data`` that is not one JSON value, ...); nothing was sent.
    """


class MessageTooLargeError(MessageError):
    """A message (or a whole batch) exceeds the queue's MaximumMessageSize; nothing was sent."""

    def __init__(self, size_bytes: int, limit_bytes: int, what: str = "message") -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(f"{what} is {size_bytes} bytes, over the SQS limit of {limit_bytes} bytes")


class SQSError(GoraxfastError):
    """An SQS call failed. Names the operation, the queue and, when known, the AWS error code."""

    def __init__(
        self,
        operation: str,
        queue_url: str,
        detail: str,
        code: str | None = None,
    ) -> None:
        self.operation = operation
        self.queue_url = queue_url
        self.code = code
        self.detail = detail
        coded = f" [{code}]" if code else ""
        super().__init__(f"SQS {operation} on {queue_url} failed{coded}: {detail}")


class QueueDoesNotExistError(SQSError):
    """The queue URL names no queue on that endpoint."""


class ReceiptHandleInvalidError(SQSError):
    """A receipt handle expired or was never valid (the message was received again elsewhere)."""


class HandlerError(GoraxfastError):
    """A handler given as ``module:function`` could not be imported or is not callable."""


class EngineError(GoraxfastError):
    """The engine cannot run (a worker cannot start, shared memory cannot be created, ...)."""
