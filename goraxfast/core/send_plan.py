"""How a batch of sends is retried, without the I/O: which entries go in which call of which round,
what to send again after a partial failure, how long to wait, and a FIFO group's order kept
across all of it. The clients (:mod:`goraxfast.sqs.botocore`, the publisher) drive it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from goraxfast.core.sqs_model import (
    HELD_BACK_CODE,
    RETRYABLE_CODES,
    BatchFailure,
    BatchResult,
    SendEntry,
    backoff_s,
    chunk_entries,
    entry_problem,
    is_entry_id,
    is_retryable,
)
from goraxfast.errors import SQSError

__all__ = ["PlannedCall", "SendPlan", "whole_call_failure"]


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One SendMessageBatch of a round, and the calls of the same round (by ``index``) that must
    have finished before it starts: those holding earlier entries of one of its message groups."""

    index: int
    entries: tuple[SendEntry, ...]
    after: tuple[int, ...] = ()


class SendPlan:
    """The retry loop of ``send_entries`` without the I/O: calls out, results in, delays out.

    Entries SQS would refuse outright fail at once. After each round only the failures that
    :func:`is_retryable` accepts are sent again, at most ``max_attempts`` rounds in all.

    For a FIFO queue (``fifo``) SQS orders a group by the order of entries in a batch and by the
    order batches are sent in, so the plan keeps each group's order, within a round and across
    rounds:

    - entries are chunked with each group's entries together (groups by first appearance, each
      group in input order): a call then shares groups with at most its neighbours, and the
      calls of different groups may be in flight at once (``send_concurrency``);
    - a call that holds a later entry of a group than another call names it in ``after``: the
      driver starts it only once those have finished, so two calls with one group are never in
      flight together nor sent out of order;
    - once an entry failed in a way worth retrying (or its call raised), later entries of its
      group are held back for the round (:meth:`take`): they are sent after it, in the next
      round, in order, and not in its call (should it fail again, SQS could take them in the
      same batch, ahead of it). Held back in the last round, an entry fails with
      :data:`HELD_BACK_CODE` (retryable: nothing was sent). A failure that is not retryable
      holds nothing back: that entry will never be sent, so nothing can overtake it.

    What the plan cannot undo: SQS answering a first send of a batch with a retryable failure
    for an entry and success for a later entry of the same group (that later one is then in the
    queue ahead of it). A driver calls :meth:`calls`, then per call :meth:`take` and :meth:`settle`, then
    :meth:`end_round`; :meth:`chunks` and :meth:`record` do a round at once, with no holding.
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
        fifo: bool = False,
    ) -> None:
        ids = [e.id for e in entries]
        bad = [i for i in ids if not is_entry_id(i)]
        if bad:
            raise ValueError(f"batch entry ids must be 1-80 of [A-Za-z0-9_-]: {bad[:5]!r}")
        if len(set(ids)) != len(ids):
            raise ValueError("batch entry ids must be unique within one send_entries call")
        self._max_bytes, self._max_attempts = max_bytes, max(1, max_attempts)
        self._base_s, self._cap_s, self._rand = base_s, cap_s, rand
        self.fifo = fifo
        self._order = ids
        self._position = {entry_id: n for n, entry_id in enumerate(ids)}
        self._sent: dict[str, str] = {}
        self._failed: dict[str, BatchFailure] = {}
        self._pending: list[SendEntry] = []
        # this round: entries to send again, groups held back (group -> the entry that holds
        # it) and the failure each held-back entry reports if no round follows
        self._again: list[SendEntry] = []
        self._blocked: dict[str | None, str] = {}
        self._held: dict[str, BatchFailure] = {}
        self._retried: set[str] = set()  # entries that failed in a way worth another round
        for entry in entries:
            problem = entry_problem(entry, max_bytes, fifo=fifo)
            if problem is None:
                self._pending.append(entry)
            else:
                self._failed[entry.id] = problem
        self.attempt = 0

    def calls(self) -> list[PlannedCall]:
        """The calls to make in this round (none when there is nothing left to send)."""
        if not self.fifo:
            chunks = chunk_entries(self._pending, self._max_bytes)
            return [PlannedCall(i, tuple(chunk)) for i, chunk in enumerate(chunks)]
        first: dict[str | None, int] = {}
        for n, entry in enumerate(self._pending):
            first.setdefault(entry.group_id, n)
        together = sorted(self._pending, key=lambda e: first[e.group_id])  # stable: in order
        # An entry sent again ends its call when the next entry is of its group: if it fails
        # again, SQS could still take that later one in the same batch, ahead of it.
        segments: list[list[SendEntry]] = [[]]
        for n, entry in enumerate(together):
            segments[-1].append(entry)
            later = together[n + 1] if n + 1 < len(together) else None
            if entry.id in self._retried and later is not None and later.group_id == entry.group_id:
                segments.append([])
        chunks = [c for segment in segments for c in chunk_entries(segment, self._max_bytes)]
        last_call: dict[str | None, int] = {}
        planned: list[PlannedCall] = []
        for i, chunk in enumerate(chunks):
            groups = {e.group_id for e in chunk}
            after = tuple(sorted({last_call[g] for g in groups if g in last_call}))
            last_call.update(dict.fromkeys(groups, i))
            planned.append(PlannedCall(i, tuple(chunk), after))
        return planned

    def chunks(self) -> list[list[SendEntry]]:
        """The entries of :meth:`calls`, call by call."""
        return [list(call.entries) for call in self.calls()]

    def take(self, call: PlannedCall) -> list[SendEntry]:
        """What to send of ``call`` now that the calls it waits for have finished: all of it,
        less (FIFO) the entries of groups held back earlier in this round."""
        if not self._blocked:
            return list(call.entries)
        send: list[SendEntry] = []
        for entry in call.entries:
            holder = self._blocked.get(entry.group_id)
            if holder is None:
                send.append(entry)
                continue
            self._again.append(entry)
            self._held[entry.id] = BatchFailure(
                entry.id,
                HELD_BACK_CODE,
                f"not sent: entry {holder!r} before it in message group {entry.group_id!r} "
                "could not be sent, and this one must not overtake it",
                False,
            )
        return send

    def settle(self, sent: Sequence[SendEntry], result: BatchResult | None) -> None:
        """Take the answer to one call of this round; None when the call raised (then its
        groups are held back for the rest of the round)."""
        if result is None:
            if self.fifo:
                for entry in sent:
                    self._blocked.setdefault(entry.group_id, entry.id)
            return
        self._absorb(result, {e.id: e for e in sent})

    def end_round(self) -> float | None:
        """Close this round; the delay before the next round, or None when done."""
        self.attempt += 1
        again = sorted(self._again, key=lambda e: self._position[e.id])
        if self.attempt >= self._max_attempts:
            again = []
        still = {e.id for e in again}
        for entry_id, failure in self._held.items():
            if entry_id not in still:
                self._failed[entry_id] = failure
        self._pending, self._again, self._blocked, self._held = again, [], {}, {}
        if not self._pending:
            return None
        return backoff_s(self.attempt, self._base_s, self._cap_s, self._rand())

    def record(self, results: Sequence[BatchResult]) -> float | None:
        """A whole round's results at once (every pending entry sent); as :meth:`end_round`."""
        by_id = {e.id: e for e in self._pending}
        for result in results:
            self._absorb(result, by_id)
        return self.end_round()

    def _absorb(self, result: BatchResult, by_id: Mapping[str, SendEntry]) -> None:
        for entry_id in result.successful:
            self._sent[entry_id] = result.message_ids.get(entry_id, "")
            self._failed.pop(entry_id, None)
        for failure in result.failed:
            self._failed[failure.id] = failure
            entry = by_id.get(failure.id)
            if entry is not None and is_retryable(failure):
                self._again.append(entry)
                self._retried.add(entry.id)
                if self.fifo:
                    self._blocked.setdefault(entry.group_id, entry.id)

    def result(self) -> BatchResult:
        ok = tuple(i for i in self._order if i in self._sent)
        failed = tuple(self._failed[i] for i in self._order if i in self._failed)
        return BatchResult(ok, failed, {i: self._sent[i] for i in ok})


def whole_call_failure(exc: SQSError, entries: Sequence[SendEntry]) -> BatchResult:
    """A refused or lost request fails each of its entries; no AWS code means a transport error."""
    code = exc.code or "RequestFailed"
    fault = exc.code is not None and exc.code not in RETRYABLE_CODES
    return BatchResult((), tuple(BatchFailure(e.id, code, str(exc), fault) for e in entries))
