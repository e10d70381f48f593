"""Acker edge cases with a scripted data plane (the happy paths run against moto in test_engine)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from goraxfast.acker import Acker, DeadLetter
from goraxfast.core.acks import AckBatcher, AckEntry, AckKind
from goraxfast.errors import QueueDoesNotExistError
from goraxfast.sqs import BatchFailure, BatchResult, ReceivedMessage, SendEntry


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


def make_acker(plane: ScriptedPlane) -> Acker:
    return Acker(AckBatcher(max_age_s=0), plane, queue_url="q", dlq_url="dlq", clock=time.monotonic)


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


def test_an_oversized_letter_keeps_its_body_and_sheds_annotations() -> None:
    letter = DeadLetter(
        "x" * 1000, {"a": {"DataType": "String", "StringValue": "v"}}, "why" * 500, 2, "m", "q"
    )
    entry = letter.fitted_entry("0", 1300)
    assert entry.body == "x" * 1000
    assert entry.message_attributes["goraxfast_dlq_reason"]["StringValue"] == ("why" * 500)[:200]
    assert "a" not in entry.message_attributes
