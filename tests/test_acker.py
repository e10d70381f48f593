"""Acker edge cases with a scripted data plane (the happy paths run against moto in test_engine)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from goraxfast.core.acks import AckBatcher, AckEntry, AckKind
from goraxfast.core.deadletter import LETTER_ID, MAX_LETTER_SENDS_WITHOUT_ANSWER, DeadLetter
from goraxfast.core.sqs_model import (
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    SendEntry,
    is_retryable,
)
from goraxfast.engine.acker import Acker
from goraxfast.errors import QueueDoesNotExistError, SQSError


class ScriptedPlane:
    """Answers each call from a script of results or exceptions; records every call."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, object]] = []

    def _next(self, name: str, payload: object, ids: list[str]) -> BatchResult:
        self.calls.append((name, payload))
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, Exception):
            raise answer
        if answer == "ok":
            return BatchResult(tuple(ids), ())
        assert isinstance(answer, BatchResult)
        return answer

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]:
        return []

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        return self._next("delete", list(entries), [e[0] for e in entries])

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        return self._next("visibility", list(entries), [e[0] for e in entries])

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        return self._next("send", list(entries), [e.id for e in entries])


def make_acker(plane: ScriptedPlane, *, max_message_bytes: int = 1_048_576) -> Acker:
    return Acker(
        AckBatcher(max_age_s=0),
        plane,
        queue_url="q",
        dlq_url="dlq",
        clock=time.monotonic,
        retry_base_s=0.002,
        max_message_bytes=max_message_bytes,
    )


async def test_a_dead_letter_is_deleted_only_after_the_dlq_accepted_it() -> None:
    plane = ScriptedPlane()
    acker = make_acker(plane)
    letter = DeadLetter("body", {}, "bad", 3, "mid", "q")
    acker.add(AckKind.DEAD_LETTER, AckEntry(1, "rh-1", payload=letter))
    assert await acker.flush(5)
    assert [name for name, _ in plane.calls] == ["send", "delete"]
    assert acker.counters.dead_lettered == 1 and acker.counters.deleted == 1


async def test_a_refused_dead_letter_is_not_deleted() -> None:
    refused = BatchResult((), (BatchFailure("0", "InvalidMessageContents", "no", True),))
    plane = ScriptedPlane(refused)
    acker = make_acker(plane)
    acker.add(
        AckKind.DEAD_LETTER, AckEntry(1, "rh-1", payload=DeadLetter("b", {}, "r", 1, "m", "q"))
    )
    assert await acker.flush(5)
    assert [name for name, _ in plane.calls] == ["send"]
    assert acker.counters.entries_given_up == 1


async def test_a_transient_entry_failure_is_retried_alone() -> None:
    partial = BatchResult(("0",), (BatchFailure("1", "InternalError", "try again", False),))
    plane = ScriptedPlane(partial)
    acker = make_acker(plane)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    acker.add(AckKind.DELETE, AckEntry(2, "rh-2"))
    assert await acker.flush(5)
    first, second = plane.calls
    assert len(first[1]) == 2 and second[1] == [("0", "rh-2")]
    assert acker.counters.deleted == 2


async def test_a_stale_receipt_handle_is_given_up_not_retried() -> None:
    stale = BatchResult((), (BatchFailure("0", "ReceiptHandleIsInvalid", "expired", True),))
    plane = ScriptedPlane(stale)
    acker = make_acker(plane)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    assert await acker.flush(5)
    assert len(plane.calls) == 1 and acker.counters.entries_given_up == 1


async def test_a_missing_queue_is_given_up_at_once_so_shutdown_does_not_wait_on_it() -> None:
    plane = ScriptedPlane(
        QueueDoesNotExistError("DeleteMessageBatch", "q", "gone", "QueueDoesNotExist")
    )
    acker = make_acker(plane)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    assert await acker.flush(5)
    assert len(plane.calls) == 1 and acker.pending == 0


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = dict(
        body="body",
        attributes={},
        reason="bad",
        receive_count=1,
        message_id="mid",
        source_queue="q",
        keep_visibility_s=45,
    )
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def lost_answer() -> SQSError:
    """What either client raises when a request went out and no answer came back."""
    return SQSError("SendMessageBatch", "dlq", "ConnectionResetError: connection lost")


async def test_a_dead_letter_whose_answer_is_lost_is_resent_a_bounded_number_of_times() -> None:
    plane = ScriptedPlane(*[lost_answer() for _ in range(10)])
    acker = make_acker(plane)
    acker.add(AckKind.DEAD_LETTER, AckEntry(1, "rh-1", payload=letter()))
    assert await acker.flush(10)
    sends = [payload for name, payload in plane.calls if name == "send"]
    assert len(sends) == MAX_LETTER_SENDS_WITHOUT_ANSWER
    ids = {e.message_attributes[LETTER_ID]["StringValue"] for [e] in sends}  # type: ignore[misc]
    assert ids == {"mid:1"}  # every copy says it is the same letter
    assert [name for name, _ in plane.calls].count("delete") == 0  # never deleted unconfirmed
    assert acker.counters.entries_given_up == 1 and acker.counters.letter_answers_lost == 2


async def test_a_refused_dead_letter_send_is_retried_as_a_definite_no_without_that_bound() -> None:
    throttled = SQSError("SendMessageBatch", "dlq", "slow down", "ThrottlingException")
    plane = ScriptedPlane(throttled, throttled, throttled)
    acker = make_acker(plane)
    acker.add(AckKind.DEAD_LETTER, AckEntry(1, "rh-1", payload=letter()))
    assert await acker.flush(10)
    assert [name for name, _ in plane.calls] == ["send"] * 4 + ["delete"]


async def test_a_letter_whose_body_does_not_fit_leaves_the_original_for_the_redrive_policy() -> (
    None
):
    plane = ScriptedPlane()
    acker = make_acker(plane, max_message_bytes=2048)
    acker.add(AckKind.DEAD_LETTER, AckEntry(1, "rh-1", payload=letter(body="x" * 5000)))
    assert await acker.flush(5)
    assert [name for name, _ in plane.calls] == ["send", "visibility"]
    [(stub,)] = [payload for name, payload in plane.calls if name == "send"]  # type: ignore[misc]
    assert stub.message_attributes["goraxfast_body_omitted"]["StringValue"] == "true"
    assert plane.calls[1][1] == [("0", "rh-1", 45)]  # kept, visible again after the backoff
    assert acker.counters.letters_body_omitted == 1 and acker.counters.deleted == 0


async def test_chunks_of_one_letter_batch_fail_alone() -> None:
    """A lost answer for one chunk must not resend the letters of another that was accepted."""
    plane = ScriptedPlane("ok", lost_answer())
    acker = make_acker(plane, max_message_bytes=3000)
    for key in (1, 2):  # two letters of ~2 kB: one per chunk
        payload = letter(body=str(key) * 2000, message_id=f"m{key}")
        acker.add(AckKind.DEAD_LETTER, AckEntry(key, f"rh-{key}", payload=payload))
    assert await acker.flush(10)
    sent_bodies = [e.body[0] for name, p in plane.calls if name == "send" for e in p]  # type: ignore[attr-defined]
    assert sorted(sent_bodies) == ["1", "2", "2"]  # the lost one alone was sent again
    deleted = sorted(h for name, p in plane.calls if name == "delete" for _, h in p)  # type: ignore[attr-defined]
    assert deleted == ["rh-1", "rh-2"]


@pytest.mark.parametrize(
    ("code", "sender_fault", "retried"),
    [
        ("InternalError", True, True),  # once given up by the acker, now as the table says
        ("ServiceUnavailable", True, True),
        ("ThrottlingException", True, True),
        ("ReceiptHandleIsInvalid", False, False),  # stale stays stale, whatever the flag
        ("AWS.SimpleQueueService.MessageNotInflight", True, False),
        ("SomethingNew", False, True),  # unknown: SQS's SenderFault decides
        ("SomethingNew", True, False),
    ],
)
async def test_the_acker_retries_exactly_what_the_error_table_calls_retryable(
    code: str, sender_fault: bool, retried: bool
) -> None:
    failure = BatchFailure("0", code, "m", sender_fault)
    assert is_retryable(failure) is retried
    plane = ScriptedPlane(BatchResult((), (failure,)))
    acker = make_acker(plane)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    assert await acker.flush(5)
    assert len(plane.calls) == (2 if retried else 1)
    assert acker.counters.entries_given_up == (0 if retried else 1)


async def test_a_delete_is_retried_for_as_long_as_it_fails_and_counts_as_retrying() -> None:
    down = SQSError("DeleteMessageBatch", "q", "server error", "InternalError")
    plane = ScriptedPlane(*[down] * 8)  # more failures than MAX_ATTEMPTS allows other kinds
    acker = make_acker(plane)
    rooms: list[int] = []
    acker.on_room = lambda: rooms.append(acker.retrying)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    acker.add(AckKind.DELETE, AckEntry(2, "rh-2"))
    seen: set[int] = set()
    task = asyncio.ensure_future(acker.run())
    try:
        while acker.counters.deleted < 2:
            seen.add(acker.retrying)
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert len(plane.calls) > 8 and acker.counters.entries_given_up == 0  # past MAX_ATTEMPTS
    assert 2 in seen and acker.retrying == 0 and rooms[-1] == 0  # room again once they went


async def test_an_outage_of_acks_is_logged_when_it_starts_and_ends_not_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = SQSError("DeleteMessageBatch", "q", "ConnectionRefusedError: refused")
    plane = ScriptedPlane(*[down] * 6)
    acker = make_acker(plane)
    acker.add(AckKind.DELETE, AckEntry(1, "rh-1"))
    with caplog.at_level(logging.WARNING, "goraxfast.acks"):
        assert await acker.flush(30)
    lines = [r.getMessage() for r in caplog.records if r.name == "goraxfast.acks"]
    assert len(lines) == 2, lines
    assert "SQS acknowledgements failing" in lines[0] and "answering again" in lines[1]


async def test_what_is_unsent_when_the_engine_stops_is_counted_as_abandoned() -> None:
    down = SQSError("DeleteMessageBatch", "q", "server error", "InternalError")
    plane = ScriptedPlane(*[down] * 100)
    acker = make_acker(plane)
    for key in range(3):
        acker.add(AckKind.DELETE, AckEntry(key, f"rh-{key}"))
    assert not await acker.flush(0.3)
    assert acker.abandon() == 3 and acker.counters.abandoned == 3 and acker.pending == 0


class StalledDeletes(ScriptedPlane):
    """Deletes wait until released; visibility changes answer at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.deletes_started = 0

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        self.deletes_started += 1
        await self.release.wait()
        return BatchResult(tuple(e[0] for e in entries), ())


def stalled_acker(plane: StalledDeletes, calls_per_kind: int) -> Acker:
    return Acker(
        AckBatcher(max_age_s=0),
        plane,
        queue_url="q",
        dlq_url="dlq",
        clock=time.monotonic,
        calls_per_kind=calls_per_kind,
    )


async def test_lease_renewals_are_not_held_behind_deletes_that_use_every_call() -> None:
    plane = StalledDeletes()
    acker = stalled_acker(plane, calls_per_kind=2)
    task = asyncio.get_running_loop().create_task(acker.run())
    for i in range(50):  # five delete batches: two in calls, three waiting for one
        acker.add(AckKind.DELETE, AckEntry(i, f"rh-{i}"))
    acker.add(AckKind.VISIBILITY, AckEntry(100, "rh-100", 30))
    for _ in range(100):
        if any(name == "visibility" for name, _ in plane.calls):
            break
        await asyncio.sleep(0)
    assert [name for name, _ in plane.calls] == ["visibility"]
    assert plane.deletes_started == 2
    plane.release.set()
    assert await acker.flush(5)
    assert plane.deletes_started == 5 and acker.counters.deleted == 50
    task.cancel()


async def test_queued_batches_are_dropped_not_sent_when_acks_are_abandoned() -> None:
    plane = StalledDeletes()
    acker = stalled_acker(plane, calls_per_kind=1)
    for i in range(30):
        acker.add(AckKind.DELETE, AckEntry(i, f"rh-{i}"))
    assert not await acker.flush(0.05)
    assert acker.abandon() == 30
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert plane.deletes_started == 1  # the queued two never started
