"""Sends what the ack batcher decided: deletes, visibility changes and dead-letters, in batches.

The batcher (pure) decides *when* a batch goes, :func:`~goraxfast.core.sqs_model.is_retryable`
(one table of SQS error codes) whether a failed entry is sent again, and
:mod:`goraxfast.core.deadletter` what a letter holds; this module makes the calls and reads the
per-entry results. Every entry fails alone in SQS batch calls, so each failed entry is either
re-queued (transient) or given up with a count and a log line (its receipt handle is no longer
valid: the message will come back through its visibility timeout; nothing is lost either way).
Dead-lettering is two-phase: a message is deleted from the main queue only after the DLQ
accepted its copy, and not at all when only a stub of it fitted the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from goraxfast.core.acks import (
    ACK_CALLS_PER_KIND,
    SQS_MAX_BATCH,
    AckBatch,
    AckBatcher,
    AckEntry,
    AckKind,
)
from goraxfast.core.dataplane import DataPlane
from goraxfast.core.deadletter import DeadLetter, FittedLetter, fit_letter
from goraxfast.core.outage import Outage
from goraxfast.core.ratelimit import LogBudget
from goraxfast.core.sqs_model import (
    AMBIGUOUS_CODES,
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    BatchFailure,
    BatchResult,
    SendEntry,
    chunk_entries,
    is_fifo_queue,
    is_retryable,
)
from goraxfast.engine.wakeup import Wakeup
from goraxfast.errors import QueueDoesNotExistError, SQSError

log = logging.getLogger("goraxfast.acks")

MAX_ATTEMPTS = 6
_ENTRY_IDS = tuple(str(i) for i in range(SQS_MAX_BATCH))  # batch entry ids, made once


@dataclass(slots=True)
class AckCounters:
    deleted: int = 0
    visibility_changed: int = 0
    dead_lettered: int = 0
    calls: int = 0
    call_errors: int = 0
    entries_retried: int = 0
    entries_given_up: int = 0
    letters_body_omitted: int = 0  # only a stub fitted the DLQ; the original stays for redrive
    letter_answers_lost: int = 0  # DLQ sends whose answer never came (a copy may exist)
    deletes_given_up: int = 0  # deletes SQS refused for good (stale receipt handle, ...)
    abandoned: int = 0  # acks still unconfirmed when the engine stopped: those messages run again
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
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        retry_base_s: float = 0.05,
        calls_per_kind: int = ACK_CALLS_PER_KIND,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.retry_base_s = retry_base_s
        self.batcher = batcher
        self.dp = data_plane
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self._fifo_dlq = is_fifo_queue(dlq_url)
        self.clock = clock
        self.counters = AckCounters()
        self._wake = Wakeup()
        self._calls: set[asyncio.Task[None]] = set()
        self._retry_handles: set[asyncio.TimerHandle] = set()
        self.calls_per_kind = calls_per_kind
        self._calls_by_kind: dict[AckKind, int] = dict.fromkeys(AckKind, 0)
        self._queued: dict[AckKind, deque[AckBatch]] = {kind: deque() for kind in AckKind}
        #: Deletes that failed at least once and are not settled yet (waiting, in a call, or on
        #: a retry timer). The engine counts them against its capacity: while deletes keep
        #: failing it stops taking new messages, so what it owes SQS stays bounded.
        self.retrying = 0
        self.on_room: Callable[[], None] = lambda: None
        self.outage = Outage("SQS acknowledgements", base_s=0.05, cap_s=5.0)
        self._give_up_log = LogBudget(burst=10, refill_s=6.0)

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
    def owed(self) -> int:
        """What the engine counts against its capacity: deletes that failed and wait to be sent
        again and, while ack calls are failing, every delete not yet confirmed. In a delete
        outage the engine so stops taking messages within about one round trip, and what it
        owes SQS stays bounded by its capacity."""
        if not self.outage.failing:
            return self.retrying
        waiting = self.batcher.pending_by_kind()[AckKind.DELETE]
        return self.retrying + waiting + self.counters.by_kind_in_flight[AckKind.DELETE]

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
                self._launch(batch)
            deadline = self.batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            await self._wake.wait(timeout)

    async def flush(self, timeout_s: float) -> bool:
        """Send everything pending now and wait for it, retries included; True when all settled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending:
            for batch in self.batcher.flush():
                self._launch(batch)
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

    def _launch(self, batch: AckBatch) -> None:
        """Send ``batch`` now, or as soon as a call of its kind ends (in the order they came)."""
        self.counters.by_kind_in_flight[batch.kind] += len(batch.entries)
        if self._calls_by_kind[batch.kind] >= self.calls_per_kind:
            self._queued[batch.kind].append(batch)
            return
        self._start_call(batch)

    def _start_call(self, batch: AckBatch) -> None:
        self._calls_by_kind[batch.kind] += 1
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _call_ended(self, kind: AckKind) -> None:
        self._calls_by_kind[kind] -= 1
        queued = self._queued[kind]
        if queued:
            self._start_call(queued.popleft())

    async def _send(self, batch: AckBatch) -> None:
        try:
            if batch.kind is AckKind.DEAD_LETTER:
                await self._send_letters(batch)
                return
            self.counters.calls += 1
            try:
                result = await self._call(batch)
            except QueueDoesNotExistError as exc:
                # No retry can succeed: the queue is gone.
                self.counters.call_errors += 1
                for entry in batch.entries:
                    self._give_up(batch.kind, entry, str(exc))
                return
            except SQSError as exc:
                self.counters.call_errors += 1
                self._call_failed(exc)
                result = _whole_call_failed(exc, len(batch.entries))
            else:
                self._call_answered()
            self._settle(batch, result)
        finally:
            self.counters.by_kind_in_flight[batch.kind] -= len(batch.entries)
            self._call_ended(batch.kind)

    async def _call(self, batch: AckBatch) -> BatchResult:
        entries = batch.entries
        if batch.kind is AckKind.DELETE:
            return await self.dp.delete_batch(
                [(_ENTRY_IDS[i], e.receipt_handle) for i, e in enumerate(entries)]
            )
        return await self.dp.change_visibility_batch(
            [
                (_ENTRY_IDS[i], e.receipt_handle, e.visibility_timeout_s)
                for i, e in enumerate(entries)
            ]
        )

    def _settle(self, batch: AckBatch, result: BatchResult) -> None:
        entries = batch.entries
        ok = len(result.successful)
        if self.retrying and batch.kind is AckKind.DELETE:
            self._done_retrying(entries[int(i)] for i in result.successful)
        if batch.kind is AckKind.DELETE:
            self.counters.deleted += ok
        else:
            self.counters.visibility_changed += ok
        for failure in result.failed:
            entry = entries[int(failure.id)]
            why = f"{failure.code}: {failure.message}"
            if is_retryable(failure):
                self._retry(batch.kind, entry, why)
            else:
                self._give_up(batch.kind, entry, why)

    # --- dead letters ----------------------------------------------------------------------

    async def _send_letters(self, batch: AckBatch) -> None:
        """Fit each letter to the DLQ, send in size-bounded chunks, then settle each letter.

        Chunks are sent concurrently and fail alone: a lost answer for one chunk must not make
        the letters of another, already accepted, be sent again.
        """
        entries = batch.entries
        fitted: list[FittedLetter] = []
        for i, e in enumerate(entries):
            assert isinstance(e.payload, DeadLetter)
            fitted.append(
                fit_letter(e.payload, _ENTRY_IDS[i], self.max_message_bytes, fifo=self._fifo_dlq)
            )
        chunks = chunk_entries([f.entry for f in fitted], self.max_message_bytes)
        results = await asyncio.gather(*(self._send_chunk(chunk) for chunk in chunks))
        for result in results:
            for entry_id in result.successful:
                i = int(entry_id)
                self._letter_accepted(entries[i], fitted[i])
            for failure in result.failed:
                self._letter_refused(entries[int(failure.id)], failure)

    async def _send_chunk(self, chunk: Sequence[SendEntry]) -> BatchResult:
        self.counters.calls += 1
        try:
            result = await self.dp.send_batch(self.dlq_url, chunk)
        except SQSError as exc:
            self.counters.call_errors += 1
            self._call_failed(exc)
            return _whole_call_failed(exc, [e.id for e in chunk])
        self._call_answered()
        return result

    def _letter_accepted(self, entry: AckEntry, fitted: FittedLetter) -> None:
        self.counters.dead_lettered += 1
        letter = entry.payload
        assert isinstance(letter, DeadLetter)
        if fitted.body_omitted:
            # Only a stub fitted: the original stays where it is, whole, for the redrive policy.
            self.counters.letters_body_omitted += 1
            log.warning(
                "message %s on %s is too large for the DLQ %s (%d bytes over its limit of %d): "
                "sent a stub letter instead; the original stays in its queue for the redrive "
                "policy (%s)",
                letter.message_id,
                self.queue_url,
                self.dlq_url,
                len(letter.body.encode()),
                self.max_message_bytes,
                letter.reason[:200],
            )
            self.add(
                AckKind.VISIBILITY,
                AckEntry(entry.key, entry.receipt_handle, letter.keep_visibility_s),
            )
            return
        # Phase two: the DLQ holds the copy, now the original may go.
        self.add(AckKind.DELETE, AckEntry(entry.key, entry.receipt_handle))

    def _letter_refused(self, entry: AckEntry, failure: BatchFailure) -> None:
        why = f"{failure.code}: {failure.message}"
        if not is_retryable(failure):
            self._give_up(AckKind.DEAD_LETTER, entry, why)
            return
        if failure.code in AMBIGUOUS_CODES:
            # The DLQ may hold this letter already: resend it (same letter id) a bounded number
            # of times, so that a flaky network cannot multiply copies.
            self.counters.letter_answers_lost += 1
            letter = entry.payload
            assert isinstance(letter, DeadLetter)
            letter = letter.answer_lost()
            if not letter.may_resend_unanswered:
                self._give_up(
                    AckKind.DEAD_LETTER,
                    entry,
                    f"{why} (no answer {letter.unanswered_sends} times; the DLQ may hold a copy "
                    f"with goraxfast_letter_id={letter.letter_id})",
                )
                return
            entry = AckEntry(
                entry.key, entry.receipt_handle, entry.visibility_timeout_s, letter, entry.attempts
            )
        self._retry(AckKind.DEAD_LETTER, entry, why)

    def _retry(self, kind: AckKind, entry: AckEntry, why: str) -> None:
        """Send ``entry`` again after a backoff. A delete is retried for as long as the engine
        runs: giving it up means running its message again. Other kinds give up after
        :data:`MAX_ATTEMPTS` (a late lease renewal or release has nothing left to do)."""
        if kind is not AckKind.DELETE and entry.attempts + 1 >= MAX_ATTEMPTS:
            self._give_up(kind, entry, f"{why} (after {entry.attempts + 1} attempts)")
            return
        if entry.attempts == 0 and kind is AckKind.DELETE:
            self.retrying += 1
        self.counters.entries_retried += 1
        delay = min(5.0, self.retry_base_s * (2 ** min(entry.attempts, 20)))
        delay *= 0.5 + random.random()
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

    def _done_retrying(self, entries: Iterable[AckEntry]) -> None:
        before = self.retrying
        self.retrying -= sum(1 for e in entries if e.attempts)
        if self.retrying < before:
            self.on_room()

    def _give_up(self, kind: AckKind, entry: AckEntry, why: str) -> None:
        self.counters.entries_given_up += 1
        if kind is AckKind.DELETE:
            self.counters.deletes_given_up += 1
            if entry.attempts:
                self._done_retrying((entry,))
        what = {
            AckKind.DELETE: "delete",
            AckKind.VISIBILITY: "visibility change",
            AckKind.DEAD_LETTER: "dead-letter",
        }[kind]
        admission = self._give_up_log.admit(self.clock())
        if admission.summary is not None:
            log.warning(
                "%d more acknowledgements given up on %s in the last %.0f s (not logged one by one)",
                admission.summary.count,
                self.queue_url,
                admission.summary.window_s,
            )
        if admission.full:
            log.warning(
                "gave up a %s on %s (delivery %d): %s; the message comes back after its "
                "visibility timeout",
                what,
                self.queue_url,
                entry.key,
                why,
            )

    def _call_failed(self, exc: SQSError) -> None:
        code = exc.code or exc.detail.split(":", 1)[0]
        failure = self.outage.failed(self.clock(), code, str(exc), random.random())
        if failure.line is not None:
            log.warning("%s; failed entries are sent again", failure.line)

    def _call_answered(self) -> None:
        if self.outage.failing:
            line = self.outage.succeeded(self.clock())
            if line is not None:
                log.warning("%s", line)
            self.on_room()  # what was owed no longer holds the engine back

    def abandon(self) -> int:
        """Shutdown is over: count what was never confirmed, and forget it."""
        left = self.pending
        self.counters.abandoned += left
        self.cancel_retries()
        self.batcher.flush()  # dropped: nothing will send them now
        for kind, queued in self._queued.items():  # before cancelling: an ended call starts one
            self.counters.by_kind_in_flight[kind] -= sum(len(b.entries) for b in queued)
            queued.clear()
        for task in self._calls:
            task.cancel()
        return left


def _whole_call_failed(exc: SQSError, ids: int | Sequence[str]) -> BatchResult:
    """A whole call refused or unanswered: each entry failed with the call's code.

    No AWS code means no answer (connection lost, timed out): ``RequestFailed``, retryable and
    ambiguous. A code the error table does not know is retried too (SenderFault unknown), a
    bounded number of times: giving up an ack means running its message again.
    """
    code = exc.code or "RequestFailed"
    names = _ENTRY_IDS[:ids] if isinstance(ids, int) else ids
    return BatchResult((), tuple(BatchFailure(i, code, str(exc), False) for i in names))
