"""SQS clients: one long-lived aiobotocore client for the engine, a thin boto3 one for web apps.

The engine depends only on :class:`DataPlane` (the four hot calls), so a leaner client can
replace botocore later without touching it. Batch calls here make exactly one request and report
every entry; only :meth:`SQSClient.send_entries` splits and retries, and the decisions it makes
(chunking by count and size, what is retryable, how long to wait) live in :class:`SendPlan`, a
pure state machine that the async and the sync client both drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from goraxfast.config import Config
from goraxfast.errors import (
    ConfigError,
    ConfigProblem,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
)

# SQS limits (AWS SQS Developer Guide, "Quotas" and the batch API references).
SQS_MAX_BATCH = 10
SQS_MAX_WAIT_S = 20
SQS_DEFAULT_MAX_MESSAGE_BYTES = 262_144
RECEIVE_SYSTEM_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
)
#: Codes worth another attempt even when SQS calls them the sender's fault.
RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "RequestThrottled", "KmsThrottled", "InternalError"}
    | {"InternalFailure", "ServiceUnavailable", "RequestFailed"}
    | {"AWS.SimpleQueueService.RequestThrottled"}
)
_QUEUE_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}\Z")
# Characters SQS accepts in a body (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
_BAD_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: bytes
    receive_count: int
    first_received_ms: int
    sent_ms: int
    message_attributes: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchFailure:
    id: str
    code: str
    message: str
    sender_fault: bool


@dataclass(frozen=True, slots=True)
class BatchResult:
    successful: tuple[str, ...]
    failed: tuple[BatchFailure, ...]
    #: entry id -> SQS MessageId, for send batches (empty for delete / visibility batches).
    message_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendEntry:
    id: str
    body: str
    message_attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    delay_s: int = 0


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    visible: int
    in_flight: int
    delayed: int
    maximum_message_size: int = SQS_DEFAULT_MAX_MESSAGE_BYTES

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class DataPlane(Protocol):
    """The hot calls the engine needs; a leaner client will implement the same protocol."""

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]: ...

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult: ...

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> BatchResult: ...

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult: ...


# --- pure decisions, shared by both clients ---------------------------------------------------


def attributes_size(attrs: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes SQS counts for message attributes: name, data type and value of each."""
    size = 0
    for name, attr in attrs.items():
        size += len(name.encode()) + len(str(attr.get("DataType", "")).encode())
        if "StringValue" in attr:
            size += len(str(attr["StringValue"]).encode())
        if "BinaryValue" in attr:
            size += len(attr["BinaryValue"])
    return size


def entry_size(entry: SendEntry) -> int:
    """Bytes one entry counts against MaximumMessageSize (body plus attributes)."""
    return len(entry.body.encode()) + attributes_size(entry.message_attributes)


def entry_problem(entry: SendEntry, max_bytes: int) -> BatchFailure | None:
    """Why SQS would refuse this entry outright; caught here so it cannot sink its whole batch."""
    size = entry_size(entry)
    if size > max_bytes:
        text = f"message is {size} bytes, over the limit of {max_bytes} bytes"
        return BatchFailure(entry.id, "MessageTooLong", text, True)
    bad = _BAD_CHAR.search(entry.body)
    if bad:
        text = f"body has a character SQS refuses ({bad.group()!r} at {bad.start()})"
        return BatchFailure(entry.id, "InvalidMessageContents", text, True)
    return None


def chunk_entries(
    entries: Sequence[SendEntry], max_bytes: int, max_entries: int = SQS_MAX_BATCH
) -> list[list[SendEntry]]:
    """Split in order into calls of at most ``max_entries`` entries and ``max_bytes`` bytes."""
    chunks: list[list[SendEntry]] = []
    current: list[SendEntry] = []
    used = 0
    for entry in entries:
        size = entry_size(entry)
        if current and (len(current) >= max_entries or used + size > max_bytes):
            chunks.append(current)
            current, used = [], 0
        current.append(entry)
        used += size
    if current:
        chunks.append(current)
    return chunks


def is_retryable(failure: BatchFailure) -> bool:
    return not failure.sender_fault or failure.code in RETRYABLE_CODES


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, so retries spread but never 0."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + ceiling / 2 * rand


class SendPlan:
    """The retry loop of ``send_entries`` without the I/O: chunks out, results in, delays out.

    Entries SQS would refuse outright fail at once. After each round only the failures that
    :func:`is_retryable` accepts are sent again, at most ``max_attempts`` rounds in all.
    """

    def __init__(
        self,
        entries: Sequence[SendEntry],
        *,
        max_bytes: int,
        max_attempts: int,
        base_s: float,
        cap_s: float,
        rand: Callable[[], float],
    ) -> None:
        ids = [e.id for e in entries]
        bad = [i for i in ids if not _ENTRY_ID.match(i)]
        if bad:
            raise ValueError(f"batch entry ids must be 1-80 of [A-Za-z0-9_-]: {bad[:5]!r}")
        if len(set(ids)) != len(ids):
            raise ValueError("batch entry ids must be unique within one send_entries call")
        self._max_bytes, self._max_attempts = max_bytes, max(1, max_attempts)
        self._base_s, self._cap_s, self._rand = base_s, cap_s, rand
        self._order = ids
        self._sent: dict[str, str] = {}
        self._failed: dict[str, BatchFailure] = {}
        self._pending: list[SendEntry] = []
        for entry in entries:
            problem = entry_problem(entry, max_bytes)
            if problem is None:
                self._pending.append(entry)
            else:
                self._failed[entry.id] = problem
        self.attempt = 0

    def chunks(self) -> list[list[SendEntry]]:
        """The calls to make in this round (empty when there is nothing left to send)."""
        return chunk_entries(self._pending, self._max_bytes)

    def record(self, results: Sequence[BatchResult]) -> float | None:
        """Take one round's results; the delay before the next round, or None when done."""
        self.attempt += 1
        by_id = {e.id: e for e in self._pending}
        retry: list[SendEntry] = []
        for result in results:
            for entry_id in result.successful:
                self._sent[entry_id] = result.message_ids.get(entry_id, "")
                self._failed.pop(entry_id, None)
            for failure in result.failed:
                self._failed[failure.id] = failure
                if is_retryable(failure) and failure.id in by_id:
                    retry.append(by_id[failure.id])
        self._pending = retry if self.attempt < self._max_attempts else []
        if not self._pending:
            return None
        return backoff_s(self.attempt, self._base_s, self._cap_s, self._rand())

    def result(self) -> BatchResult:
        ok = tuple(i for i in self._order if i in self._sent)
        failed = tuple(self._failed[i] for i in self._order if i in self._failed)
        return BatchResult(ok, failed, {i: self._sent[i] for i in ok})


def whole_call_failure(exc: SQSError, entries: Sequence[SendEntry]) -> BatchResult:
    """A refused or lost request fails each of its entries; no AWS code means a transport error."""
    code = exc.code or "RequestFailed"
    fault = exc.code is not None and exc.code not in RETRYABLE_CODES
    return BatchResult((), tuple(BatchFailure(e.id, code, str(exc), fault) for e in entries))


def wrap_error(exc: Exception, operation: str, queue_url: str) -> SQSError:
    """Turn a botocore error into ours, naming the operation, the queue and the AWS code."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "Unknown")
        detail = str(err.get("Message") or exc)
        if code in _QUEUE_MISSING or err.get("QueryErrorCode") in _QUEUE_MISSING:
            return QueueDoesNotExistError(operation, queue_url, detail, code)
        if code.endswith("ReceiptHandleIsInvalid") or (
            code == "InvalidParameterValue" and "receipt handle" in detail.lower()
        ):
            return ReceiptHandleInvalidError(operation, queue_url, detail, code)
        return SQSError(operation, queue_url, detail, code)
    return SQSError(operation, queue_url, f"{type(exc).__name__}: {exc}")


def _operation(method: str) -> str:
    return "".join(part.title() for part in method.split("_"))


def check_batch_size(entries: Sequence[object]) -> None:
    if len(entries) > SQS_MAX_BATCH:
        raise ValueError(f"a batch holds at most {SQS_MAX_BATCH} entries, got {len(entries)}")


def message_args(
    body: str, attributes: Mapping[str, Mapping[str, Any]] | None, delay_s: int
) -> dict[str, Any]:
    args: dict[str, Any] = {"MessageBody": body}
    if attributes:
        args["MessageAttributes"] = {k: dict(v) for k, v in attributes.items()}
    if delay_s:  # 0 leaves the queue's own DelaySeconds in force
        args["DelaySeconds"] = delay_s
    return args


def send_payload(entries: Sequence[SendEntry]) -> list[dict[str, Any]]:
    check_batch_size(entries)
    return [{"Id": e.id, **message_args(e.body, e.message_attributes, e.delay_s)} for e in entries]


def batch_result(resp: Mapping[str, Any]) -> BatchResult:
    ok = resp.get("Successful", [])
    failed = tuple(
        BatchFailure(f["Id"], f.get("Code", ""), f.get("Message", ""), bool(f.get("SenderFault")))
        for f in resp.get("Failed", [])
    )
    ids = {s["Id"]: s["MessageId"] for s in ok if "MessageId" in s}
    return BatchResult(tuple(s["Id"] for s in ok), failed, ids)


def received_message(m: Mapping[str, Any]) -> ReceivedMessage:
    attrs = m.get("Attributes", {})
    return ReceivedMessage(
        message_id=m["MessageId"],
        receipt_handle=m["ReceiptHandle"],
        body=m.get("Body", "").encode(),
        receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
        first_received_ms=int(attrs.get("ApproximateFirstReceiveTimestamp", 0)),
        sent_ms=int(attrs.get("SentTimestamp", 0)),
        message_attributes=m.get("MessageAttributes", {}),
    )


def _queue_attributes(attrs: Mapping[str, str]) -> QueueAttributes:
    return QueueAttributes(
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        maximum_message_size=int(attrs.get("MaximumMessageSize", SQS_DEFAULT_MAX_MESSAGE_BYTES)),
    )


_DEPTH_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "MaximumMessageSize",
]


def client_kwargs(config: Config) -> dict[str, Any]:
    """Region, endpoint and credentials exactly as gorax chose them (shared/SPEC.md §2)."""
    kwargs: dict[str, Any] = {"region_name": config.aws_region}
    if config.aws_endpoint:
        kwargs["endpoint_url"] = config.aws_endpoint
    if config.static_credentials:
        kwargs["aws_access_key_id"] = config.aws_access_key_id
        kwargs["aws_secret_access_key"] = config.aws_secret_access_key
        if config.aws_session_token:
            kwargs["aws_session_token"] = config.aws_session_token
    return kwargs


def _botocore_options(read_timeout_s: float, sdk_attempts: int) -> dict[str, Any]:
    # The read timeout must outlast the longest legal long poll, or idle receives would fail.
    # botocore itself retries whole calls (throttling, 5xx, lost connections); we never
    # retry a whole call on top except inside send_entries.
    return {
        "read_timeout": read_timeout_s,
        "connect_timeout": 5,
        "max_pool_connections": 50,
        "retries": {"mode": "standard", "max_attempts": sdk_attempts},
    }


class _Base:
    """What both clients share: queue URLs, retry settings and the lazily required main queue."""

    def __init__(
        self,
        config: Config,
        queue_url: str | None,
        max_send_attempts: int,
        retry_base_s: float,
        retry_max_s: float,
        max_message_bytes: int,
        rng: random.Random | None,
    ) -> None:
        self._config = config
        self._queue_url = queue_url if queue_url is not None else config.queue_url
        self.max_send_attempts = max_send_attempts
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self.max_message_bytes = max_message_bytes
        self._rng = rng or random.Random()

    @property
    def queue_url(self) -> str:
        return self._queue_url

    @property
    def dlq_url(self) -> str:
        return self._config.dlq_url

    def _url(self, queue_url: str | None) -> str:
        url = queue_url or self._queue_url
        if not url:
            raise ConfigError([ConfigProblem("AWS_SQS_QUEUE_URL", "", "required for this call")])
        return url

    def _plan(self, entries: Sequence[SendEntry], max_bytes: int | None) -> SendPlan:
        return SendPlan(
            entries,
            max_bytes=max_bytes or self.max_message_bytes,
            max_attempts=self.max_send_attempts,
            base_s=self.retry_base_s,
            cap_s=self.retry_max_s,
            rand=self._rng.random,
        )


class SQSClient(_Base):
    """The engine's client for the main queue of a Config: one aiobotocore client, reused."""

    def __init__(
        self,
        config: Config,
        *,
        queue_url: str | None = None,
        max_send_attempts: int = 4,
        retry_base_s: float = 0.05,
        retry_max_s: float = 1.0,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        send_concurrency: int = 4,
        read_timeout_s: float = SQS_MAX_WAIT_S + 10,
        sdk_attempts: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            config, queue_url, max_send_attempts, retry_base_s, retry_max_s, max_message_bytes, rng
        )
        self.send_concurrency = send_concurrency
        self._read_timeout_s = read_timeout_s
        self._sdk_attempts = sdk_attempts
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> SQSClient:
        if self._client is None:
            stack = contextlib.AsyncExitStack()
            boto = AioConfig(**_botocore_options(self._read_timeout_s, self._sdk_attempts))
            creator = get_session().create_client("sqs", config=boto, **client_kwargs(self._config))
            self._client = await stack.enter_async_context(creator)
            self._stack = stack
        return self

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> SQSClient:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: str, queue_url: str, **kwargs: Any) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("SQSClient is not started: use `async with` or `await start()`")
        try:
            resp: dict[str, Any] = await getattr(self._client, method)(QueueUrl=queue_url, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise wrap_error(exc, _operation(method), queue_url) from exc
        return resp

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]:
        resp = await self._call(
            "receive_message",
            self._url(None),
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_time_s,
            VisibilityTimeout=visibility_timeout_s,
            MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTES),
            MessageAttributeNames=["All"],
        )
        return [received_message(m) for m in resp.get("Messages", ())]

    async def delete(self, receipt_handle: str) -> None:
        await self._call("delete_message", self._url(None), ReceiptHandle=receipt_handle)

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        check_batch_size(entries)
        payload = [{"Id": i, "ReceiptHandle": h} for i, h in entries]
        url = self._url(None)
        return batch_result(await self._call("delete_message_batch", url, Entries=payload))

    async def change_visibility(self, receipt_handle: str, timeout_s: int) -> None:
        await self._call(
            "change_message_visibility",
            self._url(None),
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=timeout_s,
        )

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        check_batch_size(entries)
        payload = [{"Id": i, "ReceiptHandle": h, "VisibilityTimeout": t} for i, h, t in entries]
        resp = await self._call("change_message_visibility_batch", self._url(None), Entries=payload)
        return batch_result(resp)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        payload = send_payload(entries)
        return batch_result(await self._call("send_message_batch", queue_url, Entries=payload))

    async def send_message(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
        queue_url: str | None = None,
    ) -> str:
        kwargs = message_args(body, message_attributes, delay_s)
        resp = await self._call("send_message", self._url(queue_url), **kwargs)
        return str(resp["MessageId"])

    async def send_entries(
        self,
        entries: Sequence[SendEntry],
        *,
        queue_url: str | None = None,
        max_bytes: int | None = None,
    ) -> BatchResult:
        """Send any number of entries; retry only retryable failures; report every entry.

        A queue that does not exist raises (nothing can have been delivered); any other failed
        call fails just its own entries. Retried sends may duplicate (SQS is at-least-once).
        """
        url = self._url(queue_url)
        plan = self._plan(entries, max_bytes)
        gate = asyncio.Semaphore(max(1, self.send_concurrency))

        async def one(chunk: list[SendEntry]) -> BatchResult:
            async with gate:
                try:
                    return await self.send_batch(url, chunk)
                except QueueDoesNotExistError:
                    raise
                except SQSError as exc:
                    return whole_call_failure(exc, chunk)

        while True:
            # Let every call of the round finish before raising, so none outlives this method.
            outcomes = await asyncio.gather(
                *(one(c) for c in plan.chunks()), return_exceptions=True
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:
                raise errors[0]
            delay = plan.record([o for o in outcomes if isinstance(o, BatchResult)])
            if delay is None:
                return plan.result()
            await asyncio.sleep(delay)

    async def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes:
        url = self._url(queue_url)
        resp = await self._call("get_queue_attributes", url, AttributeNames=_DEPTH_ATTRIBUTES)
        return _queue_attributes(resp.get("Attributes", {}))

    async def health_check(self) -> None:
        await self._call("get_queue_attributes", self._url(None), AttributeNames=["QueueArn"])


class SyncSQSClient(_Base):
    """boto3 flavour for threaded web apps and provisioning: publish, depth, create queues."""

    def __init__(
        self,
        config: Config,
        *,
        queue_url: str | None = None,
        max_send_attempts: int = 4,
        retry_base_s: float = 0.05,
        retry_max_s: float = 1.0,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        sdk_attempts: int = 3,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            config, queue_url, max_send_attempts, retry_base_s, retry_max_s, max_message_bytes, rng
        )
        self._sleep = sleep or time.sleep
        # A client of its own Session: boto3 clients are thread-safe, the default session is not.
        self._client: Any = boto3.session.Session().client(
            "sqs",
            config=BotoConfig(**_botocore_options(SQS_MAX_WAIT_S + 10, sdk_attempts)),
            **client_kwargs(config),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SyncSQSClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, queue_url: str | None, **kwargs: Any) -> dict[str, Any]:
        if queue_url is not None:
            kwargs["QueueUrl"] = queue_url
        try:
            resp: dict[str, Any] = getattr(self._client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            where = queue_url or str(kwargs.get("QueueName", ""))
            raise wrap_error(exc, _operation(method), where) from exc
        return resp

    def send_message(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
        queue_url: str | None = None,
    ) -> str:
        kwargs = message_args(body, message_attributes, delay_s)
        return str(self._call("send_message", self._url(queue_url), **kwargs)["MessageId"])

    def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        payload = send_payload(entries)
        return batch_result(self._call("send_message_batch", queue_url, Entries=payload))

    def send_entries(
        self,
        entries: Sequence[SendEntry],
        *,
        queue_url: str | None = None,
        max_bytes: int | None = None,
    ) -> BatchResult:
        """As :meth:`SQSClient.send_entries`, one call after another."""
        url = self._url(queue_url)
        plan = self._plan(entries, max_bytes)
        while True:
            results = []
            for chunk in plan.chunks():
                try:
                    results.append(self.send_batch(url, chunk))
                except QueueDoesNotExistError:
                    raise
                except SQSError as exc:
                    results.append(whole_call_failure(exc, chunk))
            delay = plan.record(results)
            if delay is None:
                return plan.result()
            self._sleep(delay)

    def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes:
        resp = self._call(
            "get_queue_attributes", self._url(queue_url), AttributeNames=_DEPTH_ATTRIBUTES
        )
        return _queue_attributes(resp.get("Attributes", {}))

    def create_queues(
        self, name: str, dlq_name: str, max_receive_count: int = 5, visibility_timeout_s: int = 30
    ) -> tuple[str, str]:
        """Create (or find, when attributes agree) a main queue whose redrive targets a new DLQ."""
        fifo = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        dlq_url = str(
            self._call("create_queue", None, QueueName=dlq_name, Attributes=fifo)["QueueUrl"]
        )
        arn = self._call("get_queue_attributes", dlq_url, AttributeNames=["QueueArn"])
        redrive = (
            f'{{"deadLetterTargetArn":"{arn["Attributes"]["QueueArn"]}",'
            f'"maxReceiveCount":"{max_receive_count}"}}'
        )
        attrs = {**fifo, "RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout_s)}
        main = self._call("create_queue", None, QueueName=name, Attributes=attrs)
        return str(main["QueueUrl"]), dlq_url


if TYPE_CHECKING:

    def _conforms(client: SQSClient) -> DataPlane:
        return client  # SQSClient must keep satisfying the engine's protocol
