"""Intake: whatever a receive batch holds, each message ends held, dispatched or staged.

Real shared-memory seats and the real dispatcher, no workers; bugs are injected by replacing
one collaborator's method, the only way to make the engine's own code fail on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence

import pytest
from engine_support import live_seats

from goraxfast.core.acks import AckBatcher, AckKind
from goraxfast.core.deadletter import DeadLetter
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import TenantLimiter
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.retry import RetryPolicy
from goraxfast.core.sqs_model import BatchResult, ReceivedMessage, SendEntry
from goraxfast.engine import dispatch as dispatch_module
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch import Dispatcher
from goraxfast.engine.poller import Credits, PollCounters, Poller
from goraxfast.engine.seats import SeatState


@pytest.fixture
def seats() -> Iterator[list[SeatState]]:
    with live_seats(2, cap=2, shallow_cap=1) as states:
        yield states


def dispatcher(seats: list[SeatState], *, max_retries: int = 3) -> Dispatcher:
    acker = Acker(AckBatcher(), object(), queue_url="q", dlq_url="dlq", clock=time.monotonic)  # type: ignore[arg-type]
    return Dispatcher(
        seats=seats,
        acker=acker,
        leases=LeaseBook(30),
        limiter=TenantLimiter(2, max_waiting_per_tenant=100, max_waiting_total=100),
        policy=RetryPolicy(max_retries=max_retries, base_s=30, max_s=300),
        clock=time.monotonic,
        queue_url="q",
        throttle_release_delay_s=5,
    )


BODY = encode_message(
    ExecutionMessage.new(tenant_id="t", workflow_id="w", workflow_version=1, trigger_type="x")
)


def batch(count: int, *, receive_count: int = 1) -> list[ReceivedMessage]:
    return [ReceivedMessage(f"m{i}", f"rh{i}", BODY, receive_count, 0, 0, {}) for i in range(count)]


def staged(d: Dispatcher) -> dict[str, tuple[AckKind, object]]:
    """receipt handle -> (kind, visibility or letter) of every ack the dispatcher staged."""
    out: dict[str, tuple[AckKind, object]] = {}
    for b in d.acker.batcher.flush():
        for e in b.entries:
            out[e.receipt_handle] = (b.kind, e.payload or e.visibility_timeout_s)
    return out


def dispatched(seats: list[SeatState]) -> int:
    return sum(len(s.slots) for s in seats)


def test_any_exception_decoding_one_body_dead_letters_that_message_alone(
    seats: list[SeatState], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = dispatch_module.accepted_tenant

    def decode(body: bytes) -> str:
        if body == b"bomb":
            raise RecursionError("maximum recursion depth exceeded")
        return real(body)

    monkeypatch.setattr(dispatch_module, "accepted_tenant", decode)
    d = dispatcher(seats)
    messages = batch(3)
    messages[1] = ReceivedMessage("bad", "rh-bad", b"bomb", 1, 0, 0, {})
    d.on_received(messages)
    assert dispatched(seats) == 2 and d.counters.poison == 1
    [(kind, letter)] = staged(d).values()
    assert kind is AckKind.DEAD_LETTER and isinstance(letter, DeadLetter)
    assert letter.reason == "poison message: RecursionError: maximum recursion depth exceeded"
    assert letter.message_id == "bad"


@pytest.mark.parametrize("fail_at", [0, 3, 5])
def test_a_bug_part_way_through_a_batch_leaves_no_message_in_flight_to_nobody(
    seats: list[SeatState], fail_at: int
) -> None:
    d = dispatcher(seats)
    real_admit = d.limiter.admit
    calls = 0

    def admit(tenant: str, item: int, now: float) -> object:
        nonlocal calls
        calls += 1
        if calls > fail_at:
            raise KeyError("a bug in admission")
        return real_admit(tenant, item, now)

    d.limiter.admit = admit  # type: ignore[method-assign]
    messages = batch(8)
    with pytest.raises(KeyError) as info:
        d.on_received(messages)
    settled = d.recover_intake(messages, info.value)
    acks = staged(d)
    # each message is either with a worker or back to SQS after the backoff; no book keeps
    # one that nothing will ever settle
    assert dispatched(seats) + len(acks) == 8 and settled == len(acks)
    assert all(v == (AckKind.VISIBILITY, 30) for v in acks.values())
    assert set(d.held) == {slot for s in seats for slot in s.slots}
    assert len(d.leases) == dispatched(seats) and not d.ready
    assert sum(d.limiter.running_by_tenant().values()) == dispatched(seats)
    assert d.limiter.waiting_total() == 0


def test_a_bug_while_dispatching_leaves_what_no_worker_took_to_be_released(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats)

    def put(record: bytes) -> bool:
        raise OSError("the ring is broken")

    seats[1].producer.put = put  # type: ignore[method-assign]
    messages = batch(4)  # tenant cap 2: two admitted, two waiting
    with pytest.raises(OSError) as info:
        d.on_received(messages)
    assert dispatched(seats) == 1
    d.recover_intake(messages, info.value)
    acks = staged(d)
    assert len(acks) == 3 and set(d.held) == set(seats[0].slots)
    assert sum(d.limiter.running_by_tenant().values()) == 1  # only the one a worker runs
    assert d.limiter.waiting_total() == 0 and not d.ready


def test_a_message_that_keeps_hitting_the_bug_is_dead_lettered_at_the_retry_limit(
    seats: list[SeatState],
) -> None:
    d = dispatcher(seats, max_retries=3)
    messages = batch(2, receive_count=3)
    d.recover_intake(messages, RuntimeError("boom"))
    kinds = {kind for kind, _ in staged(d).values()}
    assert kinds == {AckKind.DEAD_LETTER}


class OneBatchPlane:
    """Returns one batch, then empty receives (a fake: the integration proof is on moto)."""

    def __init__(self, messages: Sequence[ReceivedMessage]) -> None:
        self.batches = [list(messages)]
        self.receives = 0

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]:
        self.receives += 1
        await asyncio.sleep(0)
        return self.batches.pop(0) if self.batches else []

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        raise NotImplementedError

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        raise NotImplementedError

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        raise NotImplementedError


async def test_the_poller_polls_on_after_a_batch_it_could_not_hand_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plane = OneBatchPlane(batch(3))
    recovered: list[tuple[list[str], str]] = []

    def on_received(messages: Sequence[ReceivedMessage]) -> None:
        raise ValueError("bug")

    def on_error(messages: Sequence[ReceivedMessage], exc: BaseException) -> int:
        recovered.append(([m.message_id for m in messages], str(exc)))
        return len(messages)

    poller = Poller(
        plane,
        Credits(10, lambda: 0),
        on_received,
        max_messages=10,
        wait_time_s=0,
        visibility_timeout_s=30,
        poll_interval_s=0,
        counters=PollCounters(),
        queue_url="https://sqs/q",
        on_intake_error=on_error,
    )
    with caplog.at_level(logging.ERROR, "goraxfast.poller"):
        task = asyncio.ensure_future(poller.run())
        while plane.receives < 5:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert recovered == [(["m0", "m1", "m2"], "bug")]
    [line] = [r for r in caplog.records if r.name == "goraxfast.poller"]
    assert "m0, m1, m2" in line.getMessage() and "ValueError: bug" in line.getMessage()
