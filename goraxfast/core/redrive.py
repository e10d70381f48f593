"""Dead-letter administration without the I/O: what a letter on the DLQ says, how letters are
counted by reason, what a redrive sends back and what it may then delete, and how SQS's own
message move task reports itself.

The rules a redrive keeps, each decided here once (:mod:`goraxfast.sqs.admin` only drives them):

- **Send first, delete only what was sent.** An entry the source queue accepted is deleted from
  the DLQ; one it refused, or that got no answer, stays on the DLQ and is made visible again at
  the end of the run (:func:`settle`). Nothing is deleted that is not known to be on the source.
- **A letter is sent back once per run.** A letter received again in the same run (its delete
  failed, or its visibility ran out) is deleted if it was sent, never sent a second time
  (:class:`RedriveTally` remembers what was sent).
- **FIFO: the group kept, a deduplication id per letter.** A letter returns to its own message
  group, with a MessageDeduplicationId made from its DLQ message id (:func:`redrive_dedup_id`):
  a batch sent again within SQS's 5-minute interval, after a lost answer or by a second run, is
  dropped by SQS itself.
- **The dead-letter annotations are dropped** (:data:`DEAD_LETTER_ATTRIBUTES`): a redriven
  message is the message as it was published. Kept, they would tell whoever reads the source
  queue why an *earlier* delivery failed, as if it were this one's story; they would take 5 of
  SQS's 10 attribute slots, so that the next letter of the same message would have to shed the
  original attributes to fit its own; and the engine writes fresh ones, with the new reason,
  on the next failure anyway. The DLQ message id is not carried over either: SQS gives the
  message a new id on the source queue.
- **Stub letters stay.** A letter whose body was too large for the DLQ holds a note, not the
  message (:data:`~goraxfast.core.deadletter.BODY_OMITTED`); its original stayed on the source
  queue. Sending the note back would make a poison message of it, so it stays on the DLQ.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from goraxfast.core.deadletter import (
    BODY_OMITTED,
    DEAD_LETTER_GROUP,
    LETTER_ID,
    REASON,
    RECEIVE_COUNT,
    SOURCE_MESSAGE_ID,
    SOURCE_QUEUE,
)
from goraxfast.core.message import decode_message
from goraxfast.core.sqs_model import (
    AMBIGUOUS_CODES,
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    SendEntry,
    queue_name_of,
    token_problem,
)
from goraxfast.errors import MessageError

__all__ = [
    "DEAD_LETTER_ATTRIBUTES",
    "NO_REASON",
    "LetterView",
    "MoveProgress",
    "RedriveTally",
    "Settlement",
    "count_by_reason",
    "dlq_of_redrive_policy",
    "letter_view",
    "move_progress",
    "move_task_unsupported",
    "pace_delay_s",
    "queue_arn_parts",
    "queue_name_of",
    "reason_kind",
    "redrive_dedup_id",
    "redrive_entry",
    "settle",
]

#: The attributes the engine writes on a letter (:mod:`goraxfast.core.deadletter`): dropped by
#: a redrive, so that the message goes back as it was published.
DEAD_LETTER_ATTRIBUTES = frozenset(
    {REASON, RECEIVE_COUNT, SOURCE_MESSAGE_ID, SOURCE_QUEUE, LETTER_ID, BODY_OMITTED}
)
#: The reason of a message on the DLQ without ``goraxfast_dlq_reason``: SQS's own redrive
#: policy moved it (maxReceiveCount reached before the engine dead-lettered it), or something
#: other than goraxfast put it there.
NO_REASON = "no reason recorded (moved by the queue's redrive policy)"
#: The labels :class:`goraxfast.core.retry.RetryPolicy` starts a failed attempt's reason with;
#: a reason of one of these counts under the label (and, for a handler failure, the exception's
#: type), not under its text, which names the message.
ENGINE_LABELS = (
    "handler failed",
    "handler timed out",
    "worker died while handling it",
    "receive path failed",
    "poison message",
)
#: How much of any other reason (a handler's ``Reject`` text) names its count.
REASON_KIND_CHARS = 80
#: The most messages per second SQS's message move task takes (MaxNumberOfMessagesPerSecond).
MOVE_TASK_MAX_RATE = 500
#: Move task states after which nothing moves any more.
MOVE_TASK_FINISHED = frozenset({"COMPLETED", "CANCELLED", "FAILED"})

_ATTEMPT_SUFFIX = re.compile(r" \(attempt \d+ of \d+\)\Z")
_EXCEPTION_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)(?::|\Z)")
_QUEUE_ARN = re.compile(r"arn:[\w-]+:sqs:([\w-]*):(\d*):([\w-]{1,80}(?:\.fifo)?)\Z")
_DEAD_LETTER_TEXT = re.compile(r"dead[- ]?letter", re.IGNORECASE)
#: Error codes (and, for a server that answers an unknown operation with a bare HTTP error, the
#: status botocore reports as the code) meaning the server has no message move task.
_UNSUPPORTED_CODES = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "InvalidAction",
        "UnknownOperationException",
        "NotImplemented",
        "400",
        "404",
        "500",
        "501",
    }
)


# --- what a letter says -----------------------------------------------------------------------


def _attribute(attrs: Mapping[str, Mapping[str, Any]], name: str) -> str:
    value = attrs.get(name)
    if not isinstance(value, Mapping):
        return ""
    return str(value.get("StringValue", ""))


@dataclass(frozen=True, slots=True)
class LetterView:
    """One message on the DLQ as an operator reads it.

    ``receive_count`` is how often the source queue had delivered it when the engine
    dead-lettered it (None for a message the engine did not write); ``dlq_receive_count`` is
    SQS's ApproximateReceiveCount on the DLQ, which every peek raises. ``sent_ms`` is when the
    letter was sent to the DLQ (SQS's SentTimestamp; for a message moved by the redrive policy,
    when it was first sent). ``execution_id`` and ``tenant_id`` are read from the body when it
    decodes, else empty.
    """

    message_id: str
    source_message_id: str
    source_queue: str
    letter_id: str
    reason: str
    kind: str
    receive_count: int | None
    dlq_receive_count: int
    sent_ms: int
    execution_id: str
    tenant_id: str
    group_id: str
    body_omitted: bool
    body_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "source_message_id": self.source_message_id or None,
            "source_queue": self.source_queue or None,
            "letter_id": self.letter_id or None,
            "reason": self.reason or None,
            "reason_kind": self.kind,
            "receive_count": self.receive_count,
            "dlq_receive_count": self.dlq_receive_count,
            "sent_ms": self.sent_ms,
            "execution_id": self.execution_id or None,
            "tenant_id": self.tenant_id or None,
            "group_id": self.group_id or None,
            "body_omitted": self.body_omitted,
            "body_bytes": self.body_bytes,
        }


def letter_view(message: ReceivedMessage) -> LetterView:
    attrs = message.message_attributes
    reason = _attribute(attrs, REASON)
    count_text = _attribute(attrs, RECEIVE_COUNT)
    execution_id = tenant_id = ""
    omitted = _attribute(attrs, BODY_OMITTED) == "true"
    if not omitted:
        try:
            decoded = decode_message(message.body, validate=False)
        except MessageError:
            pass
        else:
            execution_id, tenant_id = decoded.execution_id or "", decoded.tenant_id or ""
    return LetterView(
        message_id=message.message_id,
        source_message_id=_attribute(attrs, SOURCE_MESSAGE_ID),
        source_queue=_attribute(attrs, SOURCE_QUEUE),
        letter_id=_attribute(attrs, LETTER_ID),
        reason=reason,
        kind=reason_kind(reason),
        receive_count=int(count_text) if count_text.isdigit() else None,
        dlq_receive_count=message.receive_count,
        sent_ms=message.sent_ms,
        execution_id=execution_id,
        tenant_id=tenant_id,
        group_id=message.group_id,
        body_omitted=omitted,
        body_bytes=len(message.body),
    )


def reason_kind(reason: str) -> str:
    """What a reason counts under: the engine's label (a handler failure with its exception's
    type: ``handler failed: KeyError``), else the reason itself, without the attempt numbers and
    cut to :data:`REASON_KIND_CHARS`; :data:`NO_REASON` when there is none."""
    text = _ATTEMPT_SUFFIX.sub("", reason.strip())
    if not text:
        return NO_REASON
    for label in ENGINE_LABELS:
        if text == label:
            return label
        if text.startswith(label + ": "):
            if label == "handler failed":
                name = _EXCEPTION_NAME.match(text, len(label) + 2)
                if name is not None:
                    return f"{label}: {name.group(1)}"
            return label
    if len(text) > REASON_KIND_CHARS:
        return text[: REASON_KIND_CHARS - 1] + "…"
    return text


def count_by_reason(views: Iterable[LetterView]) -> list[tuple[str, int]]:
    """(reason kind, letters) for every kind seen, the most frequent first, ties by name."""
    counts = Counter(v.kind for v in views)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# --- where the DLQ is ---------------------------------------------------------------------------


def queue_arn_parts(arn: str) -> tuple[str, str, str] | None:
    """(region, account, name) of an SQS queue ARN, or None for anything else."""
    match = _QUEUE_ARN.match(arn.strip())
    return None if match is None else (match.group(1), match.group(2), match.group(3))


def dlq_of_redrive_policy(policy: str) -> tuple[str, str] | None:
    """(account, name) of the DLQ a RedrivePolicy attribute names, or None when it names none
    (no policy, not JSON, no ``deadLetterTargetArn``, not an SQS queue ARN)."""
    try:
        doc = json.loads(policy)
    except ValueError:
        return None
    target = doc.get("deadLetterTargetArn") if isinstance(doc, dict) else None
    parts = queue_arn_parts(target) if isinstance(target, str) else None
    return None if parts is None else (parts[1], parts[2])


# --- what a redrive sends -----------------------------------------------------------------------


def clean_attributes(attrs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The message attributes to send back: every one but :data:`DEAD_LETTER_ATTRIBUTES`, each
    with only what SendMessage accepts of an attribute as ReceiveMessage returned it."""
    kept: dict[str, dict[str, Any]] = {}
    for name, value in attrs.items():
        if name in DEAD_LETTER_ATTRIBUTES or not isinstance(value, Mapping):
            continue
        out: dict[str, Any] = {"DataType": value.get("DataType", "String")}
        for key in ("StringValue", "BinaryValue"):
            if key in value:
                out[key] = value[key]
        kept[name] = out
    return kept


def redrive_dedup_id(dlq_message_id: str) -> str:
    """The MessageDeduplicationId of a letter sent back to a FIFO queue: the same for every
    send of one letter (so SQS drops a second within 5 minutes), another for another letter.
    SQS's own message ids always fit SQS's id rules; one that does not is hashed."""
    dedup = f"redrive-{dlq_message_id}"
    if token_problem("MessageDeduplicationId", dedup) is not None:
        dedup = "redrive-" + hashlib.sha256(dlq_message_id.encode()).hexdigest()
    return dedup


def redrive_entry(message: ReceivedMessage, entry_id: str, *, fifo: bool) -> SendEntry | None:
    """What to send back for one letter, or None for a stub letter (its original stayed on the
    source queue: see the module's rules). ``fifo``: the source queue is a FIFO queue."""
    if _attribute(message.message_attributes, BODY_OMITTED) == "true":
        return None
    group: str | None = message.group_id or None  # a fair queue's tenant, or a FIFO group
    dedup: str | None = None
    if fifo:
        group = group or DEAD_LETTER_GROUP  # a letter of a standard DLQ has no group
        dedup = redrive_dedup_id(message.message_id)
    return SendEntry(
        id=entry_id,
        body=message.body.decode("utf-8", "replace"),
        message_attributes=clean_attributes(message.message_attributes),
        group_id=group,
        dedup_id=dedup,
    )


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with each entry of one send, by entry id; every id in exactly one field.

    ``delete``: the source queue holds it, so the DLQ's copy goes. ``release``: it was refused
    (``refusals`` says why): it stays on the DLQ, visible again at the end of the run.
    ``unsure``: the send got no answer, so it may be on the source queue already; it stays on
    the DLQ too (losing it would be worse than a copy), and the run says so.
    """

    delete: tuple[str, ...]
    release: tuple[str, ...]
    unsure: tuple[str, ...]
    refusals: tuple[BatchFailure, ...] = ()


def settle(sent_ids: Sequence[str], result: BatchResult) -> Settlement:
    """Split a send's entries by its result: only the ones SQS accepted are deleted. An entry the
    result does not mention (a server that answered for fewer entries than it was sent) is
    treated as refused: kept."""
    ok = set(result.successful)
    failures = {f.id: f for f in result.failed}
    delete, release, unsure, refusals = [], [], [], []
    for entry_id in sent_ids:
        if entry_id in ok:
            delete.append(entry_id)
            continue
        failure = failures.get(entry_id) or BatchFailure(
            entry_id, "NoResult", "the answer did not mention this entry", False
        )
        if failure.code in AMBIGUOUS_CODES:
            unsure.append(entry_id)
        else:
            release.append(entry_id)
            refusals.append(failure)
    return Settlement(tuple(delete), tuple(release), tuple(unsure), tuple(refusals))


@dataclass(slots=True)
class RedriveTally:
    """A manual redrive's account, letter by letter (by DLQ message id), as the run goes.

    ``sent`` letters are on the source queue; ``deleted`` of them are off the DLQ. The others of
    ``sent`` are on both (their delete failed): received again in this run they are deleted,
    never sent again. ``kept`` holds every letter left on the DLQ on purpose, with why.
    """

    sent: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    kept: dict[str, str] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    unsure: set[str] = field(default_factory=set)
    stubs: set[str] = field(default_factory=set)

    def seen(self, message_id: str) -> bool:
        return message_id in self.sent or message_id in self.kept

    @property
    def moved(self) -> int:
        """Letters now on the source queue and off the DLQ."""
        return len(self.deleted)

    @property
    def on_both(self) -> set[str]:
        """Letters sent to the source queue whose copy the DLQ still holds (a delete failed)."""
        return self.sent - self.deleted

    def keep(self, message_id: str, why: str) -> None:
        self.kept.setdefault(message_id, why)

    def refused(self, message_id: str, failure: BatchFailure) -> None:
        self.refusals[f"{failure.code}: {failure.message}"[:200]] += 1
        self.keep(message_id, "refused")

    def summary(self) -> list[str]:
        """One line per kind of letter left behind (none when everything was moved)."""
        lines = [
            f"{count} refused by the source queue ({why})"
            for why, count in sorted(self.refusals.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        if self.stubs:
            lines.append(
                f"{len(self.stubs)} stub letters left on the DLQ (their bodies were too large "
                "for it; the originals stayed on the source queue)"
            )
        if self.unsure:
            lines.append(
                f"{len(self.unsure)} got no answer from the source queue: they may be there "
                "already, and are still on the DLQ (check before redriving them again)"
            )
        if self.on_both:
            lines.append(
                f"{len(self.on_both)} were sent to the source queue but could not be deleted "
                "from the DLQ: they are on both now"
            )
        return lines

    @property
    def complete(self) -> bool:
        """Nothing left behind but stub letters, which are never moved."""
        return not self.refusals and not self.unsure and not self.on_both


def pace_delay_s(moved: int, elapsed_s: float, rate_per_s: float | None) -> float:
    """How long to wait before the next batch so that ``moved`` letters in ``elapsed_s`` keep
    to ``rate_per_s`` (0 when there is no rate, or the run is behind it)."""
    if not rate_per_s:
        return 0.0
    return max(0.0, moved / rate_per_s - elapsed_s)


# --- SQS's own message move task ----------------------------------------------------------------


def move_task_unsupported(code: str | None, detail: str) -> bool:
    """Whether StartMessageMoveTask's refusal means "not here, move them yourself": the server
    has no such operation (moto answers a bare 500), or the queue is no queue's DLQ (SQS moves
    only from a queue a redrive policy names). Any other refusal (access denied, a task already
    running) is the operator's to see."""
    if code in _UNSUPPORTED_CODES:
        return True
    if code in {"InvalidParameterValue", "InvalidParameterValueException"}:
        return bool(_DEAD_LETTER_TEXT.search(detail))
    return False


@dataclass(frozen=True, slots=True)
class MoveProgress:
    status: str
    moved: int
    to_move: int | None
    failure: str = ""

    @property
    def finished(self) -> bool:
        return self.status in MOVE_TASK_FINISHED

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED"

    def describe(self) -> str:
        of = "" if self.to_move is None else f" of {self.to_move}"
        why = f": {self.failure}" if self.failure else ""
        return f"{self.status.lower()}, {self.moved}{of} moved{why}"


def move_progress(task: Mapping[str, Any]) -> MoveProgress:
    """One entry of ListMessageMoveTasks' results."""
    to_move = task.get("ApproximateNumberOfMessagesToMove")
    return MoveProgress(
        status=str(task.get("Status", "UNKNOWN")).upper(),
        moved=int(task.get("ApproximateNumberOfMessagesMoved", 0) or 0),
        to_move=None if to_move is None else int(to_move),
        failure=str(task.get("FailureReason", "") or ""),
    )


def move_rate(rate_per_s: float | None) -> int | None:
    """MaxNumberOfMessagesPerSecond for a ``--rate`` (whole messages, 1 to SQS's 500)."""
    if rate_per_s is None:
        return None
    return max(1, min(MOVE_TASK_MAX_RATE, math.floor(rate_per_s)))
