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
        self,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        *,
        attempt_id: str | None = None,
    ) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages. ``attempt_id`` is sent as ReceiveRequestAttemptId
        on a FIFO queue (ignored on a standard one, where SQS defines no such thing): a receive
        sent again with the same id within 5 minutes, after an answer was lost, gets the same
        messages back instead of leaving them (and so their groups) invisible for the
        visibility timeout. The caller picks a new id per receive and reuses it only to retry
        that receive; each client's own retries of one call reuse it by themselves."""
        ...

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult: ...

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> BatchResult: ...

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult: ...


class ClosableDataPlane(DataPlane, Protocol):
    """A data plane the engine opened and so must close."""

    async def close(self) -> None: ...
