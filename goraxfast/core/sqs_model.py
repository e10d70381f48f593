"""SQS's data model and the pure decisions both clients share: sizes, chunks, retries, parsing.

No I/O here: the aiobotocore client (:mod:`goraxfast.sqs.botocore`), the boto3 one and the lean client
(:mod:`goraxfast.sqs.fast`) all drive these functions, so the rules exist once. How a batch send
is split into rounds and retried is :mod:`goraxfast.core.send_plan`, built on these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

# --- SQS quotas, each defined once here ---------------------------------------------------------
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-quotas.html and
# the batch API references. Everything else imports these names.
#: Entries per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch, and
#: messages per ReceiveMessage.
SQS_MAX_BATCH = 10
#: Longest long poll.
SQS_MAX_WAIT_S = 20
#: Longest visibility timeout, counted from the first receive (12 h).
SQS_MAX_VISIBILITY_S = 43_200
#: Message attributes per message.
SQS_MAX_ATTRIBUTES = 10
#: The largest MaximumMessageSize a queue may have: no SQS message (or batch) is larger.
SQS_MAX_MESSAGE_BYTES = 1_048_576
#: MaximumMessageSize when a queue does not say: 1 MiB since AWS's 2025 change (botocore's model
#: and moto agree). Queues created earlier may hold 256 KiB: read the attribute, never assume.
SQS_DEFAULT_MAX_MESSAGE_BYTES = SQS_MAX_MESSAGE_BYTES
#: The smallest MaximumMessageSize an older queue may have by default: the safe guess when a
#: queue's attribute cannot be read.
SQS_LEGACY_MAX_MESSAGE_BYTES = 262_144
#: What the engine and ``goraxfast stats`` read of a queue: its depth and its message size limit.
#: Also whether it is FIFO and deduplicates by content (the publisher's choice of
#: MessageDeduplicationId); a standard queue returns neither, which reads as false.
QUEUE_ATTRIBUTES_READ = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "MaximumMessageSize",
    "FifoQueue",
    "ContentBasedDeduplication",
)
#: MessageGroupId comes with every message of a FIFO queue and with those published with one to a
#: standard queue (fair queues); SequenceNumber with FIFO messages only. Asking costs nothing when
#: they are absent.
RECEIVE_SYSTEM_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
    "MessageGroupId",
    "SequenceNumber",
)
#: MessageGroupId, MessageDeduplicationId and ReceiveRequestAttemptId: 1-128 characters of
#: letters, digits and punctuation (``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``), i.e. printable
#: ASCII without the space.
SQS_MAX_TOKEN_CHARS = 128
#: SQS keeps a FIFO message's MessageDeduplicationId (and a ReceiveRequestAttemptId) this long.
SQS_DEDUPLICATION_INTERVAL_S = 300
#: A FIFO queue's name ends so (SQS's rule): how a client knows one from its URL alone.
FIFO_SUFFIX: Final = ".fifo"
#: The one table of SQS error codes whose verdict is not "retry unless it is the sender's fault":
#: code -> (try again?, why). Every client, the publisher and the acker read it through
#: :func:`is_retryable`, so no two places disagree. A code not listed here follows SQS's own
#: ``SenderFault`` flag (a server-side fault is retried, a request SQS calls malformed is not).
ERROR_VERDICTS: Mapping[str, tuple[bool, str]] = {
    # throttled: the same request succeeds later, though SQS calls it the sender's fault
    "ThrottlingException": (True, "throttled"),
    "Throttling": (True, "throttled"),
    "RequestThrottled": (True, "throttled"),
    "AWS.SimpleQueueService.RequestThrottled": (True, "throttled"),
    "KmsThrottled": (True, "KMS throttled the queue's key"),
    # the service's own trouble, whatever the SenderFault flag of a given server says
    "InternalError": (True, "server error"),
    "InternalFailure": (True, "server error"),
    "ServiceUnavailable": (True, "server unavailable"),
    # ours: the request got no answer (connection lost, timed out); it may have been carried out
    "RequestFailed": (True, "no answer"),
    # a receipt handle that is stale stays stale: the message is back in the queue already
    "ReceiptHandleIsInvalid": (False, "receipt handle no longer valid"),
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid": (False, "receipt handle no longer valid"),
    "MessageNotInflight": (False, "message no longer in flight"),
    "AWS.SimpleQueueService.MessageNotInflight": (False, "message no longer in flight"),
    # the request itself is wrong: sending it again gives the same answer
    "InvalidParameterValue": (False, "invalid request"),
    "MissingParameter": (False, "invalid request"),
    "InvalidMessageContents": (False, "body SQS refuses"),
    "MessageTooLong": (False, "message over the queue's size limit"),
    "BatchRequestTooLong": (False, "batch over the size limit"),
    "BatchEntryIdsNotDistinct": (False, "invalid request"),
    "InvalidBatchEntryId": (False, "invalid request"),
    "TooManyEntriesInBatchRequest": (False, "invalid request"),
    "EmptyBatchRequest": (False, "invalid request"),
    "UnsupportedOperation": (False, "unsupported"),
    # no retry can fix these: the queue, the key or the permission is missing
    "AWS.SimpleQueueService.NonExistentQueue": (False, "queue does not exist"),
    "QueueDoesNotExist": (False, "queue does not exist"),
    "AccessDenied": (False, "access denied"),
    "AccessDeniedException": (False, "access denied"),
    "InvalidClientTokenId": (False, "invalid credentials"),
    "InvalidAccessKeyId": (False, "invalid credentials"),
    "SignatureDoesNotMatch": (False, "invalid credentials"),
    "KmsAccessDenied": (False, "KMS key not usable"),
    "KmsDisabled": (False, "KMS key not usable"),
    "KmsNotFound": (False, "KMS key not usable"),
    "KmsInvalidState": (False, "KMS key not usable"),
    "KmsInvalidKeyUsage": (False, "KMS key not usable"),
    "KmsOptInRequired": (False, "KMS key not usable"),
    "UnrecognizedClientException": (False, "invalid credentials"),
    # ours: an entry held back so as not to overtake an earlier one of its FIFO message group
    # that could not be sent (see SendPlan); nothing was sent, so sending again is safe
    "PrecedingMessageNotSent": (True, "an earlier message of its group was not sent"),
    # ours: botocore found no credentials, or no such profile (no request was made)
    "NoCredentials": (False, "no credentials found"),
    "ProfileNotFound": (False, "no such AWS profile"),
}
#: Errors no retry can fix: met at start, they stop the engine with one line (exit 2).
UNUSABLE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
    | {"AccessDenied", "AccessDeniedException"}
    | {"InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
    | {"UnrecognizedClientException", "NoCredentials", "ProfileNotFound"}
)
#: Codes worth another attempt even when SQS calls them the sender's fault.
RETRYABLE_CODES = frozenset(code for code, (retry, _) in ERROR_VERDICTS.items() if retry)
#: A whole call that failed with one of these may still have been carried out by SQS.
AMBIGUOUS_CODES = frozenset({"RequestFailed"})
QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}\Z")
# Characters SQS accepts in a body (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
_BAD_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TOKEN = re.compile(rf"[!-~]{{1,{SQS_MAX_TOKEN_CHARS}}}\Z")
#: The code of :data:`ERROR_VERDICTS` for an entry :class:`SendPlan` held back.
HELD_BACK_CODE = "PrecedingMessageNotSent"


def is_entry_id(entry_id: str) -> bool:
    """A batch entry id SQS accepts: 1-80 of ``[A-Za-z0-9_-]``."""
    return _ENTRY_ID.match(entry_id) is not None


def is_fifo_queue(queue_url: str) -> bool:
    """Whether the queue at this URL is a FIFO queue (its name ends in ``.fifo``)."""
    return queue_url.endswith(FIFO_SUFFIX)


def token_problem(name: str, value: str) -> str | None:
    """Why SQS would refuse ``value`` as a MessageGroupId, MessageDeduplicationId or
    ReceiveRequestAttemptId (``name`` says which), or None when it is fine."""
    if _TOKEN.match(value):
        return None
    if not value:
        return f"{name} is empty"
    if len(value) > SQS_MAX_TOKEN_CHARS:
        return f"{name} is {len(value)} characters, over SQS's {SQS_MAX_TOKEN_CHARS}"
    bad = next(c for c in value if not "!" <= c <= "~")
    return (
        f"{name} has a character SQS refuses ({bad!r}): only letters, digits and punctuation, "
        "printable ASCII without spaces"
    )


def check_token(name: str, value: str) -> None:
    """Raise ValueError for a value :func:`token_problem` refuses."""
    problem = token_problem(name, value)
    if problem is not None:
        raise ValueError(problem)


class ReceivedMessage(msgspec.Struct, frozen=True, gc=False):
    """One message as ReceiveMessage returned it. A Struct, not a frozen dataclass: one is built
    per message received, in ~0.1 us against ~0.85 us.

    ``group_id`` is its MessageGroupId ("" when it has none: a standard queue's message published
    without one); ``sequence_number`` its SequenceNumber (FIFO queues; "" otherwise). The order
    of a group is the order SQS delivers it in: the sequence number is for logs, not for sorting
    (moto's are random).
    """

    message_id: str
    receipt_handle: str
    body: bytes
    receive_count: int
    first_received_ms: int
    sent_ms: int
    message_attributes: Mapping[str, dict[str, Any]]
    group_id: str = ""
    sequence_number: str = ""


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
    """One message to send. ``group_id`` is its MessageGroupId (required by a FIFO queue; on a
    standard queue it names the tenant of SQS fair queues), ``dedup_id`` its
    MessageDeduplicationId (FIFO queues only); None sends none. Neither counts towards the
    message's size: SQS measures the body and the message attributes."""

    id: str
    body: str
    message_attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    delay_s: int = 0
    group_id: str | None = None
    dedup_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    visible: int
    in_flight: int
    delayed: int
    maximum_message_size: int = SQS_DEFAULT_MAX_MESSAGE_BYTES
    fifo: bool = False
    content_based_deduplication: bool = False

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


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


def entry_problem(entry: SendEntry, max_bytes: int, *, fifo: bool = False) -> BatchFailure | None:
    """Why SQS would refuse this entry outright; caught here so it cannot sink its whole batch
    (moto refuses a whole SendMessageBatch for one FIFO entry's DelaySeconds). ``fifo``: the
    queue is a FIFO queue."""
    size = entry_size(entry)
    if size > max_bytes:
        text = f"message is {size} bytes, over the limit of {max_bytes} bytes"
        return BatchFailure(entry.id, "MessageTooLong", text, True)
    bad = _BAD_CHAR.search(entry.body)
    if bad:
        text = f"body has a character SQS refuses ({bad.group()!r} at {bad.start()})"
        return BatchFailure(entry.id, "InvalidMessageContents", text, True)
    refused = ids_problem(entry.group_id, entry.dedup_id, entry.delay_s, fifo=fifo)
    if refused is not None:
        code = "MissingParameter" if fifo and entry.group_id is None else "InvalidParameterValue"
        return BatchFailure(entry.id, code, refused, True)
    return None


def ids_problem(
    group_id: str | None, dedup_id: str | None, delay_s: int, *, fifo: bool
) -> str | None:
    """What SQS would refuse in a message's group id, deduplication id or per-message delay."""
    for name, value in (("MessageGroupId", group_id), ("MessageDeduplicationId", dedup_id)):
        problem = None if value is None else token_problem(name, value)
        if problem is not None:
            return problem
    if fifo:
        if group_id is None:
            return "a FIFO queue requires a MessageGroupId on every message"
        if delay_s:
            return (
                f"DelaySeconds={delay_s} per message is not allowed on a FIFO queue "
                "(set the queue's own DelaySeconds)"
            )
    elif dedup_id is not None:
        return "MessageDeduplicationId is for FIFO queues only"
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
    """Whether the same entry may succeed if sent again: :data:`ERROR_VERDICTS`, else SenderFault."""
    verdict = ERROR_VERDICTS.get(failure.code)
    return not failure.sender_fault if verdict is None else verdict[0]


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, so retries spread but never 0."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + ceiling / 2 * rand


def check_batch_size(entries: Sequence[object]) -> None:
    if len(entries) > SQS_MAX_BATCH:
        raise ValueError(f"a batch holds at most {SQS_MAX_BATCH} entries, got {len(entries)}")


def message_args(
    body: str,
    attributes: Mapping[str, Mapping[str, Any]] | None,
    delay_s: int,
    group_id: str | None = None,
    dedup_id: str | None = None,
) -> dict[str, Any]:
    args: dict[str, Any] = {"MessageBody": body}
    if attributes:
        args["MessageAttributes"] = {k: dict(v) for k, v in attributes.items()}
    if delay_s:  # 0 leaves the queue's own DelaySeconds in force
        args["DelaySeconds"] = delay_s
    if group_id is not None:
        args["MessageGroupId"] = group_id
    if dedup_id is not None:
        args["MessageDeduplicationId"] = dedup_id
    return args


def single_message_args(
    queue_url: str,
    body: str,
    attributes: Mapping[str, Mapping[str, Any]] | None,
    delay_s: int,
    group_id: str | None,
    dedup_id: str | None,
) -> dict[str, Any]:
    """A SendMessage's arguments; ValueError, before any call, for what SQS would refuse of
    the group id, deduplication id or delay on this queue."""
    problem = ids_problem(group_id, dedup_id, delay_s, fifo=is_fifo_queue(queue_url))
    if problem is not None:
        raise ValueError(problem)
    return message_args(body, attributes, delay_s, group_id, dedup_id)


def send_payload(entries: Sequence[SendEntry]) -> list[dict[str, Any]]:
    check_batch_size(entries)
    return [
        {
            "Id": e.id,
            **message_args(e.body, e.message_attributes, e.delay_s, e.group_id, e.dedup_id),
        }
        for e in entries
    ]


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
        group_id=attrs.get("MessageGroupId", ""),
        sequence_number=attrs.get("SequenceNumber", ""),
    )


def queue_attributes_of(attrs: Mapping[str, str]) -> QueueAttributes:
    return QueueAttributes(
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        maximum_message_size=int(attrs.get("MaximumMessageSize", SQS_DEFAULT_MAX_MESSAGE_BYTES)),
        fifo=attrs.get("FifoQueue", "false").lower() == "true",
        content_based_deduplication=attrs.get("ContentBasedDeduplication", "false").lower()
        == "true",
    )


def queue_name_of(queue_url: str) -> str:
    """The queue's name: the last part of its URL's path (SQS's, LocalStack's and moto's alike)."""
    return queue_url.rstrip("/").rpartition("/")[2]
