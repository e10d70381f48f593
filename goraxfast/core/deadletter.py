"""The dead letter itself: what goes to the DLQ, how it is made to fit, and what follows.

gorax deleted what it could not process; here a message due for the DLQ is copied
there with why and how often it failed, and only then deleted. Three rules keep that safe:

- **The body is sacred, our annotations are not.** A letter that would not fit the DLQ's own
  ``MaximumMessageSize`` sheds annotations first: the reason is shortened, the original message
  attributes dropped. Only when the body alone cannot fit is a *stub* sent instead: a short
  JSON letter that says so, with the source message id. The original then stays in its queue
  (not deleted), for the queue's redrive policy to move whole.
- **One delivery, one letter id.** Every copy of the letter for one delivery carries the same
  ``goraxfast_letter_id``, so a reader can tell resends apart from new failures.
- **A lost answer is resent a bounded number of times.** A send whose answer never came may have
  been carried out; sending it again may make a copy. :data:`MAX_LETTER_SENDS_WITHOUT_ANSWER`
  bounds that; after it the delivery is left to come back through its visibility timeout.

To a FIFO DLQ (``fit_letter(..., fifo=True)``) a letter goes in its source message's group
(:data:`DEAD_LETTER_GROUP` when it had none), so the DLQ keeps each group's letters in the
order they were written, with the letter id as its MessageDeduplicationId: a letter sent again
after a lost answer is dropped by SQS itself (within its 5-minute deduplication interval), so
the copy the rule above allows does not even reach the DLQ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from goraxfast.core.sqs_model import SQS_MAX_ATTRIBUTES, SendEntry, entry_size, token_problem

#: How long a reason may be in a letter that fits easily, and once annotations are shed.
REASON_CHARS_FULL = 4000
REASON_CHARS_SHORT = 200
REASON_CHARS_MINIMAL = 60
#: Sends of one letter whose answer was lost (each may have reached the DLQ) before giving up.
MAX_LETTER_SENDS_WITHOUT_ANSWER = 2
#: The first characters of an omitted body kept in its stub, for a reader to recognise it.
STUB_BODY_PREFIX_CHARS = 256
#: The MessageGroupId of a letter to a FIFO DLQ whose source message had none.
DEAD_LETTER_GROUP = "goraxfast-dead-letters"

#: Attribute names this module writes (a source message's attributes of the same names are
#: replaced, never duplicated).
REASON = "goraxfast_dlq_reason"
RECEIVE_COUNT = "goraxfast_receive_count"
SOURCE_MESSAGE_ID = "goraxfast_source_message_id"
SOURCE_QUEUE = "goraxfast_source_queue"
LETTER_ID = "goraxfast_letter_id"
BODY_OMITTED = "goraxfast_body_omitted"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One delivery due for the DLQ: the original body and attributes, why, and how often.

    ``keep_visibility_s`` is the visibility the original gets when only a stub could be sent
    (it stays in its queue for the redrive policy); ``unanswered_sends`` counts sends of this
    letter whose answer was lost; ``group_id`` is the source message's MessageGroupId ("" when
    it had none), the letter's group in a FIFO DLQ.
    """

    body: str
    attributes: Mapping[str, Mapping[str, Any]]
    reason: str
    receive_count: int
    message_id: str
    source_queue: str
    keep_visibility_s: int = 0
    unanswered_sends: int = 0
    group_id: str = ""

    @property
    def letter_id(self) -> str:
        """The same for every copy of this delivery's letter; new for the next delivery."""
        return f"{self.message_id}:{self.receive_count}"

    def answer_lost(self) -> DeadLetter:
        return replace(self, unanswered_sends=self.unanswered_sends + 1)

    @property
    def may_resend_unanswered(self) -> bool:
        return self.unanswered_sends < MAX_LETTER_SENDS_WITHOUT_ANSWER


@dataclass(frozen=True, slots=True)
class FittedLetter:
    """The entry to send for one letter, and whether its body had to be left out."""

    entry: SendEntry
    body_omitted: bool


def fit_letter(
    letter: DeadLetter, entry_id: str, max_bytes: int, *, fifo: bool = False
) -> FittedLetter:
    """The fullest entry for ``letter`` that fits ``max_bytes`` (body plus attributes).

    Tried in order: everything; a shorter reason without the original attributes; a minimal
    reason; and last a stub that says the body was left out (which always fits any queue SQS
    allows, 1 KiB and up). ``fifo``: the DLQ is a FIFO queue, so the entry carries a
    MessageGroupId and a MessageDeduplicationId (:func:`letter_ids`), which do not count
    towards its size.
    """
    fitted: FittedLetter | None = None
    for reason_chars, keep_originals in (
        (REASON_CHARS_FULL, True),
        (REASON_CHARS_SHORT, False),
        (REASON_CHARS_MINIMAL, False),
    ):
        entry = _entry(letter, entry_id, reason_chars, keep_originals)
        if entry_size(entry) <= max_bytes:
            fitted = FittedLetter(entry, body_omitted=False)
            break
    if fitted is None:
        fitted = FittedLetter(_stub(letter, entry_id, max_bytes), body_omitted=True)
    if not fifo:
        return fitted
    group_id, dedup_id = letter_ids(letter)
    return replace(fitted, entry=replace(fitted.entry, group_id=group_id, dedup_id=dedup_id))


def letter_ids(letter: DeadLetter) -> tuple[str, str]:
    """A letter's MessageGroupId and MessageDeduplicationId in a FIFO DLQ: the source's group
    (or :data:`DEAD_LETTER_GROUP`), and its letter id, the same for every copy of one
    delivery's letter. SQS's message ids always fit SQS's id rules; an id that does not (a
    hand-made message id) is replaced by its SHA-256, still one per delivery."""
    group = letter.group_id or DEAD_LETTER_GROUP
    if token_problem("MessageGroupId", group) is not None:
        group = hashlib.sha256(group.encode()).hexdigest()
    dedup = letter.letter_id
    if token_problem("MessageDeduplicationId", dedup) is not None:
        dedup = hashlib.sha256(dedup.encode()).hexdigest()
    return group, dedup


def _annotations(letter: DeadLetter, reason_chars: int) -> dict[str, dict[str, Any]]:
    return {
        REASON: _string(letter.reason[:reason_chars] or "unknown"),
        RECEIVE_COUNT: {"DataType": "Number", "StringValue": str(letter.receive_count)},
        SOURCE_MESSAGE_ID: _string(letter.message_id),
        SOURCE_QUEUE: _string(letter.source_queue),
        LETTER_ID: _string(letter.letter_id),
    }


def _entry(letter: DeadLetter, entry_id: str, reason_chars: int, keep_originals: bool) -> SendEntry:
    ours = _annotations(letter, reason_chars)
    kept: dict[str, dict[str, Any]] = {}
    for name, value in letter.attributes.items() if keep_originals else ():
        if len(kept) + len(ours) >= SQS_MAX_ATTRIBUTES:
            break
        if name not in ours and isinstance(value, Mapping):
            kept[name] = _clean_attribute(value)
    return SendEntry(id=entry_id, body=letter.body, message_attributes={**kept, **ours})


def _stub(letter: DeadLetter, entry_id: str, max_bytes: int) -> SendEntry:
    body_bytes = len(letter.body.encode())
    ours = _annotations(letter, REASON_CHARS_MINIMAL)
    ours[BODY_OMITTED] = _string("true")
    note = {
        "goraxfast_dead_letter": "body omitted: the message is larger than this queue accepts; "
        "the original stays in its source queue for the redrive policy",
        "source_message_id": letter.message_id,
        "source_queue": letter.source_queue,
        "body_bytes": body_bytes,
        "max_message_bytes": max_bytes,
        "reason": letter.reason[:REASON_CHARS_SHORT],
        "body_prefix": letter.body[:STUB_BODY_PREFIX_CHARS],
    }
    entry = SendEntry(entry_id, msgspec.json.encode(note).decode(), ours)
    if entry_size(entry) > max_bytes:  # a DLQ smaller than any SQS allows: the bare minimum
        bare = {"goraxfast_dead_letter": "body omitted", "source_message_id": letter.message_id}
        entry = SendEntry(entry_id, msgspec.json.encode(bare).decode(), ours)
    return entry


def _string(value: str) -> dict[str, Any]:
    return {"DataType": "String", "StringValue": value}


def _clean_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only what SendMessage accepts of an attribute as ReceiveMessage returned it."""
    out: dict[str, Any] = {"DataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["BinaryValue"] = value["BinaryValue"]
    return out
