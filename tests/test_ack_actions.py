"""Which SQS call carries a settled message's action, and a lost worker's failure reason."""

from __future__ import annotations

import pytest

from goraxfast.core.ack_actions import ack_for
from goraxfast.core.acks import AckEntry, AckKind
from goraxfast.core.deadletter import DeadLetter
from goraxfast.core.retry import Action, ActionKind, Outcome
from goraxfast.core.worker_loss import lost_reason

LETTER = DeadLetter(
    body="{}", attributes={}, reason="rejected", receive_count=3, message_id="m", source_queue="q"
)


@pytest.mark.parametrize(
    ("action", "ack"),
    [
        (Action(ActionKind.DELETE), (AckKind.DELETE, AckEntry(7, "rh"))),
        (Action(ActionKind.CHANGE_VISIBILITY, 30), (AckKind.VISIBILITY, AckEntry(7, "rh", 30))),
        (Action(ActionKind.REDRIVE, 60, "no DLQ"), (AckKind.VISIBILITY, AckEntry(7, "rh", 60))),
        (
            Action(ActionKind.DEAD_LETTER, 0, "rejected"),
            (AckKind.DEAD_LETTER, AckEntry(7, "rh", payload=LETTER)),
        ),
        (Action(ActionKind.NOTHING), None),
    ],
    ids=lambda v: getattr(getattr(v, "kind", None), "name", ""),
)
def test_the_ack_an_action_stages(action: Action, ack: tuple[AckKind, AckEntry] | None) -> None:
    assert ack_for(action, 7, "rh", lambda: LETTER) == ack


def test_a_letter_is_built_only_for_a_dead_letter() -> None:
    def no_letter() -> DeadLetter:
        raise AssertionError("built a letter for a delete")

    assert ack_for(Action(ActionKind.DELETE), 1, "rh", no_letter) is not None


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [(Outcome.TIMEOUT, "worker killed (timeout 5s)"), (Outcome.CRASH, "timeout 5s")],
)
def test_a_lost_workers_reason(outcome: Outcome, reason: str) -> None:
    assert lost_reason(outcome, "timeout 5s") == reason
