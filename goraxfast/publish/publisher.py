"""Publishing ExecutionMessages: checked before any call, sent in batches, counted exactly.

gorax's batch publish said only "N failed" and counted every message as failed. Here each
message is validated and measured first (so a bad one never costs a round trip or half a batch),
batches are split by count and by SQS's byte limit, only retryable failures are retried, and the
result names every execution id that went through or did not, and why.

:class:`Publisher` (asyncio) and :class:`SyncPublisher` (threads) share one core: the checks, the
entries, the result and the metrics are written once in :class:`_PublishCore`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message, validation_problem
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_LEGACY_MAX_MESSAGE_BYTES,
    BatchResult,
    QueueAttributes,
    SendEntry,
    entry_size,
    is_retryable,
)
from goraxfast.errors import (
    MessageEncodeError,
    MessageTooLargeError,
    SQSError,
    ValidationError,
)
from goraxfast.sqs.botocore import SyncSQSClient
from goraxfast.sqs.choice import new_client

log = logging.getLogger(__name__)


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
        """Encode, validate and measure every message; raise for the first bad one, send nothing.

        Encoding checks each field's type and range (a body gorax's decoder reads back, or
        :class:`MessageEncodeError` naming the field), then gorax's rules are checked. Entry ids
        are positions, not execution ids: those need not be unique nor fit SQS's id alphabet,
        and the position maps a result back to its message.
        """
        entries: list[SendEntry] = []
        for index, msg in enumerate(msgs):
            batch = f"batch index {index}" if len(msgs) > 1 else ""
            if not isinstance(msg, ExecutionMessage):
                raise MessageEncodeError(
                    f"expected an ExecutionMessage, got {type(msg).__name__} ({batch or 'publish'}): "
                    "PublisherAdapter publishes mappings"
                )
            where = f"execution_id={_shown(msg.execution_id)}" + (f", {batch}" if batch else "")
            try:
                body = encode_message(msg)
            except MessageEncodeError as exc:
                raise MessageEncodeError(f"{exc} ({where})") from exc
            problem = validation_problem(msg)
            if problem is not None:
                raise ValidationError(f"{problem} ({where})")
            entry = SendEntry(str(index), body.decode(), msg.message_attributes())
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


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, cut if long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_WARNED_LIMITS: set[str] = set()


def _limit_of(attrs: QueueAttributes, queue_url: str) -> int:
    if attrs.maximum_message_size > 0:
        return attrs.maximum_message_size
    return _fallback_limit(queue_url, f"MaximumMessageSize={attrs.maximum_message_size}")


def _fallback_limit(queue_url: str, why: object) -> int:
    """The safe guess when a queue's MaximumMessageSize cannot be read, said once per queue."""
    if queue_url not in _WARNED_LIMITS:
        _WARNED_LIMITS.add(queue_url)
        log.warning(
            "cannot read MaximumMessageSize of %s (%s); assuming %d bytes, the smallest default "
            "an SQS queue may have (pass max_message_bytes to choose)",
            queue_url,
            why,
            SQS_LEGACY_MAX_MESSAGE_BYTES,
        )
    return SQS_LEGACY_MAX_MESSAGE_BYTES


class PublishingClient(Protocol):
    """What :class:`Publisher` sends with: :class:`SQSClient` (aiobotocore) or
    :class:`goraxfast.sqs.fast.FastSQSClient`."""

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

    async def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes: ...

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
        self._config: Config | None = None  # set when the queue's own limit is to be read

    @classmethod
    def from_config(cls, config: Config, *, max_message_bytes: int | None = None) -> Publisher:
        """A publisher with a client of its own, started and closed by ``async with``: the
        fast client when ``GORAXFAST_SQS_CLIENT=fast`` (the default) and no environment proxy
        applies, else aiobotocore's (:func:`goraxfast.sqs.choice.new_client` chooses).

        Messages are held to the queue's own ``MaximumMessageSize``, read when the publisher
        starts (one GetQueueAttributes call: open a publisher per process, not per request),
        unless ``max_message_bytes`` is given. If it cannot be read, 256 KiB (the smallest
        default a queue may have) is assumed, with one warning per queue.
        """
        config.require_queue()
        client: PublishingClient = new_client(config)
        # Until the publisher starts and reads the queue's own limit: the safe guess.
        limit = SQS_LEGACY_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
        publisher = cls(client, max_message_bytes=limit)
        publisher._owns_client = True
        if max_message_bytes is None:
            publisher._config = config
        return publisher

    async def start(self) -> Publisher:
        """Start the client this publisher owns and read the queue's size limit (if it is to)."""
        if self._owns_client:
            await self.client.start()
        if self._config is not None:
            self.max_message_bytes = await self._queue_limit(self._config)
            self._config = None
        return self

    async def _queue_limit(self, config: Config) -> int:
        url = config.queue_url
        try:
            attrs: QueueAttributes = await self.client.queue_attributes(url)
        except Exception as exc:  # whatever the reason (SQS, credentials, network): not fatal
            return _fallback_limit(url, exc)
        return _limit_of(attrs, url)

    async def __aenter__(self) -> Publisher:
        return await self.start()

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
        sends again (see :meth:`goraxfast.sqs.botocore.AsyncQueueClient.send_entries`).
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
    def from_config(cls, config: Config, *, max_message_bytes: int | None = None) -> SyncPublisher:
        """A publisher with a boto3 client of its own, held to the queue's own
        ``MaximumMessageSize`` (read here) unless ``max_message_bytes`` is given; as
        :meth:`Publisher.from_config` when it cannot be read."""
        config.require_queue()
        client = SyncSQSClient(config)
        if max_message_bytes is None:
            try:
                max_message_bytes = _limit_of(client.queue_attributes(), config.queue_url)
            except Exception as exc:  # as in Publisher._queue_limit
                max_message_bytes = _fallback_limit(config.queue_url, exc)
        publisher = cls(client, max_message_bytes=max_message_bytes)
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
