"""Publishing ExecutionMessages: checked before any call, sent in batches, counted exactly.

gorax's batch publish said only "N failed" and counted every message as failed. Here each
message is validated and measured first (so a bad one never costs a round trip or half a batch),
batches are split by count and by SQS's byte limit, only retryable failures are retried, and the
result names every execution id that went through or did not, and why.

:class:`Publisher` (asyncio) and :class:`SyncPublisher` (threads) share one core: the checks, the
entries, the result and the metrics are written once in :class:`_PublishCore`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message, validation_problem
from goraxfast.dataplane import new_client
from goraxfast.errors import MessageTooLargeError, SQSError, ValidationError
from goraxfast.sqs import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    BatchResult,
    SendEntry,
    SyncSQSClient,
    entry_size,
    is_retryable,
)


@dataclass(frozen=True, slots=True)
class PublisherMetrics:
    """A consistent snapshot: messages finally published, finally failed, last success time."""

    published: int
    failed: int
    last_publish_time: float | None


@dataclass(frozen=True, slots=True)
class Published:
    execution_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class PublishFailure:
    execution_id: str
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Every message of a batch, in input order, either published or failed (with the reason)."""

    published: tuple[Published, ...]
    failed: tuple[PublishFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def published_ids(self) -> tuple[str, ...]:
        return tuple(p.execution_id for p in self.published)

    @property
    def failed_ids(self) -> tuple[str, ...]:
        return tuple(f.execution_id for f in self.failed)


class _PublishCore:
    """Checks, entries, results and metrics shared by the async and the sync publisher."""

    def __init__(self, max_message_bytes: int, clock: Callable[[], float]) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._published = 0
        self._failed = 0
        self._last: float | None = None

    @property
    def metrics(self) -> PublisherMetrics:
        with self._lock:
            return PublisherMetrics(self._published, self._failed, self._last)

    def _record(self, published: int, failed: int) -> None:
        now = self._clock() if published else None
        with self._lock:
            self._published += published
            self._failed += failed
            if now is not None:  # threads may record out of clock order: keep the latest
                self._last = now if self._last is None else max(self._last, now)

    def _prepare(self, msgs: Sequence[ExecutionMessage]) -> list[SendEntry]:
        """Validate, encode and measure every message; raise for the first bad one, send nothing.

        Entry ids are positions, not execution ids: those need not be unique nor fit SQS's id
        alphabet, and the position maps a result back to its message.
        """
        entries: list[SendEntry] = []
        for index, msg in enumerate(msgs):
            where = f"execution_id={msg.execution_id!r}"
            if len(msgs) > 1:
                where += f", batch index {index}"
            problem = validation_problem(msg)
            if problem is not None:
                raise ValidationError(f"{problem} ({where})")
            entry = SendEntry(str(index), encode_message(msg).decode(), msg.message_attributes())
            size = entry_size(entry)
            if size > self.max_message_bytes:
                raise MessageTooLargeError(size, self.max_message_bytes, f"message ({where})")
            entries.append(entry)
        return entries

    def _finish(self, msgs: Sequence[ExecutionMessage], result: BatchResult) -> PublishResult:
        published = tuple(
            Published(msgs[int(i)].execution_id, result.message_ids.get(i, ""))
            for i in result.successful
        )
        failed = tuple(
            PublishFailure(msgs[int(f.id)].execution_id, f.code, f.message, is_retryable(f))
            for f in result.failed
        )
        self._record(len(published), len(failed))
        return PublishResult(published, failed)


class PublishingClient(Protocol):
    """What :class:`Publisher` sends with: :class:`SQSClient` (aiobotocore) or
    :class:`goraxfast.fastsqs.FastSQSClient`."""

    async def send_message(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
        queue_url: str | None = None,
    ) -> str: ...

    async def send_entries(
        self,
        entries: Sequence[SendEntry],
        *,
        queue_url: str | None = None,
        max_bytes: int | None = None,
    ) -> BatchResult: ...

    async def start(self) -> Any: ...

    async def close(self) -> None: ...


class Publisher(_PublishCore):
    """Publishes from asyncio code on a :class:`PublishingClient`; safe to share between tasks."""

    def __init__(
        self,
        client: PublishingClient,
        *,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_message_bytes, clock)
        self.client = client
        self._owns_client = False

    @classmethod
    def from_config(
        cls, config: Config, *, max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES
    ) -> Publisher:
        """A publisher with a client of its own, started and closed by ``async with``: the
        fast client when ``GORAXFAST_SQS_CLIENT=fast`` (the default) and no environment proxy
        applies, else aiobotocore's (:func:`goraxfast.dataplane.new_client` chooses)."""
        config.require_queue()
        client: PublishingClient = new_client(config)
        publisher = cls(client, max_message_bytes=max_message_bytes)
        publisher._owns_client = True
        return publisher

    async def __aenter__(self) -> Publisher:
        if self._owns_client:
            await self.client.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def publish(self, msg: ExecutionMessage) -> str:
        """Publish one message; its SQS MessageId. Raises SQSError (counted failed) on failure.

        With the fast client a lost answer (SQS may have the message) raises at once rather than
        sending again: whether to risk a duplicate is the caller's choice here. ``publish_batch``
        sends again (see :meth:`goraxfast.sqs.AsyncQueueClient.send_entries`).
        """
        entry = self._prepare([msg])[0]
        try:
            message_id = await self.client.send_message(
                entry.body, message_attributes=entry.message_attributes
            )
        except SQSError:
            self._record(0, 1)
            raise
        self._record(1, 0)
        return message_id

    async def publish_batch(self, msgs: Sequence[ExecutionMessage]) -> PublishResult:
        """Publish any number of messages; per-message results, retryable failures retried."""
        entries = self._prepare(msgs)
        try:
            result = await self.client.send_entries(entries, max_bytes=self.max_message_bytes)
        except SQSError:
            self._record(0, len(msgs))
            raise
        return self._finish(msgs, result)


class SyncPublisher(_PublishCore):
    """The same publisher for threaded web apps, on a boto3 client; safe to share between threads."""

    def __init__(
        self,
        client: SyncSQSClient,
        *,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_message_bytes, clock)
        self.client = client
        self._owns_client = False

    @classmethod
    def from_config(
        cls, config: Config, *, max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES
    ) -> SyncPublisher:
        config.require_queue()
        publisher = cls(SyncSQSClient(config), max_message_bytes=max_message_bytes)
        publisher._owns_client = True
        return publisher

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def publish(self, msg: ExecutionMessage) -> str:
        entry = self._prepare([msg])[0]
        try:
            message_id = self.client.send_message(
                entry.body, message_attributes=entry.message_attributes
            )
        except SQSError:
            self._record(0, 1)
            raise
        self._record(1, 0)
        return message_id

    def publish_batch(self, msgs: Sequence[ExecutionMessage]) -> PublishResult:
        entries = self._prepare(msgs)
        try:
            result = self.client.send_entries(entries, max_bytes=self.max_message_bytes)
        except SQSError:
            self._record(0, len(msgs))
            raise
        return self._finish(msgs, result)
