"""What the engine needs of an SQS client: the four hot calls, as a protocol.

It lives with the SQS model, not with a client, so that the poller, dispatcher and acker can be
read, typed and tested without loading boto3 or aiobotocore, and so that the botocore client, the
lean client and the in-memory one of :mod:`goraxfast.testing` are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from goraxfast.core.sqs_model import BatchResult, ReceivedMessage, SendEntry

__all__ = ["ClosableDataPlane", "DataPlane"]


class DataPlane(Protocol):
    """Receive, delete, change visibility and send, each one request per call."""

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]: ...

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult: ...

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> BatchResult: ...

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult: ...


class ClosableDataPlane(DataPlane, Protocol):
    """A data plane the engine opened and so must close."""

    async def close(self) -> None: ...
