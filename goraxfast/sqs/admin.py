"""Queue administration over boto3: peek at dead letters, move them back, purge a queue.

Every decision (what a letter says, what to send back, what may be deleted after a send, how a
move task reports itself) is :mod:`goraxfast.core.redrive`'s; this module makes the calls and
keeps the loops. Two rules make it safe to interrupt anywhere:

- whatever it takes off the DLQ for a while (a peek's letters, a redrive's refused ones) is made
  visible again in a ``finally``; a letter it could not release comes back by itself when its
  short visibility timeout ends;
- an SQS error stops a redrive where it is and is kept with the account of what was moved
  (:class:`RedriveRun`), so the operator learns both.

StartMessageMoveTask goes through a client of its own that makes one attempt: botocore would
otherwise retry what a server without that operation answers (moto: a bare 500) for seconds,
and a second start of a task that did start is refused anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from goraxfast.config import Config
from goraxfast.core.redrive import (
    LetterView,
    MoveProgress,
    RedriveTally,
    dlq_of_redrive_policy,
    letter_view,
    move_progress,
    move_rate,
    pace_delay_s,
    queue_name_of,
    redrive_entry,
    settle,
)
from goraxfast.core.sqs_model import (
    QUEUE_ATTRIBUTES_READ,
    RECEIVE_SYSTEM_ATTRIBUTES,
    SQS_MAX_BATCH,
    SQS_MAX_WAIT_S,
    BatchFailure,
    BatchResult,
    QueueAttributes,
    ReceivedMessage,
    SendEntry,
    batch_result,
    is_fifo_queue,
    queue_attributes_of,
    received_message,
)
from goraxfast.errors import ConfigError, ConfigProblem, SQSError
from goraxfast.sqs.botocore import SyncSQSClient, client_kwargs, wrap_error

__all__ = [
    "PEEK_VISIBILITY_S",
    "REDRIVE_VISIBILITY_S",
    "Peek",
    "QueueAdmin",
    "RedriveRun",
    "peek_letters",
    "redrive_manually",
    "resolve_dlq",
    "watch_move_task",
]

#: How long a peeked letter stays hidden if its release fails (it is released at once otherwise).
PEEK_VISIBILITY_S = 30
#: How long a letter being moved stays hidden: enough for its send (with the send plan's own
#: retries) and its delete; one that could not be released comes back after it.
REDRIVE_VISIBILITY_S = 60
#: The long poll of an admin receive: an empty one ends a peek or a redrive (a short poll may
#: answer empty while a queue holds messages).
ADMIN_WAIT_S = 1
#: Receives in a row that bring nothing new before a redrive ends (letters it keeps, coming back).
MAX_IDLE_RECEIVES = 3
#: Codes of a release that found the letter visible already: nothing to do.
_ALREADY_VISIBLE = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)


def _boto_config(attempts: int) -> BotoConfig:
    return BotoConfig(
        read_timeout=SQS_MAX_WAIT_S + 10,
        connect_timeout=5,
        retries={"mode": "standard", "total_max_attempts": max(1, attempts)},
    )


class QueueAdmin:
    """The control-plane calls of the admin commands, on any queue of the Config's endpoint.

    Sends go through :meth:`SyncSQSClient.send_entries` (one attempt per call, its send plan
    retrying what is worth it and reporting every entry), the rest through a client with
    botocore's standard retries.
    """

    def __init__(
        self,
        config: Config,
        *,
        sdk_attempts: int = 3,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._config = config
        self._kwargs = client_kwargs(config)
        self._client: Any = boto3.session.Session().client(
            "sqs", config=_boto_config(sdk_attempts), **self._kwargs
        )
        self._once: Any = None
        self._sender = SyncSQSClient(config, sdk_attempts=1, sleep=sleep)

    def close(self) -> None:
        self._client.close()
        if self._once is not None:
            self._once.close()
        self._sender.close()

    def __enter__(self) -> QueueAdmin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, operation: str, where: str, client: Any = None, **kwargs: Any) -> Any:
        method = getattr(client or self._client, _snake(operation))
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise wrap_error(exc, operation, where) from exc

    # --- queues -------------------------------------------------------------------------------

    def queue_attributes(self, queue_url: str) -> QueueAttributes:
        resp = self._call(
            "GetQueueAttributes",
            queue_url,
            QueueUrl=queue_url,
            AttributeNames=list(QUEUE_ATTRIBUTES_READ),
        )
        return queue_attributes_of(resp.get("Attributes", {}))

    def _attribute(self, queue_url: str, name: str) -> str:
        resp = self._call(
            "GetQueueAttributes", queue_url, QueueUrl=queue_url, AttributeNames=[name]
        )
        return str(resp.get("Attributes", {}).get(name, ""))

    def queue_arn(self, queue_url: str) -> str:
        return self._attribute(queue_url, "QueueArn")

    def redrive_policy(self, queue_url: str) -> str:
        """The queue's RedrivePolicy attribute ("" when it has none)."""
        return self._attribute(queue_url, "RedrivePolicy")

    def queue_url_of(self, name: str, account: str = "") -> str:
        owner = {"QueueOwnerAWSAccountId": account} if account else {}
        resp = self._call("GetQueueUrl", name, QueueName=name, **owner)
        return str(resp["QueueUrl"])

    def purge(self, queue_url: str) -> None:
        self._call("PurgeQueue", queue_url, QueueUrl=queue_url)

    # --- messages -----------------------------------------------------------------------------

    def receive(
        self, queue_url: str, max_messages: int, wait_s: int, visibility_s: int
    ) -> list[ReceivedMessage]:
        resp = self._call(
            "ReceiveMessage",
            queue_url,
            QueueUrl=queue_url,
            MaxNumberOfMessages=max(1, min(SQS_MAX_BATCH, max_messages)),
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=visibility_s,
            MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTES),
            MessageAttributeNames=["All"],
        )
        return [received_message(m) for m in resp.get("Messages", ())]

    def delete_batch(self, queue_url: str, handles: Sequence[str]) -> BatchResult:
        """Delete up to 10 messages by receipt handle; entry ids are their positions."""
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        return batch_result(
            self._call("DeleteMessageBatch", queue_url, QueueUrl=queue_url, Entries=entries)
        )

    def release(self, queue_url: str, handles: Sequence[str]) -> list[BatchFailure]:
        """Make these received messages visible again at once; the failures that matter (a
        message already visible again is not one)."""
        failures: list[BatchFailure] = []
        for start in range(0, len(handles), SQS_MAX_BATCH):
            chunk = handles[start : start + SQS_MAX_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(chunk)
            ]
            result = batch_result(
                self._call(
                    "ChangeMessageVisibilityBatch", queue_url, QueueUrl=queue_url, Entries=entries
                )
            )
            failures += [f for f in result.failed if f.code not in _ALREADY_VISIBLE]
        return failures

    def send_entries(
        self, queue_url: str, entries: Sequence[SendEntry], max_bytes: int
    ) -> BatchResult:
        return self._sender.send_entries(entries, queue_url=queue_url, max_bytes=max_bytes)

    # --- SQS's message move task ----------------------------------------------------------------

    def start_move_task(
        self, source_arn: str, destination_arn: str, rate_per_s: float | None = None
    ) -> str:
        """Start SQS's own move of every message of ``source_arn``; its task handle."""
        if self._once is None:
            self._once = boto3.session.Session().client(
                "sqs", config=_boto_config(1), **self._kwargs
            )
        rate = move_rate(rate_per_s)
        extra = {} if rate is None else {"MaxNumberOfMessagesPerSecond": rate}
        resp = self._call(
            "StartMessageMoveTask",
            source_arn,
            self._once,
            SourceArn=source_arn,
            DestinationArn=destination_arn,
            **extra,
        )
        return str(resp.get("TaskHandle", ""))

    def move_task(self, source_arn: str) -> MoveProgress | None:
        """The most recent move task of ``source_arn`` (None when there is none yet)."""
        resp = self._call("ListMessageMoveTasks", source_arn, SourceArn=source_arn, MaxResults=1)
        results = resp.get("Results") or []
        return move_progress(results[0]) if results else None


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def resolve_dlq(admin: QueueAdmin, config: Config) -> str:
    """AWS_SQS_DLQ_URL, else the DLQ the main queue's redrive policy names."""
    if config.dlq_url:
        return config.dlq_url
    if not config.queue_url:
        why = "required (or AWS_SQS_QUEUE_URL, whose redrive policy names its DLQ)"
        raise ConfigError([ConfigProblem("AWS_SQS_DLQ_URL", "", why)])
    policy = admin.redrive_policy(config.queue_url)
    target = dlq_of_redrive_policy(policy) if policy else None
    if target is None:
        name = queue_name_of(config.queue_url)
        why = f"required: the queue {name} has no redrive policy naming a DLQ"
        raise ConfigError([ConfigProblem("AWS_SQS_DLQ_URL", "", why)])
    account, name = target
    return admin.queue_url_of(name, account)


# --- peek -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peek:
    """What a peek saw: the DLQ's depth before it, and the letters (each once)."""

    dlq_url: str
    attributes: QueueAttributes
    letters: tuple[LetterView, ...]
    #: releases that failed: those letters come back by themselves after PEEK_VISIBILITY_S
    unreleased: tuple[BatchFailure, ...] = ()


def peek_letters(
    admin: QueueAdmin,
    dlq_url: str,
    max_messages: int,
    *,
    visibility_s: int = PEEK_VISIBILITY_S,
    wait_s: int = ADMIN_WAIT_S,
) -> Peek:
    """Receive up to ``max_messages`` letters, keeping each hidden until all are read (so that
    none is read twice), then make them all visible again at once."""
    attributes = admin.queue_attributes(dlq_url)
    seen: dict[str, ReceivedMessage] = {}
    handles: list[str] = []
    unreleased: list[BatchFailure] = []
    try:
        while len(seen) < max_messages:
            batch = admin.receive(dlq_url, max_messages - len(seen), wait_s, visibility_s)
            handles += [m.receipt_handle for m in batch]
            fresh = [m for m in batch if m.message_id not in seen]
            if not fresh:
                break
            seen.update((m.message_id, m) for m in fresh)
    finally:
        if handles:
            unreleased = admin.release(dlq_url, handles)
    return Peek(
        dlq_url, attributes, tuple(letter_view(m) for m in seen.values()), tuple(unreleased)
    )


# --- redrive: receive, send, delete -----------------------------------------------------------


@dataclass(slots=True)
class RedriveRun:
    """A manual redrive's result: the tally, the batches it took, and the error that stopped it
    (None when it ran until the DLQ had nothing more to give, or to ``max_messages``)."""

    dlq_url: str
    source_url: str
    tally: RedriveTally = field(default_factory=RedriveTally)
    batches: int = 0
    error: SQSError | None = None
    unreleased: list[BatchFailure] = field(default_factory=list)


def redrive_manually(
    admin: QueueAdmin,
    dlq_url: str,
    source_url: str,
    *,
    max_messages: int | None = None,
    rate_per_s: float | None = None,
    visibility_s: int = REDRIVE_VISIBILITY_S,
    wait_s: int = ADMIN_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[RedriveRun], None] | None = None,
) -> RedriveRun:
    """Move letters from ``dlq_url`` to ``source_url`` a batch at a time: receive, send, delete
    what was sent (:func:`goraxfast.core.redrive.settle`). Letters left behind (refused, stubs,
    unanswered) stay hidden until the run ends, so the next receives bring new ones, and are
    then made visible again."""
    run = RedriveRun(dlq_url, source_url)
    tally = run.tally
    held: dict[str, str] = {}  # DLQ message id -> latest receipt handle, released at the end
    fifo = is_fifo_queue(source_url)
    started = clock()
    considered = idle = 0
    try:
        max_bytes = admin.queue_attributes(source_url).maximum_message_size
        while max_messages is None or considered < max_messages:
            want = SQS_MAX_BATCH if max_messages is None else max_messages - considered
            batch = admin.receive(dlq_url, min(want, SQS_MAX_BATCH), wait_s, visibility_s)
            if not batch:
                break
            fresh: list[ReceivedMessage] = []
            delete: list[ReceivedMessage] = []
            for m in batch:
                if m.message_id in tally.sent:  # on the source already: only its copy goes
                    delete.append(m)
                elif m.message_id in tally.kept or any(f.message_id == m.message_id for f in fresh):
                    held[m.message_id] = m.receipt_handle
                else:
                    fresh.append(m)
            if not fresh and not delete:
                idle += 1
                if idle >= MAX_IDLE_RECEIVES:
                    break
                continue
            idle = 0
            considered += len(fresh)
            run.batches += 1
            delete += _send_back(admin, run, fresh, held, fifo, max_bytes)
            if delete:
                result = admin.delete_batch(dlq_url, [m.receipt_handle for m in delete])
                tally.deleted.update(delete[int(i)].message_id for i in result.successful)
            if on_batch is not None:
                on_batch(run)
            delay = pace_delay_s(tally.moved, clock() - started, rate_per_s)
            if delay > 0:
                sleep(delay)
    except SQSError as exc:
        run.error = exc
    finally:
        if held:
            try:
                run.unreleased = admin.release(dlq_url, list(held.values()))
            except SQSError as exc:
                run.error = run.error or exc
    return run


def _send_back(
    admin: QueueAdmin,
    run: RedriveRun,
    fresh: Sequence[ReceivedMessage],
    held: dict[str, str],
    fifo: bool,
    max_bytes: int,
) -> list[ReceivedMessage]:
    """Send ``fresh`` letters to the source queue; the ones it now holds (to delete)."""
    tally = run.tally
    entries: list[SendEntry] = []
    by_entry: dict[str, ReceivedMessage] = {}
    for i, m in enumerate(fresh):
        entry = redrive_entry(m, str(i), fifo=fifo)
        if entry is None:
            tally.stubs.add(m.message_id)
            tally.keep(m.message_id, "stub")
            held[m.message_id] = m.receipt_handle
        else:
            entries.append(entry)
            by_entry[entry.id] = m
    if not entries:
        return []
    try:
        result = admin.send_entries(run.source_url, entries, max_bytes)
    except SQSError:  # the source queue does not exist: nothing was sent
        for m in by_entry.values():
            tally.keep(m.message_id, "not sent")
            held[m.message_id] = m.receipt_handle
        raise
    settled = settle([e.id for e in entries], result)
    for failure in settled.refusals:
        m = by_entry[failure.id]
        tally.refused(m.message_id, failure)
        held[m.message_id] = m.receipt_handle
    for entry_id in settled.unsure:
        m = by_entry[entry_id]
        tally.unsure.add(m.message_id)
        tally.keep(m.message_id, "unsure")
        held[m.message_id] = m.receipt_handle
    sent = [by_entry[entry_id] for entry_id in settled.delete]
    tally.sent.update(m.message_id for m in sent)
    return sent


# --- redrive: SQS's own move task ---------------------------------------------------------------


def watch_move_task(
    admin: QueueAdmin,
    dlq_arn: str,
    *,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[MoveProgress], None] | None = None,
    max_unlisted: int = 10,
) -> MoveProgress:
    """Follow the DLQ's most recent move task until it has finished; its last report."""
    unlisted = 0
    while True:
        progress = admin.move_task(dlq_arn)
        if progress is None:
            unlisted += 1
            if unlisted >= max_unlisted:
                return MoveProgress("UNKNOWN", 0, None, "the task is not listed by the server")
        else:
            if on_progress is not None:
                on_progress(progress)
            if progress.finished:
                return progress
        sleep(interval_s)
