"""SQS clients: one long-lived aiobotocore client for the engine, a thin boto3 one for web apps.

The engine depends only on :class:`goraxfast.core.dataplane.DataPlane` (the four hot calls), so a leaner client can
replace botocore later without touching it. Batch calls here make exactly one request and report
every entry; only :meth:`SQSClient.send_entries` splits and retries, and the decisions it makes
(chunking by count and size, what is retryable, how long to wait) live in :class:`~goraxfast.core.send_plan.SendPlan`, a
pure state machine that the async and the sync client both drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from goraxfast.config import Config
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.send_plan import PlannedCall, SendPlan, whole_call_failure
from goraxfast.core.sqs_model import (
    QUEUE_ATTRIBUTES_READ,
    QUEUE_MISSING_CODES,
    RECEIVE_SYSTEM_ATTRIBUTES,
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_WAIT_S,
    BatchResult,
    QueueAttributes,
    ReceivedMessage,
    SendEntry,
    batch_result,
    check_batch_size,
    check_token,
    is_fifo_queue,
    queue_attributes_of,
    received_message,
    send_payload,
    single_message_args,
)
from goraxfast.errors import (
    ConfigError,
    ConfigProblem,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
)
from goraxfast.sqs.compat import connections_for

__all__ = [
    "AsyncQueueClient",
    "QueueClientBase",
    "SQSClient",
    "SyncSQSClient",
    "client_kwargs",
    "wrap_error",
]


def wrap_error(exc: Exception, operation: str, queue_url: str) -> SQSError:
    """Turn a botocore error into ours, naming the operation, the queue and the AWS code."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "Unknown")
        detail = str(err.get("Message") or exc)
        if code in QUEUE_MISSING_CODES or err.get("QueryErrorCode") in QUEUE_MISSING_CODES:
            return QueueDoesNotExistError(operation, queue_url, detail, code)
        if code.endswith("ReceiptHandleIsInvalid") or (
            code == "InvalidParameterValue" and "receipt handle" in detail.lower()
        ):
            return ReceiptHandleInvalidError(operation, queue_url, detail, code)
        return SQSError(operation, queue_url, detail, code)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return SQSError(operation, queue_url, f"{type(exc).__name__}: {exc}", "NoCredentials")
    if isinstance(exc, ProfileNotFound):
        return SQSError(operation, queue_url, f"{type(exc).__name__}: {exc}", "ProfileNotFound")
    return SQSError(operation, queue_url, f"{type(exc).__name__}: {exc}")


def _operation(method: str) -> str:
    return "".join(part.title() for part in method.split("_"))


def client_kwargs(config: Config) -> dict[str, Any]:
    """Region, endpoint and credentials exactly as gorax chose them (the README's "Configuration")."""
    kwargs: dict[str, Any] = {"region_name": config.aws_region}
    if config.aws_endpoint:
        kwargs["endpoint_url"] = config.aws_endpoint
    if config.static_credentials:
        kwargs["aws_access_key_id"] = config.aws_access_key_id
        kwargs["aws_secret_access_key"] = config.aws_secret_access_key
        if config.aws_session_token:
            kwargs["aws_session_token"] = config.aws_session_token
    return kwargs


def _botocore_options(
    read_timeout_s: float, sdk_attempts: int, max_pool_connections: int = 50
) -> dict[str, Any]:
    # The read timeout must outlast the longest legal long poll, or idle receives would fail.
    # botocore itself retries whole calls (throttling, 5xx, lost connections); we never
    # retry a whole call on top except inside send_entries.
    return {
        "read_timeout": read_timeout_s,
        "connect_timeout": 5,
        "max_pool_connections": max_pool_connections,
        # total_max_attempts counts the first try; botocore's max_attempts counts only retries
        "retries": {"mode": "standard", "total_max_attempts": max(1, sdk_attempts)},
    }


class QueueClientBase:
    """What every client shares: queue URLs, send-retry settings and the lazily required main
    queue (botocore's async and sync clients and the fast one)."""

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

    def _plan(self, entries: Sequence[SendEntry], max_bytes: int | None, url: str) -> SendPlan:
        return SendPlan(
            entries,
            max_bytes=max_bytes or self.max_message_bytes,
            max_attempts=self.max_send_attempts,
            base_s=self.retry_base_s,
            cap_s=self.retry_max_s,
            rand=self._rng.random,
            fifo=is_fifo_queue(url),
        )


def attempt_args(queue_url: str, attempt_id: str | None) -> dict[str, Any]:
    """ReceiveRequestAttemptId for a FIFO queue (checked), nothing for a standard one."""
    if attempt_id is None or not is_fifo_queue(queue_url):
        return {}
    check_token("ReceiveRequestAttemptId", attempt_id)
    return {"ReceiveRequestAttemptId": attempt_id}


class AsyncQueueClient(QueueClientBase):
    """What the asyncio clients (aiobotocore's and the fast one) share: ``send_entries`` over
    their own ``send_batch``."""

    send_concurrency: int

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        raise NotImplementedError

    async def send_entries(
        self,
        entries: Sequence[SendEntry],
        *,
        queue_url: str | None = None,
        max_bytes: int | None = None,
    ) -> BatchResult:
        """Send any number of entries; retry only retryable failures; report every entry.

        A queue that does not exist raises (nothing can have been delivered); any other failed
        call fails just its own entries. Retried sends may duplicate on a standard queue (SQS is
        at-least-once); a FIFO queue drops a copy whose MessageDeduplicationId it saw in the
        last 5 minutes. On a FIFO queue each message group keeps its order (see
        :class:`SendPlan`): up to ``send_concurrency`` calls are in flight, never two with
        one group.
        """
        url = self._url(queue_url)
        plan = self._plan(entries, max_bytes, url)
        gate = asyncio.Semaphore(max(1, self.send_concurrency))
        while True:
            calls = plan.calls()
            finished = [asyncio.Event() for _ in calls]
            # Let every call of the round finish before raising, so none outlives this method.
            outcomes = await asyncio.gather(
                *(self._send_call(plan, url, c, finished, gate) for c in calls),
                return_exceptions=True,
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:
                raise errors[0]
            delay = plan.end_round()
            if delay is None:
                return plan.result()
            await asyncio.sleep(delay)

    async def _send_call(
        self,
        plan: SendPlan,
        url: str,
        call: PlannedCall,
        finished: Sequence[asyncio.Event],
        gate: asyncio.Semaphore,
    ) -> None:
        """One call of a round: after the calls it waits for, what the plan still sends of it."""
        try:
            for before in call.after:
                await finished[before].wait()
            chunk = plan.take(call)
            if not chunk:
                return
            result: BatchResult | None = None
            try:
                async with gate:
                    try:
                        result = await self.send_batch(url, chunk)
                    except QueueDoesNotExistError:
                        raise
                    except SQSError as exc:
                        result = whole_call_failure(exc, chunk)
            finally:
                plan.settle(chunk, result)
        finally:
            finished[call.index].set()


class SQSClient(AsyncQueueClient):
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
        self._send_client: Any = None

    async def start(self) -> SQSClient:
        if self._client is None:
            stack = contextlib.AsyncExitStack()
            session = get_session()
            kwargs = client_kwargs(self._config)
            boto = AioConfig(
                **_botocore_options(
                    self._read_timeout_s, self._sdk_attempts, connections_for(self._config)
                )
            )
            self._client = await stack.enter_async_context(
                session.create_client("sqs", config=boto, **kwargs)
            )
            # SendMessageBatch is not idempotent: botocore would send it again after a lost
            # answer, each time a possible copy, and our callers (send_entries' rounds, the
            # acker's bounded dead-letter resends) already decide what to send again. So batch
            # sends go through a client of their own that makes one attempt, as the fast
            # client does once a request has gone out.
            once = AioConfig(
                **_botocore_options(self._read_timeout_s, 1, connections_for(self._config))
            )
            self._send_client = await stack.enter_async_context(
                session.create_client("sqs", config=once, **kwargs)
            )
            self._stack = stack
        return self

    async def close(self) -> None:
        stack, self._stack, self._client, self._send_client = self._stack, None, None, None
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

    async def _call(
        self, method: str, queue_url: str, *, once: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        client = self._send_client if once else self._client
        if client is None:
            raise RuntimeError("SQSClient is not started: use `async with` or `await start()`")
        try:
            resp: dict[str, Any] = await getattr(client, method)(QueueUrl=queue_url, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise wrap_error(exc, _operation(method), queue_url) from exc
        return resp

    async def receive(
        self,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        *,
        attempt_id: str | None = None,
    ) -> list[ReceivedMessage]:
        url = self._url(None)
        resp = await self._call(
            "receive_message",
            url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_time_s,
            VisibilityTimeout=visibility_timeout_s,
            MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTES),
            MessageAttributeNames=["All"],
            **attempt_args(url, attempt_id),
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
        # One attempt, as the fast client: the acker retries acks and must see failures.
        resp = await self._call("delete_message_batch", url, once=True, Entries=payload)
        return batch_result(resp)

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
        url = self._url(None)
        resp = await self._call("change_message_visibility_batch", url, once=True, Entries=payload)
        return batch_result(resp)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        payload = send_payload(entries)
        resp = await self._call("send_message_batch", queue_url, once=True, Entries=payload)
        return batch_result(resp)

    async def send_message(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
        queue_url: str | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> str:
        """One message; ``group_id`` / ``dedup_id`` as in :class:`SendEntry` (ValueError before
        any call for what SQS would refuse of them on this queue)."""
        url = self._url(queue_url)
        kwargs = single_message_args(url, body, message_attributes, delay_s, group_id, dedup_id)
        resp = await self._call("send_message", url, **kwargs)
        return str(resp["MessageId"])

    async def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes:
        url = self._url(queue_url)
        resp = await self._call(
            "get_queue_attributes", url, AttributeNames=list(QUEUE_ATTRIBUTES_READ)
        )
        return queue_attributes_of(resp.get("Attributes", {}))

    async def health_check(self) -> None:
        await self._call("get_queue_attributes", self._url(None), AttributeNames=["QueueArn"])


class SyncSQSClient(QueueClientBase):
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
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> str:
        url = self._url(queue_url)
        kwargs = single_message_args(url, body, message_attributes, delay_s, group_id, dedup_id)
        return str(self._call("send_message", url, **kwargs)["MessageId"])

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
        plan = self._plan(entries, max_bytes, url)
        while True:
            for call in plan.calls():
                chunk = plan.take(call)
                if not chunk:
                    continue
                try:
                    result = self.send_batch(url, chunk)
                except QueueDoesNotExistError:
                    raise
                except SQSError as exc:
                    result = whole_call_failure(exc, chunk)
                plan.settle(chunk, result)
            delay = plan.end_round()
            if delay is None:
                return plan.result()
            self._sleep(delay)

    def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes:
        resp = self._call(
            "get_queue_attributes", self._url(queue_url), AttributeNames=list(QUEUE_ATTRIBUTES_READ)
        )
        return queue_attributes_of(resp.get("Attributes", {}))

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
