"""The dead letter: what it holds, how it is made to fit the DLQ, and what its copies share."""

from __future__ import annotations

import json

import pytest
import test_publisher_fifo
from hypothesis import given, settings
from hypothesis import strategies as st

from goraxfast.config import Config
from goraxfast.core.deadletter import (
    BODY_OMITTED,
    DEAD_LETTER_GROUP,
    LETTER_ID,
    MAX_LETTER_SENDS_WITHOUT_ANSWER,
    REASON,
    REASON_CHARS_SHORT,
    SQS_MAX_ATTRIBUTES,
    DeadLetter,
    fit_letter,
    letter_ids,
)
from goraxfast.core.sqs_model import SendEntry, entry_problem, entry_size, token_problem
from goraxfast.sqs.fast import FastSQSClient

fifo_queue_pair = test_publisher_fifo.fifo_queue_pair
fifo_config = test_publisher_fifo.fifo_config

ORIGINAL = {
    "tenant_id": {"DataType": "String", "StringValue": "t1"},
    "workflow_id": {"DataType": "String", "StringValue": "w1"},
}


def letter(body: str = "body", reason: str = "why", **changes: object) -> DeadLetter:
    fields: dict[str, object] = dict(
        body=body,
        attributes=ORIGINAL,
        reason=reason,
        receive_count=2,
        message_id="mid-1",
        source_queue="https://sqs/q",
        keep_visibility_s=60,
    )
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def test_a_letter_that_fits_keeps_its_body_its_attributes_and_its_whole_reason() -> None:
    fitted = fit_letter(letter(reason="r" * 3000), "0", 1_048_576)
    attrs = fitted.entry.message_attributes
    assert not fitted.body_omitted and fitted.entry.body == "body"
    assert attrs["tenant_id"] == ORIGINAL["tenant_id"]
    assert attrs[REASON]["StringValue"] == "r" * 3000
    assert attrs["goraxfast_receive_count"] == {"DataType": "Number", "StringValue": "2"}
    assert attrs["goraxfast_source_message_id"]["StringValue"] == "mid-1"
    assert attrs["goraxfast_source_queue"]["StringValue"] == "https://sqs/q"
    assert attrs[LETTER_ID]["StringValue"] == "mid-1:2"


@pytest.mark.parametrize(
    ("body_chars", "max_bytes", "reason_chars", "keeps_originals"),
    [
        (1000, 10_000, 4000, True),  # room for everything
        (1000, 1000 + 600, REASON_CHARS_SHORT, False),  # annotations shed first
        (1000, 1000 + 250, 60, False),  # then the reason cut to a minimum
    ],
)
def test_annotations_are_shed_before_the_body_is_touched(
    body_chars: int, max_bytes: int, reason_chars: int, keeps_originals: bool
) -> None:
    fitted = fit_letter(letter("x" * body_chars, "why" * 2000), "0", max_bytes)
    attrs = fitted.entry.message_attributes
    assert fitted.entry.body == "x" * body_chars and not fitted.body_omitted
    assert attrs[REASON]["StringValue"] == ("why" * 2000)[:reason_chars]
    assert ("tenant_id" in attrs) is keeps_originals
    assert entry_size(fitted.entry) <= max_bytes


def test_a_body_too_large_for_the_dlq_becomes_a_stub_that_says_so() -> None:
    fitted = fit_letter(letter("x" * 300_000, "poison message: too deep"), "3", 262_144)
    assert fitted.body_omitted and fitted.entry.id == "3"
    assert entry_size(fitted.entry) <= 262_144
    stub = json.loads(fitted.entry.body)
    assert stub["source_message_id"] == "mid-1" and stub["body_bytes"] == 300_000
    assert stub["max_message_bytes"] == 262_144 and "too deep" in stub["reason"]
    assert "body omitted" in stub["goraxfast_dead_letter"]
    assert fitted.entry.message_attributes[BODY_OMITTED]["StringValue"] == "true"
    assert fitted.entry.message_attributes[LETTER_ID]["StringValue"] == "mid-1:2"


def test_a_stub_fits_even_the_smallest_queue_sqs_allows() -> None:
    fitted = fit_letter(letter("x" * 5000, "r" * 5000, message_id="m" * 100), "0", 1024)
    assert fitted.body_omitted and entry_size(fitted.entry) <= 1024


def test_attributes_of_ours_replace_same_named_originals_and_never_exceed_ten() -> None:
    many = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(12)}
    many[REASON] = {"DataType": "String", "StringValue": "forged"}
    attrs = fit_letter(letter(attributes=many), "0", 1_048_576).entry.message_attributes
    assert len(attrs) == SQS_MAX_ATTRIBUTES
    assert attrs[REASON]["StringValue"] == "why"


def test_every_copy_of_one_deliverys_letter_has_the_same_letter_id() -> None:
    first = letter()
    again = first.answer_lost()
    assert again.letter_id == first.letter_id
    assert letter(receive_count=3).letter_id != first.letter_id  # the next delivery is new


def test_a_letter_whose_answer_was_lost_is_resent_a_bounded_number_of_times() -> None:
    current = letter()
    sends = 1
    while True:
        current = current.answer_lost()
        if not current.may_resend_unanswered:
            break
        sends += 1
    assert sends == MAX_LETTER_SENDS_WITHOUT_ANSWER


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(min_size=0, max_size=3000),
    reason=st.text(max_size=5000),
    max_bytes=st.integers(min_value=1024, max_value=8000),
    message_id=st.text(min_size=1, max_size=100),
)
def test_whatever_the_letter_the_entry_fits_and_keeps_the_body_when_it_can(
    body: str, reason: str, max_bytes: int, message_id: str
) -> None:
    fitted = fit_letter(letter(body, reason, message_id=message_id), "0", max_bytes)
    assert entry_size(fitted.entry) <= max_bytes
    if not fitted.body_omitted:
        assert fitted.entry.body == body
    else:
        # only a body with no room left beside the minimal annotations is omitted
        bare = fit_letter(letter("", reason, message_id=message_id), "0", 10**9).entry
        minimal = {k: v for k, v in bare.message_attributes.items() if k.startswith("goraxfast_")}
        minimal[REASON] = {"DataType": "String", "StringValue": reason[:60] or "unknown"}
        assert entry_size(SendEntry("0", body, minimal)) > max_bytes


# --- to a FIFO DLQ: the source's group, the letter id as the deduplication id -----------------


@pytest.mark.parametrize("body_chars", [10, 300_000])  # a whole letter, and a stub
def test_a_letter_to_a_fifo_dlq_keeps_its_group_and_is_deduplicated_by_its_letter_id(
    body_chars: int,
) -> None:
    source = letter("x" * body_chars, message_id="3f1c-aa", receive_count=4, group_id="wf-9")
    fitted = fit_letter(source, "0", 262_144, fifo=True)
    assert fitted.body_omitted is (body_chars > 262_144)
    entry = fitted.entry
    assert (entry.group_id, entry.dedup_id) == ("wf-9", "3f1c-aa:4")
    assert entry.dedup_id == entry.message_attributes[LETTER_ID]["StringValue"]
    assert entry_problem(entry, 262_144, fifo=True) is None
    standard = fit_letter(source, "0", 262_144).entry
    assert (standard.group_id, standard.dedup_id) == (None, None)  # a standard DLQ: none
    assert entry_size(standard) == entry_size(entry)


def test_every_copy_of_one_deliverys_letter_has_the_same_ids_the_next_delivery_new_ones() -> None:
    one = letter(group_id="g")
    assert letter_ids(one) == letter_ids(one.answer_lost()) == ("g", "mid-1:2")
    assert letter_ids(letter(group_id="g", receive_count=3))[1] == "mid-1:3"


def test_a_letter_whose_source_had_no_group_goes_to_a_fixed_one() -> None:
    assert letter_ids(letter())[0] == DEAD_LETTER_GROUP


@pytest.mark.parametrize("message_id", ["m" * 130, "mid with spaces", "mid-é"])
def test_ids_sqs_would_refuse_are_replaced_by_their_hash(message_id: str) -> None:
    group, dedup = letter_ids(letter(message_id=message_id, group_id="g é"))
    assert token_problem("MessageGroupId", group) is None and len(group) == 64
    assert token_problem("MessageDeduplicationId", dedup) is None and len(dedup) == 64
    assert letter_ids(letter(message_id=message_id, group_id="g é")) == (group, dedup)


async def test_a_letter_sent_twice_to_a_fifo_dlq_is_there_once(fifo_config: Config) -> None:
    """The lost-answer resend (MAX_LETTER_SENDS_WITHOUT_ANSWER) reaches a FIFO DLQ only once."""
    entry = fit_letter(letter(group_id="wf-1"), "0", 262_144, fifo=True).entry
    async with FastSQSClient(fifo_config, queue_url=fifo_config.dlq_url) as dlq:
        for _ in range(MAX_LETTER_SENDS_WITHOUT_ANSWER):
            assert (await dlq.send_batch(dlq.queue_url, [entry])).successful == ("0",)
        got = await dlq.receive(10, 0, 30)
    assert [(m.body, m.group_id) for m in got] == [(b"body", "wf-1")]
