"""Dead-letter administration's decisions, without I/O: what a letter says, how letters are
counted by reason, what a redrive sends back and what it may delete after a send."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goraxfast.core.deadletter import (
    BODY_OMITTED,
    DEAD_LETTER_GROUP,
    LETTER_ID,
    REASON,
    DeadLetter,
    fit_letter,
)
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.redrive import (
    DEAD_LETTER_ATTRIBUTES,
    NO_REASON,
    REASON_KIND_CHARS,
    LetterView,
    MoveProgress,
    RedriveTally,
    clean_attributes,
    count_by_reason,
    dlq_of_redrive_policy,
    letter_view,
    move_progress,
    move_rate,
    move_task_unsupported,
    pace_delay_s,
    queue_arn_parts,
    queue_name_of,
    reason_kind,
    redrive_dedup_id,
    redrive_entry,
    settle,
)
from goraxfast.core.retry import Outcome, RetryPolicy
from goraxfast.core.sqs_model import (
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    token_problem,
)

SOURCE = "http://sqs.local/000000000000/orders"


def execution(n: int = 1) -> ExecutionMessage:
    return ExecutionMessage.new(
        tenant_id=f"tenant-{n}",
        workflow_id="wf",
        workflow_version=1,
        trigger_type="test",
        execution_id=f"exec-{n}",
    )


def on_dlq(
    letter: DeadLetter, *, message_id: str = "dlq-1", group: str = "", fifo: bool = False
) -> ReceivedMessage:
    """A letter as the engine writes it (fit_letter), then as ReceiveMessage returns it."""
    entry = fit_letter(letter, "0", 1_048_576, fifo=fifo).entry
    attrs = {
        name: {**value, "StringListValues": []} for name, value in entry.message_attributes.items()
    }
    return ReceivedMessage(
        message_id=message_id,
        receipt_handle=f"handle-{message_id}",
        body=entry.body.encode(),
        receive_count=1,
        first_received_ms=0,
        sent_ms=1_700_000_000_000,
        message_attributes=attrs,
        group_id=group or (entry.group_id or ""),
    )


def engine_letter(
    n: int = 1, reason: str = "workflow wf was deleted", **changes: object
) -> DeadLetter:
    msg = execution(n)
    fields: dict[str, object] = dict(
        body=encode_message(msg).decode(),
        attributes=msg.message_attributes(),
        reason=reason,
        receive_count=3,
        message_id=f"src-{n}",
        source_queue=SOURCE,
    )
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def bare(body: bytes = b"plain", message_id: str = "m-1", **attrs: str) -> ReceivedMessage:
    return ReceivedMessage(
        message_id,
        f"h-{message_id}",
        body,
        2,
        0,
        5,
        {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()},
    )


# --- reasons -----------------------------------------------------------------------------------

POLICY = RetryPolicy(max_retries=3)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        # what the engine's RetryPolicy itself writes, so the labels cannot drift from it
        (
            POLICY.decide(Outcome.FAIL, 3, reason="ValueError: boom-e3").reason,
            "handler failed: ValueError",
        ),
        (POLICY.decide(Outcome.FAIL, 3, reason="KeyError: 'x'").reason, "handler failed: KeyError"),
        (
            POLICY.decide(Outcome.FAIL, 3, reason="CustomError").reason,
            "handler failed: CustomError",
        ),
        (POLICY.decide(Outcome.FAIL, 3).reason, "handler failed"),
        (
            POLICY.decide(Outcome.TIMEOUT, 3, reason="over QUEUE_PROCESS_TIMEOUT=1s").reason,
            "handler timed out",
        ),
        (
            POLICY.decide(Outcome.CRASH, 3, reason="killed by signal 9").reason,
            "worker died while handling it",
        ),
        (POLICY.poison("ValidationError: tenant_id is required", 1).reason, "poison message"),
        (POLICY.intake_failed("KeyError: 'slot'", 3).reason, "receive path failed"),
        (
            POLICY.decide(Outcome.REJECT, 1, reason="workflow wf was deleted").reason,
            "workflow wf was deleted",
        ),
        (POLICY.decide(Outcome.REJECT, 1).reason, "rejected by handler"),
        # anything else: its own text, without attempt numbers, bounded
        ("quota exceeded (attempt 2 of 5)", "quota exceeded"),
        ("", NO_REASON),
        ("   ", NO_REASON),
        ("r" * 200, "r" * (REASON_KIND_CHARS - 1) + "…"),
        ("handler failed: <unprintable> ok", "handler failed"),
        ("handler failedness", "handler failedness"),
    ],
)
def test_a_reason_counts_under_its_engine_label_or_its_own_text(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def view(kind_reason: str, message_id: str = "m") -> LetterView:
    return letter_view(bare(message_id=message_id, **{REASON: kind_reason} if kind_reason else {}))


def test_counts_by_reason_put_the_most_frequent_first_and_ties_by_name() -> None:
    views = [
        view("handler failed: ValueError: a (attempt 3 of 3)", "1"),
        view("b-reason", "2"),
        view("handler failed: ValueError: b (attempt 3 of 3)", "3"),
        view("a-reason", "4"),
        view("", "5"),
    ]
    assert count_by_reason(views) == [
        ("handler failed: ValueError", 2),
        ("a-reason", 1),
        ("b-reason", 1),
        (NO_REASON, 1),
    ]


# --- what a letter says -----------------------------------------------------------------------


def test_a_letter_the_engine_wrote_shows_its_source_reason_and_execution() -> None:
    v = letter_view(on_dlq(engine_letter(7, "handler failed: ValueError: x (attempt 3 of 3)")))
    assert (v.message_id, v.source_message_id, v.source_queue) == ("dlq-1", "src-7", SOURCE)
    assert (v.execution_id, v.tenant_id) == ("exec-7", "tenant-7")
    assert (v.receive_count, v.dlq_receive_count, v.sent_ms) == (3, 1, 1_700_000_000_000)
    assert v.kind == "handler failed: ValueError" and v.letter_id == "src-7:3"
    assert not v.body_omitted


def test_a_message_the_redrive_policy_moved_has_no_reason_and_an_unknown_source() -> None:
    v = letter_view(bare(b'{"not": "an execution"}'))
    assert (v.reason, v.kind, v.source_message_id) == ("", NO_REASON, "")
    assert v.receive_count is None and v.dlq_receive_count == 2
    assert (v.execution_id, v.tenant_id) == ("", "")


def test_a_stub_letter_says_its_body_was_omitted() -> None:
    stub = fit_letter(engine_letter(1, body="x" * 300_000), "0", 262_144).entry
    msg = ReceivedMessage("s", "h", stub.body.encode(), 1, 0, 0, stub.message_attributes)
    v = letter_view(msg)
    assert v.body_omitted and v.execution_id == "" and v.source_message_id == "src-1"


def test_the_json_view_leaves_unknown_fields_null() -> None:
    doc = letter_view(bare()).to_dict()
    assert doc["source_message_id"] is None and doc["reason"] is None
    assert doc["reason_kind"] == NO_REASON and doc["receive_count"] is None


# --- what a redrive sends ------------------------------------------------------------------------


def test_a_redriven_message_is_the_original_body_and_attributes_without_the_annotations() -> None:
    letter = engine_letter(3)
    entry = redrive_entry(on_dlq(letter), "4", fifo=False)
    assert entry is not None
    assert entry.id == "4" and entry.body == letter.body
    assert dict(entry.message_attributes) == {
        name: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
        for name, v in letter.attributes.items()
    }
    assert not DEAD_LETTER_ATTRIBUTES & set(entry.message_attributes)
    assert (entry.group_id, entry.dedup_id, entry.delay_s) == (None, None, 0)


def test_attributes_keep_only_what_sendmessage_takes() -> None:
    attrs = {
        "a": {
            "DataType": "String",
            "StringValue": "v",
            "StringListValues": [],
            "BinaryListValues": [],
        },
        "b": {"DataType": "Binary", "BinaryValue": b"\x00"},
        REASON: {"DataType": "String", "StringValue": "why"},
        LETTER_ID: {"DataType": "String", "StringValue": "x:1"},
    }
    assert clean_attributes(attrs) == {
        "a": {"DataType": "String", "StringValue": "v"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00"},
    }


def test_to_a_fifo_queue_a_letter_keeps_its_group_and_gets_a_dedup_id_from_its_dlq_id() -> None:
    letter = engine_letter(1, group_id="wf-9")
    first = redrive_entry(on_dlq(letter, message_id="dlq-a", fifo=True), "0", fifo=True)
    again = redrive_entry(on_dlq(letter, message_id="dlq-a", fifo=True), "3", fifo=True)
    other = redrive_entry(on_dlq(letter, message_id="dlq-b", fifo=True), "0", fifo=True)
    assert first is not None and again is not None and other is not None
    assert first.group_id == "wf-9"
    assert first.dedup_id == again.dedup_id == redrive_dedup_id("dlq-a")
    assert other.dedup_id != first.dedup_id


def test_a_letter_without_a_group_goes_to_a_fifo_queue_in_the_dead_letter_group() -> None:
    entry = redrive_entry(bare(), "0", fifo=True)
    assert entry is not None and entry.group_id == DEAD_LETTER_GROUP


def test_to_a_standard_queue_a_fair_queue_group_is_kept_and_no_dedup_id_sent() -> None:
    msg = ReceivedMessage("m", "h", b"b", 1, 0, 0, {}, group_id="tenant-4")
    entry = redrive_entry(msg, "0", fifo=False)
    assert entry is not None and (entry.group_id, entry.dedup_id) == ("tenant-4", None)


@given(st.text(min_size=1, max_size=300))
def test_every_dedup_id_is_one_sqs_accepts(message_id: str) -> None:
    dedup = redrive_dedup_id(message_id)
    assert token_problem("MessageDeduplicationId", dedup) is None
    assert dedup in {
        f"redrive-{message_id}",
        "redrive-" + hashlib.sha256(message_id.encode()).hexdigest(),
    }


def test_a_stub_letter_is_not_sent_back() -> None:
    msg = bare(b'{"goraxfast_dead_letter": "body omitted"}', **{BODY_OMITTED: "true"})
    assert redrive_entry(msg, "0", fifo=False) is None


# --- what may be deleted after a send ---------------------------------------------------------


def failure(entry_id: str, code: str) -> BatchFailure:
    return BatchFailure(entry_id, code, f"{code} text", code != "RequestFailed")


@pytest.mark.parametrize(
    ("result", "delete", "release", "unsure"),
    [
        (BatchResult(("0", "1", "2"), ()), ("0", "1", "2"), (), ()),
        (BatchResult(("0", "2"), (failure("1", "MessageTooLong"),)), ("0", "2"), ("1",), ()),
        (
            BatchResult(
                (),
                (
                    failure("0", "AccessDenied"),
                    failure("1", "AccessDenied"),
                    failure("2", "AccessDenied"),
                ),
            ),
            (),
            ("0", "1", "2"),
            (),
        ),
        (
            BatchResult(
                ("1",), (failure("0", "RequestFailed"), failure("2", "ThrottlingException"))
            ),
            ("1",),
            ("2",),
            ("0",),
        ),
        # a server that answers for fewer entries than it was sent: the missing ones are kept
        (BatchResult(("0",), ()), ("0",), ("1", "2"), ()),
    ],
    ids=["all sent", "one refused", "all refused", "one unanswered", "one not mentioned"],
)
def test_only_what_the_source_queue_accepted_is_deleted(
    result: BatchResult, delete: tuple[str, ...], release: tuple[str, ...], unsure: tuple[str, ...]
) -> None:
    settled = settle(["0", "1", "2"], result)
    assert (settled.delete, settled.release, settled.unsure) == (delete, release, unsure)
    assert [f.id for f in settled.refusals] == list(release)


@given(
    st.lists(
        st.sampled_from(["ok", "RequestFailed", "AccessDenied", "ThrottlingException", "absent"]),
        min_size=1,
        max_size=10,
    )
)
def test_every_entry_of_a_send_is_settled_exactly_once(outcomes: list[str]) -> None:
    ids = [str(i) for i in range(len(outcomes))]
    ok = tuple(i for i, o in zip(ids, outcomes, strict=True) if o == "ok")
    failed = tuple(
        failure(i, o) for i, o in zip(ids, outcomes, strict=True) if o not in {"ok", "absent"}
    )
    settled = settle(ids, BatchResult(ok, failed))
    every = [*settled.delete, *settled.release, *settled.unsure]
    assert sorted(every) == sorted(ids)
    assert set(settled.delete) == set(ok)


def test_the_tally_says_what_was_left_behind_and_whether_anything_is_on_both_queues() -> None:
    tally = RedriveTally()
    assert tally.complete and tally.summary() == []
    tally.sent |= {"a", "b", "c"}
    tally.deleted |= {"a", "b"}
    tally.refused("d", failure("0", "MessageTooLong"))
    tally.refused("e", failure("1", "MessageTooLong"))
    tally.stubs.add("f")
    tally.keep("f", "stub")
    assert tally.moved == 2 and tally.on_both == {"c"}
    assert all(tally.seen(m) for m in "abcdef") and not tally.seen("g")
    lines = tally.summary()
    assert lines[0] == "2 refused by the source queue (MessageTooLong: MessageTooLong text)"
    assert "1 stub letters" in lines[1]
    assert "1 were sent to the source queue but could not be deleted" in lines[2]
    assert not tally.complete


def test_stub_letters_alone_do_not_make_a_redrive_incomplete() -> None:
    tally = RedriveTally(stubs={"s"}, kept={"s": "stub"})
    assert tally.complete and len(tally.summary()) == 1


@pytest.mark.parametrize(
    ("moved", "elapsed_s", "rate", "delay_s"),
    [
        (10, 0.0, None, 0.0),
        (10, 0.0, 10.0, 1.0),
        (10, 0.4, 10.0, 0.6),
        (10, 2.0, 10.0, 0.0),  # behind the rate: no wait
        (0, 0.0, 5.0, 0.0),
    ],
)
def test_the_pace_keeps_a_redrive_to_its_rate(
    moved: int, elapsed_s: float, rate: float | None, delay_s: float
) -> None:
    assert pace_delay_s(moved, elapsed_s, rate) == pytest.approx(delay_s)


# --- where the DLQ is ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "target"),
    [
        (
            '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:jobs-dlq","maxReceiveCount":"5"}',
            ("123456789012", "jobs-dlq"),
        ),
        (
            '{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:j-dlq.fifo"}',
            ("000000000000", "j-dlq.fifo"),
        ),
        ('{"maxReceiveCount":"5"}', None),
        ('{"deadLetterTargetArn":"arn:aws:sns:us-east-1:1:topic"}', None),
        ("not json", None),
        ("[]", None),
        ("", None),
    ],
)
def test_the_redrive_policy_names_the_dlq(policy: str, target: tuple[str, str] | None) -> None:
    assert dlq_of_redrive_policy(policy) == target


def test_queue_names_and_arns_are_read_as_sqs_writes_them() -> None:
    assert queue_name_of("http://127.0.0.1:4566/000000000000/orders/") == "orders"
    assert queue_arn_parts("arn:aws-cn:sqs:cn-north-1:1:q") == ("cn-north-1", "1", "q")
    assert queue_arn_parts("arn:aws:sqs:us-east-1:1:bad name") is None


# --- SQS's own move task ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "detail", "unsupported"),
    [
        ("500", "<html>Internal Server Error</html>", True),  # moto: no such operation
        ("UnsupportedOperation", "", True),
        ("InvalidAction", "", True),
        ("InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue.", True),
        ("InvalidParameterValue", "There is already a task running.", False),
        ("AccessDenied", "not authorized to perform sqs:StartMessageMoveTask", False),
        ("InternalError", "", False),
        (None, "connection refused", False),
    ],
)
def test_only_a_missing_operation_or_a_queue_that_is_no_dlq_falls_back_to_moving_by_hand(
    code: str | None, detail: str, unsupported: bool
) -> None:
    assert move_task_unsupported(code, detail) is unsupported


def test_a_move_task_report_reads_as_listmessagemovetasks_writes_it() -> None:
    running = move_progress(
        {
            "Status": "RUNNING",
            "ApproximateNumberOfMessagesMoved": 3,
            "ApproximateNumberOfMessagesToMove": 5,
        }
    )
    assert running == MoveProgress("RUNNING", 3, 5) and not running.finished
    assert running.describe() == "running, 3 of 5 moved"
    failed = move_progress({"Status": "FAILED", "FailureReason": "AccessDenied"})
    assert (
        failed.finished and not failed.ok and failed.describe() == "failed, 0 moved: AccessDenied"
    )
    assert move_progress({"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 5}).ok


@pytest.mark.parametrize(("rate", "sent"), [(None, None), (0.5, 1), (10.9, 10), (9999, 500)])
def test_a_rate_becomes_what_the_move_task_takes(rate: float | None, sent: int | None) -> None:
    assert move_rate(rate) == sent
