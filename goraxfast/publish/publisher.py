"""Publishing ExecutionMessages: checked before any call, sent in batches, counted exactly.

gorax's batch publish said only "N failed" and counted every message as failed. Here each
message is validated and measured first (so a bad one never costs a round trip or half a batch),
batches are split by count and by SQS's byte limit, only retryable failures are retried, and the
result names every execution id that went through or did not, and why.

:class:`Publisher` (asyncio) and :class:`SyncPublisher` (threads) share one core: the checks, the
entries, the result and the metrics are written once in :class:`_PublishCore`.

Message groups (:class:`Grouping`): on a FIFO queue (its URL ends ``.fifo``) every message gets
a MessageGroupId (by ``QUEUE_FIFO_GROUP_BY``: its ``workflow_id`` by default) and a
MessageDeduplicationId from its ``execution_id`` (none when the queue deduplicates by content),
and a batch keeps each group's order (:class:`goraxfast.core.send_plan.SendPlan`). On a standard
queue, MessageGroupId is the tenant (``QUEUE_FAIR_QUEUE``), which SQS fair queues read as the
tenant. An id SQS would refuse is refused here, before any call, naming the message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Protocol

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message, validation_problem
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_LEGACY_MAX_MESSAGE_BYTES,
    BatchResult,
    QueueAttributes,
    SendEntry,
    entry_size,
    ids_problem,
    is_fifo_queue,
    is_retryable,
)
from goraxfast.errors import (
    MessageEncodeError,
    MessageTooLargeError,
    SQSError,
    ValidationError,
)
from goraxfast.ops import tracing
from goraxfast.ops.tracing import PublishSpans
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


GroupKey = Literal["workflow_id", "tenant_id", "execution_id", "caller"]


@dataclass(frozen=True, slots=True)
class Grouping:
    """How a publisher sets MessageGroupId and MessageDeduplicationId.

    - ``fifo_group_by``: a FIFO queue's group: a message field (``workflow_id``, ``tenant_id``,
      ``execution_id``), ``"caller"`` (the ``group_id`` each publish call passes; a message
      without one is refused), or a function of the message. A ``group_id`` passed to a
      publish call always wins.
    - ``fair_queue``: on a standard queue, MessageGroupId = ``tenant_id`` (fair queues); False
      sends none (a ``group_id`` passed to a publish call is still sent).
    - ``content_based_deduplication``: the FIFO queue deduplicates by the body's hash, so no
      MessageDeduplicationId is sent; otherwise it is the ``execution_id`` (with
      ``:retry-<n>`` when ``retry_count`` is n > 0: a deliberate new attempt is not a copy).
    """

    fifo_group_by: GroupKey | Callable[[ExecutionMessage], str] = "workflow_id"
    fair_queue: bool = True
    content_based_deduplication: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Grouping:
        key: Any = config.fifo_group_by  # checked against FIFO_GROUP_KEYS by the config
        return cls(fifo_group_by=key, fair_queue=config.fair_queue)

    def ids(
        self, msg: ExecutionMessage, fifo: bool, group_id: str | None
    ) -> tuple[str | None, str | None, str]:
        """(MessageGroupId, MessageDeduplicationId, where the group id came from)."""
        group: str | None
        if group_id is not None:
            group, source = group_id, "the group_id passed"
        elif not fifo:
            group, source = (msg.tenant_id if self.fair_queue else None), "tenant_id"
        elif callable(self.fifo_group_by):
            chosen: object = self.fifo_group_by(msg)
            if not isinstance(chosen, str):
                raise TypeError(f"the group function returned {type(chosen).__name__}, not str")
            group, source = chosen, "the group function"
        elif self.fifo_group_by == "caller":
            group, source = None, "the caller (QUEUE_FIFO_GROUP_BY=caller), who passed none"
        else:
            group, source = getattr(msg, self.fifo_group_by), self.fifo_group_by
        dedup = None
        if fifo and not self.content_based_deduplication:
            retries = msg.retry_count
            dedup = msg.execution_id if not retries else f"{msg.execution_id}:retry-{retries}"
        return group, dedup, source


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

    def __init__(
        self,
        max_message_bytes: int,
        clock: Callable[[], float],
        queue_url: str,
        grouping: Grouping | None,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        #: The queue is FIFO (known from its URL): groups, deduplication ids, order.
        self.fifo = is_fifo_queue(queue_url)
        self.grouping = grouping or Grouping()
        self._lock = threading.Lock()
        self._published = 0
        self._failed = 0
        self._last: float | None = None
        #: Whether publishing is traced (:mod:`goraxfast.ops.tracing`), decided once here: set
        #: the application's tracer provider before making a publisher.
        self.traced = tracing.enabled()

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

    def _prepare(
        self,
        msgs: Sequence[ExecutionMessage],
        group_ids: Sequence[str | None] | None = None,
        spans: PublishSpans | None = None,
    ) -> list[SendEntry]:
        """Encode, validate and measure every message; raise for the first bad one, send nothing.

        Encoding checks each field's type and range (a body gorax's decoder reads back, or
        :class:`MessageEncodeError` naming the field), then gorax's rules are checked, then the
        group and deduplication ids SQS would refuse (:class:`ValidationError`). Entry ids
        are positions, not execution ids: those need not be unique nor fit SQS's id alphabet,
        and the position maps a result back to its message. While tracing (``spans``), each
        message's trace context joins its attributes if it fits beside them: the size check
        above is the message's own, so tracing never refuses a message.
        """
        if group_ids is not None and len(group_ids) != len(msgs):
            raise ValueError(f"{len(group_ids)} group_ids for {len(msgs)} messages")
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
            attributes = msg.message_attributes()
            entry = SendEntry(str(index), body.decode(), attributes)
            size = entry_size(entry)
            if size > self.max_message_bytes:
                raise MessageTooLargeError(size, self.max_message_bytes, f"message ({where})")
            if spans is not None:  # into the entry's own attributes, before anything is sent
                spans.inject(index, attributes, self.max_message_bytes - size)
            explicit = None if group_ids is None else group_ids[index]
            if explicit is not None and not isinstance(explicit, str):
                raise TypeError(f"group_id must be a str, got {type(explicit).__name__} ({where})")
            group, dedup, source = self.grouping.ids(msg, self.fifo, explicit)
            refused = ids_problem(group, dedup, 0, fifo=self.fifo)
            if refused is not None:
                origin = "execution_id" if "Deduplication" in refused else source
                raise ValidationError(f"{refused}; from {origin} ({where})")
            entries.append(replace(entry, group_id=group, dedup_id=dedup))
        return entries

    def _take_attributes(self, attrs: QueueAttributes, queue_url: str) -> None:
        """What the publisher learns from the queue's attributes: its size limit, and whether
        it deduplicates by content (then no MessageDeduplicationId is sent)."""
        self.max_message_bytes = _limit_of(attrs, queue_url)
        if attrs.content_based_deduplication != self.grouping.content_based_deduplication:
            self.grouping = replace(
                self.grouping, content_based_deduplication=attrs.content_based_deduplication
            )

    def _finish(
        self,
        msgs: Sequence[ExecutionMessage],
        result: BatchResult,
        spans: PublishSpans | None = None,
    ) -> PublishResult:
        if spans is not None:
            spans.settled(result)
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

    @property
    def queue_url(self) -> str: ...

    async def send_message(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
        queue_url: str | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
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
        grouping: Grouping | None = None,
    ) -> None:
        super().__init__(max_message_bytes, clock, client.queue_url, grouping)
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
        default a queue may have) is assumed, with one warning per queue. The same call says
        whether a FIFO queue deduplicates by content; groups follow ``QUEUE_FIFO_GROUP_BY``
        and ``QUEUE_FAIR_QUEUE``.
        """
        config.require_queue()
        client: PublishingClient = new_client(config)
        # Until the publisher starts and reads the queue's own limit: the safe guess.
        limit = SQS_LEGACY_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
        publisher = cls(client, max_message_bytes=limit, grouping=Grouping.from_config(config))
        publisher._owns_client = True
        if max_message_bytes is None:
            publisher._config = config
        return publisher

    async def start(self) -> Publisher:
        """Start the client this publisher owns and read the queue's size limit (if it is to)."""
        if self._owns_client:
            await self.client.start()
        if self._config is not None:
            await self._read_queue(self._config)
            self._config = None
        return self

    async def _read_queue(self, config: Config) -> None:
        url = config.queue_url
        try:
            attrs: QueueAttributes = await self.client.queue_attributes(url)
        except Exception as exc:  # whatever the reason (SQS, credentials, network): not fatal
            self.max_message_bytes = _fallback_limit(url, exc)
            return
        self._take_attributes(attrs, url)

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

    async def publish(self, msg: ExecutionMessage, *, group_id: str | None = None) -> str:
        """Publish one message; its SQS MessageId. Raises SQSError (counted failed) on failure.

        ``group_id``: its MessageGroupId, instead of the one :class:`Grouping` would choose.
        With the fast client a lost answer (SQS may have the message) raises at once rather than
        sending again: whether to risk a duplicate is the caller's choice here (on a FIFO queue
        a copy sent within 5 minutes is dropped by SQS). ``publish_batch`` sends again (see
        :meth:`goraxfast.sqs.botocore.AsyncQueueClient.send_entries`).
        """
        if not self.traced:
            return await self._publish(msg, group_id, None)
        with PublishSpans(self.client.queue_url, (msg,)) as spans:
            return spans.sent_one(await self._publish(msg, group_id, spans))

    async def _publish(
        self, msg: ExecutionMessage, group_id: str | None, spans: PublishSpans | None
    ) -> str:
        entry = self._prepare([msg], [group_id], spans)[0]
        try:
            message_id = await self.client.send_message(
                entry.body,
                message_attributes=entry.message_attributes,
                group_id=entry.group_id,
                dedup_id=entry.dedup_id,
            )
        except SQSError:
            self._record(0, 1)
            raise
        self._record(1, 0)
        return message_id

    async def publish_batch(
        self,
        msgs: Sequence[ExecutionMessage],
        *,
        group_ids: Sequence[str | None] | None = None,
    ) -> PublishResult:
        """Publish any number of messages; per-message results, retryable failures retried.

        ``group_ids``: one per message (None: the one :class:`Grouping` chooses). On a FIFO
        queue each group is sent in the order given, within and across SendMessageBatch calls
        and retries; an entry whose earlier group-mate finally failed is not sent
        (``PrecedingMessageNotSent``, retryable).
        """
        if not self.traced:
            return await self._publish_batch(msgs, group_ids, None)
        with PublishSpans(self.client.queue_url, msgs) as spans:
            return await self._publish_batch(msgs, group_ids, spans)

    async def _publish_batch(
        self,
        msgs: Sequence[ExecutionMessage],
        group_ids: Sequence[str | None] | None,
        spans: PublishSpans | None,
    ) -> PublishResult:
        entries = self._prepare(msgs, group_ids, spans)
        try:
            result = await self.client.send_entries(entries, max_bytes=self.max_message_bytes)
        except SQSError:
            self._record(0, len(msgs))
            raise
        return self._finish(msgs, result, spans)


class SyncPublisher(_PublishCore):
    """The same publisher for threaded web apps, on a boto3 client; safe to share between threads."""

    def __init__(
        self,
        client: SyncSQSClient,
        *,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
        grouping: Grouping | None = None,
    ) -> None:
        super().__init__(max_message_bytes, clock, client.queue_url, grouping)
        self.client = client
        self._owns_client = False

    @classmethod
    def from_config(cls, config: Config, *, max_message_bytes: int | None = None) -> SyncPublisher:
        """A publisher with a boto3 client of its own, held to the queue's own
        ``MaximumMessageSize`` (read here) unless ``max_message_bytes`` is given; as
        :meth:`Publisher.from_config` when it cannot be read."""
        config.require_queue()
        client = SyncSQSClient(config)
        grouping = Grouping.from_config(config)
        if max_message_bytes is not None:
            publisher = cls(client, max_message_bytes=max_message_bytes, grouping=grouping)
        else:
            publisher = cls(
                client, max_message_bytes=SQS_LEGACY_MAX_MESSAGE_BYTES, grouping=grouping
            )
            try:
                attrs = client.queue_attributes()
            except Exception as exc:  # as in Publisher._read_queue
                publisher.max_message_bytes = _fallback_limit(config.queue_url, exc)
            else:
                publisher._take_attributes(attrs, config.queue_url)
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

    def publish(self, msg: ExecutionMessage, *, group_id: str | None = None) -> str:
        if not self.traced:
            return self._publish(msg, group_id, None)
        with PublishSpans(self.client.queue_url, (msg,)) as spans:
            return spans.sent_one(self._publish(msg, group_id, spans))

    def _publish(
        self, msg: ExecutionMessage, group_id: str | None, spans: PublishSpans | None
    ) -> str:
        entry = self._prepare([msg], [group_id], spans)[0]
        try:
            message_id = self.client.send_message(
                entry.body,
                message_attributes=entry.message_attributes,
                group_id=entry.group_id,
                dedup_id=entry.dedup_id,
            )
        except SQSError:
            self._record(0, 1)
            raise
        self._record(1, 0)
        return message_id

    def publish_batch(
        self,
        msgs: Sequence[ExecutionMessage],
        *,
        group_ids: Sequence[str | None] | None = None,
    ) -> PublishResult:
        if not self.traced:
            return self._publish_batch(msgs, group_ids, None)
        with PublishSpans(self.client.queue_url, msgs) as spans:
            return self._publish_batch(msgs, group_ids, spans)

    def _publish_batch(
        self,
        msgs: Sequence[ExecutionMessage],
        group_ids: Sequence[str | None] | None,
        spans: PublishSpans | None,
    ) -> PublishResult:
        entries = self._prepare(msgs, group_ids, spans)
        try:
            result = self.client.send_entries(entries, max_bytes=self.max_message_bytes)
        except SQSError:
            self._record(0, len(msgs))
            raise
        return self._finish(msgs, result, spans)
