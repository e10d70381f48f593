"""FastSQSClient: the engine's hot SQS calls without botocore's per-call machinery.

botocore spends ~1 ms of CPU per call here (event hooks, model-driven serialisation and parsing,
a signer that re-derives its key for every request). This client speaks the same AWS JSON 1.0
protocol (``X-Amz-Target: AmazonSQS.<Op>``) with only what each call needs: msgspec Structs
encode the request and decode the answer, :mod:`goraxfast.core.sigv4` signs from cached keys and
templates, :mod:`goraxfast.sqs.httpclient` keeps connections alive. Measured on a canned local server
(``bench/test_dataplane_bench.py``): ~1/10 of botocore's CPU per ReceiveMessage(10) and
DeleteMessageBatch(10). Credentials, error mapping and retries follow botocore (see
:mod:`goraxfast.sqs.choice`); behaviour is held equal to :class:`goraxfast.sqs.botocore.SQSClient` by
running the same scenarios on both (``tests/test_fastsqs.py``).

One deliberate difference: a send (SendMessage, SendMessageBatch) is never sent again *by this
call* once its bytes may have reached SQS (a timeout, or a connection lost after writing),
because a replay could duplicate messages; it fails with an :class:`SQSError` and its caller
decides. The acker retries dead letters with its own bookkeeping; ``send_entries`` (so
``Publisher.publish_batch``) sends the entries again in its next round, as botocore would,
preferring a possible duplicate to a possibly lost message. Deletes, visibility changes and receives are
safe to repeat: a repeated delete or visibility change has the same effect, and a receive whose
answer was lost only leaves its messages invisible until their visibility timeout ends, as a
crash would. Queue URLs go in the JSON body as given; requests go to the endpoint.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from msgspec import UNSET, UnsetType

from goraxfast.config import Config
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.sigv4 import SigV4Signer, amz_date
from goraxfast.core.sqs_model import (
    QUEUE_ATTRIBUTES_READ,
    RECEIVE_SYSTEM_ATTRIBUTES,
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_WAIT_S,
    BatchFailure,
    BatchResult,
    QueueAttributes,
    ReceivedMessage,
    SendEntry,
    check_batch_size,
    queue_attributes_of,
    send_payload,
    single_message_args,
)
from goraxfast.errors import SQSError
from goraxfast.ops import tracing
from goraxfast.sqs.botocore import AsyncQueueClient, attempt_args, wrap_error
from goraxfast.sqs.compat import (
    RETRY_CODES,
    RETRY_STATUSES,
    CredentialCache,
    RetryQuota,
    backoff_delay_s,
    client_error,
    connections_for,
    endpoint_for,
    resolve_credentials,
    tls_context,
)
from goraxfast.sqs.httpclient import HTTPError, HTTPPool, Response, ResponseTimeout

T = TypeVar("T")
CONTENT_TYPE = "application/x-amz-json-1.0"
USER_AGENT = "goraxfast-fastsqs/0.1"
# --- the wire: msgspec Structs, encoders and decoders made once ---------------------------------


class ReceiveRequest(msgspec.Struct):
    QueueUrl: str
    MaxNumberOfMessages: int
    WaitTimeSeconds: int
    VisibilityTimeout: int
    MessageSystemAttributeNames: tuple[str, ...] = RECEIVE_SYSTEM_ATTRIBUTES
    MessageAttributeNames: tuple[str, ...] = ("All",)
    ReceiveRequestAttemptId: str | UnsetType = UNSET  # FIFO queues only; UNSET is left out


class DeleteEntry(msgspec.Struct):
    Id: str
    ReceiptHandle: str


class VisibilityEntry(msgspec.Struct):
    Id: str
    ReceiptHandle: str
    VisibilityTimeout: int


class BatchRequest(msgspec.Struct):
    QueueUrl: str
    Entries: Sequence[DeleteEntry | VisibilityEntry | dict[str, Any]]


class WireAttribute(msgspec.Struct):
    """A MessageAttributeValue; blobs arrive base64-encoded and msgspec decodes them to bytes."""

    DataType: str | UnsetType = UNSET
    StringValue: str | UnsetType = UNSET
    BinaryValue: bytes | UnsetType = UNSET
    StringListValues: list[str] | UnsetType = UNSET
    BinaryListValues: list[bytes] | UnsetType = UNSET


class SystemAttributes(msgspec.Struct, frozen=True):
    """The system attributes the engine asks for; SQS sends numbers as text (strict=False).
    The two FIFO ones stay text (a SequenceNumber is 20 digits, past int64 at times)."""

    ApproximateReceiveCount: int = 0
    ApproximateFirstReceiveTimestamp: int = 0
    SentTimestamp: int = 0
    MessageGroupId: str = ""
    SequenceNumber: str = ""


NO_SYSTEM_ATTRIBUTES = SystemAttributes()
NO_MESSAGE_ATTRIBUTES = msgspec.Raw(b"{}")


class WireMessage(msgspec.Struct):
    MessageId: str
    ReceiptHandle: str
    Body: str = ""
    Attributes: SystemAttributes = NO_SYSTEM_ATTRIBUTES
    # Kept as raw JSON: only a dead letter ever reads them (see LazyAttributes).
    MessageAttributes: msgspec.Raw = NO_MESSAGE_ATTRIBUTES


class ReceiveResponse(msgspec.Struct):
    Messages: list[WireMessage] = []


class WireOk(msgspec.Struct):
    Id: str
    MessageId: str | UnsetType = UNSET


class WireFailed(msgspec.Struct):
    Id: str
    Code: str = ""
    Message: str = ""
    SenderFault: bool = False


class BatchResponse(msgspec.Struct):
    Successful: list[WireOk] = []
    Failed: list[WireFailed] = []


class SendResponse(msgspec.Struct):
    MessageId: str


class _Counted(msgspec.Struct):
    """What a traced call's span counts in a request or an answer, messages left unparsed."""

    Messages: list[msgspec.Raw] = []
    Entries: list[msgspec.Raw] = []
    Failed: list[msgspec.Raw] = []
    MessageId: str = ""


encode = msgspec.json.Encoder().encode
decode_queue_attributes = msgspec.json.Decoder(dict[str, dict[str, str]]).decode
decode_receive = msgspec.json.Decoder(ReceiveResponse, strict=False).decode
decode_attributes = msgspec.json.Decoder(dict[str, WireAttribute] | None).decode
decode_batch = msgspec.json.Decoder(BatchResponse).decode
decode_send = msgspec.json.Decoder(SendResponse).decode
decode_counted = msgspec.json.Decoder(_Counted).decode
_BYTES = (bytes,)


class LazyAttributes(Mapping[str, dict[str, Any]]):
    """A message's MessageAttributes, decoded on first read.

    The engine reads them only to copy them into a dead letter, so decoding three or four
    attribute Structs per message (and converting them to dicts) for every receive was wasted:
    ~0.8 us per message. The raw bytes are copied out of the response (a ``Raw`` from a decode
    points into the whole body, which would keep all ten messages of a batch alive as long as
    any one of them is held). Attributes the typed decode refuses (a broken server) are kept as
    the server sent them where they are objects, rather than lost; anything else (a bare
    string, ``null``) cannot be an attribute and is left out, so that a dead letter never
    fails on it.
    """

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: msgspec.Raw) -> None:
        self._raw = raw.copy()
        self._decoded: dict[str, dict[str, Any]] | None = None

    def _attributes(self) -> dict[str, dict[str, Any]]:
        if self._decoded is None:
            try:
                wire = decode_attributes(self._raw)
                self._decoded = msgspec.to_builtins(wire, builtin_types=_BYTES) if wire else {}
            except msgspec.ValidationError:
                loose = msgspec.json.decode(self._raw)
                self._decoded = (
                    {k: v for k, v in loose.items() if isinstance(v, dict)}
                    if isinstance(loose, dict)
                    else {}
                )
        return self._decoded

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._attributes()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._attributes())

    def __len__(self) -> int:
        return len(self._attributes())

    def __repr__(self) -> str:
        return repr(self._attributes())


def received(m: WireMessage) -> ReceivedMessage:
    """As :func:`goraxfast.sqs.botocore.received_message` does with botocore's parse (a test holds them equal)."""
    a = m.Attributes
    raw = m.MessageAttributes
    return ReceivedMessage(
        m.MessageId,
        m.ReceiptHandle,
        m.Body.encode(),
        a.ApproximateReceiveCount,
        a.ApproximateFirstReceiveTimestamp,
        a.SentTimestamp,
        {} if raw is NO_MESSAGE_ATTRIBUTES else LazyAttributes(raw),
        a.MessageGroupId,
        a.SequenceNumber,
    )


def fast_batch_result(resp: BatchResponse) -> BatchResult:
    """As :func:`goraxfast.sqs.botocore.batch_result` does with botocore's parse."""
    ok = resp.Successful
    failed = tuple([BatchFailure(f.Id, f.Code, f.Message, f.SenderFault) for f in resp.Failed])
    ids = {s.Id: s.MessageId for s in ok if s.MessageId is not UNSET}  # send batches only
    return BatchResult(tuple([s.Id for s in ok]), failed, ids)


def send_request(payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """botocore's blob rule for attributes: text is UTF-8 encoded before base64 (msgspec's)."""
    for entry in payload:
        for attr in entry.get("MessageAttributes", {}).values():
            if isinstance(attr.get("BinaryValue"), str):
                attr["BinaryValue"] = attr["BinaryValue"].encode()
            if "BinaryListValues" in attr:
                attr["BinaryListValues"] = [
                    v.encode() if isinstance(v, str) else v for v in attr["BinaryListValues"]
                ]
    return payload


class FastSQSClient(AsyncQueueClient):
    """The hot calls of :class:`goraxfast.sqs.botocore.SQSClient` (the engine's ``DataPlane``, and what
    :class:`goraxfast.publish.publisher.Publisher` sends with), leaner."""

    def __init__(
        self,
        config: Config,
        *,
        queue_url: str | None = None,
        credentials: Credentials | None = None,
        max_attempts: int = 3,
        response_margin_s: float = SQS_MAX_WAIT_S,
        connect_timeout_s: float = 5.0,
        max_connections: int | None = None,
        backoff_base_s: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
        max_send_attempts: int = 4,
        retry_base_s: float = 0.05,
        retry_max_s: float = 1.0,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        send_concurrency: int = 4,
    ) -> None:
        """``max_attempts`` is per HTTP call (botocore's standard retries); ``max_send_attempts``
        and the ``retry_*`` settings are :meth:`send_entries`' rounds, as in SQSClient."""
        super().__init__(
            config, queue_url, max_send_attempts, retry_base_s, retry_max_s, max_message_bytes, rng
        )
        self.send_concurrency = send_concurrency
        self._credentials = credentials
        self.max_attempts = max(1, max_attempts)
        #: Time allowed for an answer beyond a long poll's own wait.
        self.response_margin_s = response_margin_s
        self.backoff_base_s = backoff_base_s
        self.endpoint = endpoint_for(config)
        self._path = urlsplit(self.endpoint).path or "/"
        self._pool_options: dict[str, Any] = {
            "max_connections": connections_for(config)
            if max_connections is None
            else max_connections,
            "connect_timeout_s": connect_timeout_s,
            "ssl_context": ssl_context,
        }
        self._clock = clock
        self._stamp_s = -1
        self._stamp = ""
        self._signer = SigV4Signer(config.aws_region, "sqs")
        self._quota = RetryQuota()
        self._pool: HTTPPool | None = None
        self._creds: CredentialCache | None = None
        #: Whether SQS calls are traced, decided here once: when not, nothing is in their way.
        self.traced = tracing.enabled()
        if self.traced:
            origin = urlsplit(self.endpoint)
            self._span_origin = (origin.hostname or "", origin.port)
            self._call = self._traced_call  # type: ignore[method-assign]

    async def start(self) -> FastSQSClient:
        if self._pool is None:
            creds = self._credentials or await resolve_credentials(self._config)
            self._creds = CredentialCache(creds)
            origin = urlsplit(self.endpoint)
            if origin.scheme == "https" and self._pool_options["ssl_context"] is None:
                self._pool_options["ssl_context"] = await asyncio.to_thread(tls_context)
            self._pool = HTTPPool(f"{origin.scheme}://{origin.netloc}", **self._pool_options)
            if self.traced:
                self._pool.request = _reporting(self._pool.request)  # type: ignore[method-assign]
        return self

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> FastSQSClient:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the DataPlane ---------------------------------------------------------------------------

    async def receive(
        self,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        *,
        attempt_id: str | None = None,
    ) -> list[ReceivedMessage]:
        url = self._url(None)
        request = ReceiveRequest(url, max_messages, wait_time_s, visibility_timeout_s)
        if attempt_id is not None:
            # a retry of this call below sends the same body, so the same attempt id
            request.ReceiveRequestAttemptId = attempt_args(url, attempt_id).get(
                "ReceiveRequestAttemptId", UNSET
            )
        body = await self._call("ReceiveMessage", url, encode(request), wait_s=wait_time_s)
        resp = self._decode(decode_receive, body, "ReceiveMessage", url)
        return [received(m) for m in resp.Messages]

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        check_batch_size(entries)
        url = self._url(None)
        payload = [DeleteEntry(i, h) for i, h in entries]
        # One attempt: the acker retries acks itself, and must see a failure at once to stop
        # taking messages while deletes fail (a retry loop in here would hide an outage).
        return await self._batch("DeleteMessageBatch", url, BatchRequest(url, payload), attempts=1)

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        check_batch_size(entries)
        url = self._url(None)
        payload = [VisibilityEntry(i, h, t) for i, h, t in entries]
        request = BatchRequest(url, payload)
        return await self._batch("ChangeMessageVisibilityBatch", url, request, attempts=1)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if not entries:
            return BatchResult((), ())
        request = BatchRequest(queue_url, send_request(send_payload(entries)))
        return await self._batch("SendMessageBatch", queue_url, request, replay_safe=False)

    async def queue_attributes(self, queue_url: str | None = None) -> QueueAttributes:
        """Depths and MaximumMessageSize (the publisher sizes its batches by the latter)."""
        url = self._url(queue_url)
        body = encode({"QueueUrl": url, "AttributeNames": QUEUE_ATTRIBUTES_READ})
        raw = await self._call("GetQueueAttributes", url, body)
        answer = self._decode(decode_queue_attributes, raw, "GetQueueAttributes", url)
        return queue_attributes_of(answer.get("Attributes", {}))

    # -- single-message calls (cheap to offer; the publisher and tests use them) -----------------

    async def delete(self, receipt_handle: str) -> None:
        url = self._url(None)
        request = {"QueueUrl": url, "ReceiptHandle": receipt_handle}
        await self._call("DeleteMessage", url, encode(request))

    async def change_visibility(self, receipt_handle: str, timeout_s: int) -> None:
        url = self._url(None)
        request = {"QueueUrl": url, "ReceiptHandle": receipt_handle, "VisibilityTimeout": timeout_s}
        await self._call("ChangeMessageVisibility", url, encode(request))

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
        url = self._url(queue_url)
        [args] = send_request(
            [single_message_args(url, body, message_attributes, delay_s, group_id, dedup_id)]
        )
        raw = await self._call("SendMessage", url, encode({"QueueUrl": url, **args}), replay=False)
        return self._decode(decode_send, raw, "SendMessage", url).MessageId

    # -- one call: sign, send, retry as botocore's standard mode ---------------------------------

    async def _batch(
        self,
        operation: str,
        url: str,
        request: BatchRequest,
        *,
        replay_safe: bool = True,
        attempts: int | None = None,
    ) -> BatchResult:
        raw = await self._call(
            operation, url, encode(request), replay=replay_safe, attempts=attempts
        )
        return fast_batch_result(self._decode(decode_batch, raw, operation, url))

    async def _call(
        self,
        operation: str,
        url: str,
        body: bytes,
        *,
        wait_s: int = 0,
        replay: bool = True,
        attempts: int | None = None,
    ) -> bytes:
        pool, creds = self._pool, self._creds
        if pool is None or creds is None:
            raise RuntimeError("FastSQSClient is not started: use `async with` or `await start()`")
        loop = asyncio.get_running_loop()
        target = [("X-Amz-Target", "AmazonSQS." + operation), ("Content-Type", CONTENT_TYPE)]
        attempt, spent = 1, 0
        most = self.max_attempts if attempts is None else attempts
        while True:
            error: Exception
            try:
                frozen = creds.current(loop.time()) or await creds.refresh(loop.time())
                signed = self._signer.sign(
                    frozen, "POST", pool.host_header, self._path, "", target, body, self._now()
                )
                headers = [*target, *signed.items(), ("User-Agent", USER_AGENT)]
                resp = await pool.request(
                    "POST",
                    self._path,
                    headers,
                    body,
                    timeout_s=wait_s + self.response_margin_s,
                    replay_safe=replay,
                )
            except HTTPError as exc:
                error, retryable = exc, replay or not exc.sent
                timeout = isinstance(exc, ResponseTimeout)
                cost = RetryQuota.TIMEOUT_COST if timeout else RetryQuota.RETRY_COST
            except BotoCoreError as exc:  # no credentials, or botocore could not refresh them
                raise wrap_error(exc, operation, url) from exc
            else:
                if resp.status < 300:
                    self._quota.release(spent or RetryQuota.SUCCESS_REFILL)
                    return resp.body
                refused = client_error(resp, operation)
                code = refused.response["Error"]["Code"]
                error, retryable = refused, resp.status in RETRY_STATUSES or code in RETRY_CODES
                cost = RetryQuota.RETRY_COST
            if not retryable or attempt >= most or not self._quota.acquire(cost):
                raise wrap_error(error, operation, url) from error
            spent = cost
            await asyncio.sleep(backoff_delay_s(attempt, self._rng.random(), self.backoff_base_s))
            attempt += 1

    async def _traced_call(
        self,
        operation: str,
        url: str,
        body: bytes,
        *,
        wait_s: int = 0,
        replay: bool = True,
        attempts: int | None = None,
    ) -> bytes:
        """:meth:`_call` inside a CLIENT span (installed in its place while tracing)."""
        host, port = self._span_origin
        call = tracing.ClientCall(operation, url, self._config.aws_region, host, port)
        try:
            raw = await FastSQSClient._call(
                self, operation, url, body, wait_s=wait_s, replay=replay, attempts=attempts
            )
        except BaseException as exc:
            call.end(exc)
            raise
        call.end(None, _counts(body, raw))
        return raw

    def _now(self) -> datetime | str:
        """The signing time; without an injected clock, its X-Amz-Date text made once a second."""
        if self._clock is not None:
            return self._clock()
        second = int(time.time())
        if second != self._stamp_s:
            self._stamp_s = second
            self._stamp = amz_date(datetime.fromtimestamp(second, UTC))
        return self._stamp

    def _decode(self, decode: Callable[[bytes], T], raw: bytes, operation: str, url: str) -> T:
        try:
            return decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SQSError(operation, url, f"unreadable response: {exc}") from exc


def _counts(request: bytes, answer: bytes) -> dict[str, Any]:
    """A traced call's counts: the messages a receive brought or a batch carried, the entries
    SQS refused, a sent message's id."""
    counts: dict[str, Any] = {}
    try:
        asked, told = decode_counted(request), decode_counted(answer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return counts  # the call's own decode says what is wrong with it
    if told.Messages or asked.Entries:
        counts["messaging.batch.message_count"] = len(told.Messages or asked.Entries)
    elif b"MaxNumberOfMessages" in request:
        counts["messaging.batch.message_count"] = 0  # an empty receive
    if told.Failed:
        counts["goraxfast.failed_count"] = len(told.Failed)
    if told.MessageId:
        counts["messaging.message.id"] = told.MessageId
    return counts


def _reporting(request: Callable[..., Any]) -> Callable[..., Any]:
    """The pool's ``request``, telling the SQS call running it what came back (each attempt)."""

    async def reporting(*args: Any, **kwargs: Any) -> Response:
        resp: Response = await request(*args, **kwargs)
        call = tracing.CURRENT_CALL.get()
        if call is not None:
            call.answered(resp.status, resp.headers.get("x-amzn-requestid"))
        return resp

    return reporting


def _conforms(client: FastSQSClient) -> DataPlane:
    return client  # mypy checks that FastSQSClient keeps satisfying the engine's protocol
