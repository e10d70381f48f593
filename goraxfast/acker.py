"""Sends what the ack batcher decided: deletes, visibility changes and dead-letters, in batches.

The batcher (pure) decides *when* a batch goes; this module only makes the calls and reads the
per-entry results. Every entry fails alone in SQS batch calls, so each failed entry is either
re-queued (transient) or given up with a count and a log line (its receipt handle is no longer
valid: the message will come back through its visibility timeout; nothing is lost either way).
Dead-lettering is two-phase: a message is deleted from the main queue only after the DLQ
accepted its copy.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from goraxfast.core.acks import SQS_MAX_BATCH, AckBatch, AckBatcher, AckEntry, AckKind
from goraxfast.errors import QueueDoesNotExistError, SQSError
from goraxfast.sqs import BatchFailure, BatchResult, DataPlane, SendEntry, chunk_entries, entry_size
from goraxfast.wakeup import Wakeup

log = logging.getLogger("goraxfast.acks")

MAX_ATTEMPTS = 6
_ENTRY_IDS = tuple(str(i) for i in range(SQS_MAX_BATCH))  # batch entry ids, made once
MAX_CALLS_IN_FLIGHT = 16
SQS_MAX_ATTRIBUTES = 10
_GIVE_UP_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "InvalidParameterValue",
    }
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to the DLQ: the original body and attributes, plus why and how often."""

    body: str
    attributes: Mapping[str, dict[str, Any]]
    reason: str
    receive_count: int
    message_id: str
    source_queue: str

    def fitted_entry(self, entry_id: str, max_bytes: int) -> SendEntry:
        """The entry, trimmed to fit: the body is sacred, our annotations are not."""
        entry = self.entry(entry_id)
        if entry_size(entry) <= max_bytes:
            return entry
        return self.entry(entry_id, reason_chars=200, keep_original_attributes=False)

    def entry(
        self, entry_id: str, *, reason_chars: int = 4000, keep_original_attributes: bool = True
    ) -> SendEntry:
        ours = {
            "goraxfast_dlq_reason": _string(self.reason[:reason_chars] or "unknown"),
            "goraxfast_receive_count": {
                "DataType": "Number",
                "StringValue": str(self.receive_count),
            },
            "goraxfast_source_message_id": _string(self.message_id),
            "goraxfast_source_queue": _string(self.source_queue),
        }
        kept: dict[str, dict[str, Any]] = {}
        for name, value in self.attributes.items() if keep_original_attributes else ():
            if len(kept) + len(ours) >= SQS_MAX_ATTRIBUTES:
                break
            if name not in ours:
                kept[name] = _clean_attribute(value)
        return SendEntry(id=entry_id, body=self.body, message_attributes={**kept, **ours})


def _string(value: str) -> dict[str, Any]:
    return {"DataType": "String", "StringValue": value}


def _clean_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """Keep only what SendMessage accepts of an attribute as ReceiveMessage returned it."""
    out: dict[str, Any] = {"DataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["BinaryValue"] = value["BinaryValue"]
    return out


@dataclass(slots=True)
class AckCounters:
    deleted: int = 0
    visibility_changed: int = 0
    dead_lettered: int = 0
    calls: int = 0
    call_errors: int = 0
    entries_retried: int = 0
    entries_given_up: int = 0
    by_kind_in_flight: dict[AckKind, int] = field(default_factory=lambda: dict.fromkeys(AckKind, 0))


class Acker:
    """Runs as one task in the parent; ``wake()`` after every ``batcher.add``."""

    def __init__(
        self,
        batcher: AckBatcher,
        data_plane: DataPlane,
        *,
        queue_url: str,
        dlq_url: str,
        clock: Callable[[], float],
        max_message_bytes: int = 262_144,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.batcher = batcher
        self.dp = data_plane
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.clock = clock
        self.counters = AckCounters()
        self._wake = Wakeup()
        self._calls: set[asyncio.Task[None]] = set()
        self._retry_handles: set[asyncio.TimerHandle] = set()
        self._slots = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)

    def add(self, kind: AckKind, entry: AckEntry) -> None:
        self.batcher.add(kind, entry, self.clock())
        self._wake.set()

    def stage(self, kind: AckKind, entry: AckEntry, now: float) -> None:
        """As :meth:`add` for callers that read the clock once per batch; wakes the sender only
        when the entry made something due sooner (most entries just join a pending batch)."""
        if self.batcher.add(kind, entry, now):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def pending(self) -> int:
        """Entries not yet confirmed: waiting in the batcher, in a call, or waiting to retry."""
        in_calls = sum(self.counters.by_kind_in_flight.values())
        return self.batcher.pending() + in_calls + len(self._retry_handles)

    async def run(self) -> None:
        """Send batches as they come due, until cancelled."""
        while True:
            self._wake.clear()  # before due(): an add() from here on wakes the next wait
            for batch in self.batcher.due(self.clock()):
                await self._launch(batch)
            deadline = self.batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            await self._wake.wait(timeout)

    async def flush(self, timeout_s: float) -> bool:
        """Send everything pending now and wait for it, retries included; True when all settled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending:
            for batch in self.batcher.flush():
                await self._launch(batch)
            if self._calls:
                await asyncio.wait(set(self._calls), timeout=max(0.0, deadline - loop.time()))
            elif self._retry_handles:
                await asyncio.sleep(0.05)
            if loop.time() >= deadline:
                break
        return self.pending == 0

    def cancel_retries(self) -> None:
        for handle in self._retry_handles:
            handle.cancel()
        self._retry_handles.clear()

    async def _launch(self, batch: AckBatch) -> None:
        await self._slots.acquire()
        self.counters.by_kind_in_flight[batch.kind] += len(batch.entries)
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _send(self, batch: AckBatch) -> None:
        entries = batch.entries
        try:
            self.counters.calls += 1
            try:
                result = await self._call(batch)
            except QueueDoesNotExistError as exc:
                # No retry can succeed: the queue (or the DLQ) is gone.
                self.counters.call_errors += 1
                for entry in entries:
                    self._give_up(batch.kind, entry, str(exc))
                return
            except SQSError as exc:
                self.counters.call_errors += 1
                log.warning("%s; %d entries will be retried", exc, len(entries))
                for entry in entries:
                    self._retry(batch.kind, entry, str(exc))
                return
            self._settle(batch, result)
        finally:
            self.counters.by_kind_in_flight[batch.kind] -= len(entries)
            self._slots.release()

    async def _call(self, batch: AckBatch) -> BatchResult:
        entries = batch.entries
        if batch.kind is AckKind.DELETE:
            return await self.dp.delete_batch(
                [(_ENTRY_IDS[i], e.receipt_handle) for i, e in enumerate(entries)]
            )
        if batch.kind is AckKind.VISIBILITY:
            return await self.dp.change_visibility_batch(
                [
                    (_ENTRY_IDS[i], e.receipt_handle, e.visibility_timeout_s)
                    for i, e in enumerate(entries)
                ]
            )
        letters = []
        for i, e in enumerate(entries):
            assert isinstance(e.payload, DeadLetter)
            letters.append(e.payload.fitted_entry(str(i), self.max_message_bytes))
        # One call per size-bounded chunk: a large letter must not sink its neighbours with
        # BatchRequestTooLong.
        results = [
            await self.dp.send_batch(self.dlq_url, chunk)
            for chunk in chunk_entries(letters, self.max_message_bytes)
        ]
        return BatchResult(
            tuple(i for r in results for i in r.successful),
            tuple(f for r in results for f in r.failed),
        )

    def _settle(self, batch: AckBatch, result: BatchResult) -> None:
        entries = batch.entries
        ok = [entries[int(i)] for i in result.successful]
        if batch.kind is AckKind.DELETE:
            self.counters.deleted += len(ok)
        elif batch.kind is AckKind.VISIBILITY:
            self.counters.visibility_changed += len(ok)
        else:
            self.counters.dead_lettered += len(ok)
            for entry in ok:
                # Phase two: the DLQ holds the copy, now the original may go.
                self.add(AckKind.DELETE, AckEntry(entry.key, entry.receipt_handle))
        for failure in result.failed:
            entry = entries[int(failure.id)]
            if _give_up(failure):
                self._give_up(batch.kind, entry, f"{failure.code}: {failure.message}")
            else:
                self._retry(batch.kind, entry, f"{failure.code}: {failure.message}")

    def _retry(self, kind: AckKind, entry: AckEntry, why: str) -> None:
        if entry.attempts + 1 >= MAX_ATTEMPTS:
            self._give_up(kind, entry, f"{why} (after {entry.attempts + 1} attempts)")
            return
        self.counters.entries_retried += 1
        delay = min(5.0, 0.05 * (2**entry.attempts)) * (0.5 + random.random())
        again = AckEntry(
            entry.key,
            entry.receipt_handle,
            entry.visibility_timeout_s,
            entry.payload,
            entry.attempts + 1,
        )
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._retry_handles.discard(handle)
            self.add(kind, again)

        handle = loop.call_later(delay, fire)
        self._retry_handles.add(handle)

    def _give_up(self, kind: AckKind, entry: AckEntry, why: str) -> None:
        self.counters.entries_given_up += 1
        what = {
            AckKind.DELETE: "delete",
            AckKind.VISIBILITY: "visibility change",
            AckKind.DEAD_LETTER: "dead-letter",
        }[kind]
        log.warning(
            "gave up a %s on %s (delivery %d): %s; the message comes back after its visibility timeout",
            what,
            self.queue_url,
            entry.key,
            why,
        )


def _give_up(failure: BatchFailure) -> bool:
    """A stale receipt handle or a request SQS calls malformed will not succeed if repeated."""
    return failure.code in _GIVE_UP_CODES or (
        failure.sender_fault and "Throttl" not in failure.code
    )
