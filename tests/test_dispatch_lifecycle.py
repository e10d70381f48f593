"""The message lifecycle of :mod:`goraxfast.engine.dispatch`, row by row of its docstring's table.

A real :class:`~goraxfast.engine.dispatch.Dispatcher` and :class:`~goraxfast.engine.acker.Acker`,
built by :func:`goraxfast.engine.build.build_parts` on real shared-memory seats, against
:class:`goraxfast.testing.InMemoryQueue` on a :class:`~goraxfast.testing.ManualClock`. No fork,
no server: the test plays the worker, taking deliveries off a seat's down ring (a delivery taken
is one the worker started) and writing :class:`~goraxfast.core.records.Result` records on its up
ring, as :mod:`goraxfast.worker.loop` does. Each test is one transition; its rows say from which
state, with what, and the ack SQS ends up with (read back from the queue) and the counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from goraxfast.config import Config
from goraxfast.core import counters as C
from goraxfast.core.records import DELIVERY_DECODER, RESULT_ENCODER, Delivery, Result
from goraxfast.core.retry import Outcome
from goraxfast.core.sqs_model import SQS_DEFAULT_MAX_MESSAGE_BYTES, ReceivedMessage
from goraxfast.engine.acker import AckCounters
from goraxfast.engine.build import Parts, build_parts, build_workforce
from goraxfast.engine.dispatch import DispatchCounters, Dispatcher
from goraxfast.engine.seats import ALL_SLOTS, SeatState
from goraxfast.engine.workforce import Workforce
from goraxfast.errors import SQSError
from goraxfast.ipc.rings import create_seats
from goraxfast.testing import InMemoryQueue, ManualClock, MessageState
from goraxfast.worker.handler import bind_handler

VISIBILITY_S = 30
BASE_S = 10  # QUEUE_RETRY_BASE_SECONDS: the failure backoff is 10, 20, 40 s ...
THROTTLE_DELAY_S = 5
HOW = "worker 0 (pid 1000) killed by SIGKILL"
#: The ack of a message nothing was sent for: in flight for the visibility of its receive
#: (the clock has not moved since).
UNTOUCHED = ("visible in", VISIBILITY_S)


def _never_called(message: object) -> None:  # the handler: no worker is forked
    raise AssertionError("no worker runs here")


def body(tenant: str = "t") -> str:
    return (
        f'{{"execution_id":"e","tenant_id":"{tenant}","workflow_id":"w","workflow_version":1,'
        '"trigger_type":"manual"}'
    )


@dataclass
class Rig:
    """The parent's parts on one worker seat, the queue, and the hands of the worker."""

    config: Config
    clock: ManualClock
    queue: InMemoryQueue
    parts: Parts
    seat: SeatState

    @property
    def dispatcher(self) -> Dispatcher:
        return self.parts.dispatcher

    @property
    def counters(self) -> DispatchCounters:
        return self.parts.dispatcher.counters

    @property
    def acks(self) -> AckCounters:
        return self.parts.acker.counters

    def publish(self, count: int = 1, tenant: str = "t") -> list[str]:
        return [self.queue.publish_body(body(tenant)) for _ in range(count)]

    async def receive_elsewhere(self, times: int) -> None:
        """Received ``times`` before, by consumers that let the visibility lapse: each message
        comes to the dispatcher with a receive count of ``times + 1``."""
        for _ in range(times):
            await self.queue.receive(10, 0, VISIBILITY_S)
            self.clock.advance(VISIBILITY_S)

    async def receive(self) -> list[ReceivedMessage]:
        """One receive batch, as the poller hands it over."""
        messages = await self.queue.receive(10, 0, VISIBILITY_S)
        self.dispatcher.on_received(messages)
        return messages

    def worker_starts(self, count: int | None = None) -> list[Delivery]:
        """The worker takes deliveries off its ring: from then on they are started."""
        raw = self.seat.seat.down.consumer().get_many(count)
        return [DELIVERY_DECODER.decode(r) for r in raw]

    def worker_reports(
        self, delivery: Delivery, outcome: Outcome, delay_s: float = -1.0, reason: str = ""
    ) -> None:
        """The worker writes a result on its up ring and wakes the parent, which reads it."""
        producer = self.seat.seat.up.producer()
        assert producer.put(
            RESULT_ENCODER.encode(Result(delivery.slot, int(outcome), delay_s, reason))
        )
        producer.notify()
        assert self.dispatcher.on_results(self.seat) == 1

    def worker_dies(self) -> None:
        """As :meth:`Workforce.exited` marks a seat whose worker the zygote reported gone."""
        self.seat.alive, self.seat.pid, self.seat.ready = False, 0, False

    async def flush(self) -> None:
        """The acker sends everything staged, retries included, as at shutdown."""
        assert await self.parts.acker.flush(5.0)

    def slot_of(self, message_id: str) -> int:
        return next(h.slot for h in self.dispatcher.held.values() if h.message_id == message_id)

    def ack_of(self, message_id: str) -> tuple[Any, ...]:
        """What SQS ended up with for one message, read back from the queue."""
        letters = [m for m in self.queue.dead_letters() if m.source_message_id == message_id]
        m = self.queue.message(message_id)
        if letters:
            assert m.state is MessageState.DELETED, "dead-lettered, but the original is still there"
            return ("dead-lettered", letters[0].reason)
        if m.state is MessageState.DELETED:
            return ("deleted",)
        if m.state is MessageState.VISIBLE:
            return ("visible in", 0)
        assert m.visible_at is not None
        return ("visible in", round(m.visible_at - self.clock()))


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig() -> Iterator[MakeRig]:
    made: list[Workforce] = []

    def make(**changes: Any) -> Rig:
        clock = ManualClock(1000.0)
        queue = InMemoryQueue(clock=clock)
        config = queue.config(
            worker_processes=1,
            visibility_timeout_s=VISIBILITY_S,
            max_retries=3,
            retry_base_s=BASE_S,
            retry_max_s=300,
            throttle_release_delay_s=THROTTLE_DELAY_S,
            ring_bytes=64 * 1024,
        ).with_(**changes)
        workforce = build_workforce(config, bind_handler(_never_called), None)
        # What Workforce.fork does before it forks: the seats in shared memory, their states.
        workforce.seats = create_seats(len(workforce.caps), config.ring_bytes, C.COUNTER_SLOTS)
        workforce.states = [
            SeatState.of(i, s, workforce.caps[i], workforce.shallow_caps[i])
            for i, s in enumerate(workforce.seats)
        ]
        seat = workforce.states[0]
        seat.alive, seat.pid = True, 1000  # spawned ...
        seat.seat.counters[C.PID] = seat.pid  # ... and past its worker_init
        made.append(workforce)
        parts = build_parts(
            config,
            workforce,
            queue,
            dlq_max_message_bytes=SQS_DEFAULT_MAX_MESSAGE_BYTES,
            clock=clock,
        )
        return Rig(config, clock, queue, parts, seat)

    yield make
    for workforce in made:
        workforce.close()


# --- dispatched -> settled -> ack: the policy's action for each outcome -------------------------


@dataclass(frozen=True)
class Settle:
    outcome: Outcome
    ack: tuple[Any, ...]
    receive_count: int = 1
    delay_s: float = -1.0
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    counter: tuple[str, int] = ("", 0)  # a DispatchCounters field that must read so


SETTLE_ROWS = {
    "success -> deleted": Settle(Outcome.SUCCESS, ("deleted",)),
    "success, QUEUE_DELETE_AFTER_PROCESS=false -> nothing sent": Settle(
        Outcome.SUCCESS, UNTOUCHED, config={"delete_after_process": False}
    ),
    "Retry(7) -> visible in 7 s": Settle(Outcome.RETRY, ("visible in", 7), delay_s=7),
    "failure, 1st receive -> backoff 10 s": Settle(Outcome.FAIL, ("visible in", BASE_S)),
    "failure, 2nd receive -> backoff 20 s": Settle(
        Outcome.FAIL, ("visible in", 2 * BASE_S), receive_count=2
    ),
    "failure at QUEUE_MAX_RETRIES -> DLQ": Settle(
        Outcome.FAIL,
        ("dead-lettered", "handler failed: KeyError: 'x' (attempt 3 of 3)"),
        receive_count=3,
        reason="KeyError: 'x'",
    ),
    "failure at QUEUE_MAX_RETRIES, no DLQ -> redrive (backoff, not deleted)": Settle(
        Outcome.FAIL,
        ("visible in", 4 * BASE_S),
        receive_count=3,
        config={"dlq_url": ""},
        counter=("dead_letter_no_dlq", 1),
    ),
    "Reject -> DLQ at once": Settle(
        Outcome.REJECT, ("dead-lettered", "version 1 is retired"), reason="version 1 is retired"
    ),
    "timeout (an async task cancelled) -> backoff": Settle(Outcome.TIMEOUT, ("visible in", BASE_S)),
    "released unstarted by a draining worker -> visible at once": Settle(
        Outcome.RELEASED, ("visible in", 0), receive_count=3, counter=("released", 1)
    ),
}


@pytest.mark.parametrize("row", SETTLE_ROWS.values(), ids=SETTLE_ROWS.keys())
async def test_a_result_settles_its_message_with_the_policys_action(
    make_rig: MakeRig, row: Settle
) -> None:
    rig = make_rig(**row.config)
    [mid] = rig.publish()
    await rig.receive_elsewhere(row.receive_count - 1)
    await rig.receive()
    [delivery] = rig.worker_starts()
    assert delivery.receive_count == row.receive_count
    rig.worker_reports(delivery, row.outcome, row.delay_s, row.reason)
    assert rig.dispatcher.held == {} and rig.seat.slots == set()  # out of every book
    assert rig.dispatcher.limiter.running("t") == 0 and len(rig.dispatcher.leases) == 0
    await rig.flush()
    assert rig.ack_of(mid) == row.ack
    assert rig.counters.completed[row.outcome] == 1
    if row.counter[0]:
        assert getattr(rig.counters, row.counter[0]) == row.counter[1]


# --- received -> poison -> DLQ -----------------------------------------------------------------

POISON_ROWS = {
    "not JSON": ("{nope", "poison message: MessageDecodeError"),
    "no tenant": (body(tenant=""), "poison message: ValidationError"),
    "tenant not a string": (body().replace('"t"', "7"), "poison message: MessageDecodeError"),
}


@pytest.mark.parametrize(("raw", "reason"), POISON_ROWS.values(), ids=POISON_ROWS.keys())
async def test_a_poison_body_is_dead_lettered_at_once_and_never_dispatched(
    make_rig: MakeRig, raw: str, reason: str
) -> None:
    rig = make_rig()
    [good] = rig.publish()
    poison = rig.queue.publish_body(raw)
    await rig.receive()
    assert [d.message_id for d in rig.worker_starts()] == [good]  # the rest of the batch runs
    assert rig.counters.poison == 1 and rig.counters.received == 2
    await rig.flush()
    kind, why = rig.ack_of(poison)
    assert kind == "dead-lettered" and why.startswith(reason), why
    assert rig.acks.dead_lettered == 1 and rig.acks.deleted == 1  # letter first, then delete


async def test_a_poison_body_without_a_dlq_is_left_to_the_redrive_policy(make_rig: MakeRig) -> None:
    rig = make_rig(dlq_url="")
    poison = rig.queue.publish_body("{nope")
    await rig.receive()
    await rig.flush()
    assert rig.ack_of(poison) == ("visible in", BASE_S)
    assert rig.counters.poison == 1 and rig.counters.dead_letter_no_dlq == 1


# --- received -> waiting -> ready -> dispatched ---------------------------------------------------


async def test_a_message_over_its_tenants_cap_waits_then_runs_when_a_slot_frees(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(max_concurrency_per_tenant=1)
    first, second = rig.publish(2)
    await rig.receive()
    limiter = rig.dispatcher.limiter
    [running] = rig.worker_starts()
    assert running.message_id == first
    assert limiter.waiting("t") == 1 and rig.counters.throttled == 1  # waiting, still held
    assert rig.slot_of(second) in rig.dispatcher.leases and not rig.dispatcher.ready
    rig.worker_reports(running, Outcome.SUCCESS)  # its slot passes to the oldest waiting
    assert limiter.waiting("t") == 0 and limiter.running("t") == 1
    [then] = rig.worker_starts()  # ready, and dispatched in the same wake-up
    assert then.message_id == second
    assert rig.seat.slots == {then.slot}


THROTTLE_ROWS = {
    "the waiting bounds are full (QUEUE_PREFETCH)": ("full", 3),
    "waited WORKER_THROTTLE_MAX_WAIT_SECONDS": ("expired", 2),
}


@pytest.mark.parametrize(("why", "count"), THROTTLE_ROWS.values(), ids=THROTTLE_ROWS.keys())
async def test_a_throttled_message_is_released_with_the_throttle_delay_never_dead_lettered(
    make_rig: MakeRig, why: str, count: int
) -> None:
    rig = make_rig(max_concurrency_per_tenant=1, prefetch=1, max_retries=1, throttle_max_wait_s=20)
    ids = rig.publish(count)
    await rig.receive()
    if why == "expired":
        rig.clock.advance(rig.config.throttle_max_wait_s)
        rig.dispatcher.expire_throttled(rig.clock(), rig.config.throttle_max_wait_s)
    await rig.flush()
    assert rig.ack_of(ids[-1]) == ("visible in", THROTTLE_DELAY_S)  # at max_retries: no DLQ
    assert rig.counters.throttle_released == 1
    assert ids[-1] not in {h.message_id for h in rig.dispatcher.held.values()}
    assert rig.dispatcher.limiter.waiting_total() == (1 if why == "full" else 0)


# --- held -> released: shutdown ---------------------------------------------------------------

RELEASE_ROWS = {
    "ready (no worker ready for it)": "ready",
    "waiting for its tenant's slot": "waiting",
    "brought by a long poll that ended while draining": "arriving",
}


@pytest.mark.parametrize("where", RELEASE_ROWS.values(), ids=RELEASE_ROWS.keys())
async def test_shutdown_releases_what_no_worker_has_visible_at_once(
    make_rig: MakeRig, where: str
) -> None:
    rig = make_rig(max_concurrency_per_tenant=1)
    if where == "ready":
        rig.seat.seat.counters[C.PID] = 0  # still in its worker_init: takes nothing
        rig.seat.ready = False
    [first, last] = rig.publish(2)
    if where == "arriving":
        rig.dispatcher.release_undispatched()
    await rig.receive()
    if where != "arriving":
        assert rig.dispatcher.release_undispatched() == (2 if where == "ready" else 1)
    await rig.flush()
    assert rig.ack_of(last) == ("visible in", 0)
    running = where == "waiting"  # the first one a worker has: it runs on, untouched
    assert rig.ack_of(first) == (UNTOUCHED if running else ("visible in", 0))
    assert rig.counters.released == (1 if running else 2)
    assert rig.counters.released_on_arrival == (2 if where == "arriving" else 0)
    assert rig.counters.completed[Outcome.RELEASED] == 0  # not an outcome: never dispatched


# --- dispatched -> lost: the worker died --------------------------------------------------------


@dataclass(frozen=True)
class Loss:
    started: tuple[Any, ...]  # the ack of the delivery it had taken
    outcome: Outcome | None
    timed_out: str = ""  # "slot": killed for a timeout on the started one; "all": loop blocked
    forced: bool = False
    receive_count: int = 1


LOSS_ROWS = {
    "crash -> a failed attempt (backoff)": Loss(("visible in", BASE_S), Outcome.CRASH),
    "crash at the last attempt -> DLQ": Loss(
        ("dead-lettered", f"worker died while handling it: {HOW} (attempt 3 of 3)"),
        Outcome.CRASH,
        receive_count=3,
    ),
    "killed for QUEUE_PROCESS_TIMEOUT on that slot -> TIMEOUT": Loss(
        ("visible in", BASE_S), Outcome.TIMEOUT, timed_out="slot"
    ),
    "killed for a blocked event loop (every slot) -> TIMEOUT": Loss(
        ("visible in", BASE_S), Outcome.TIMEOUT, timed_out="all"
    ),
    "forced stop -> left to its visibility timeout, nothing sent": Loss(
        UNTOUCHED, None, forced=True
    ),
}


@pytest.mark.parametrize("row", LOSS_ROWS.values(), ids=LOSS_ROWS.keys())
async def test_a_lost_worker_costs_an_attempt_only_for_what_it_had_started(
    make_rig: MakeRig, row: Loss
) -> None:
    rig = make_rig()
    started_id, unstarted_id = rig.publish(2)
    await rig.receive_elsewhere(row.receive_count - 1)
    await rig.receive()
    [started] = rig.worker_starts(1)  # the other one is still in its ring
    assert started.message_id == started_id
    if row.timed_out:
        rig.seat.timed_out_slot = started.slot if row.timed_out == "slot" else ALL_SLOTS
    rig.worker_dies()
    rig.dispatcher.worker_lost(rig.seat, how=HOW, forced=row.forced)
    assert rig.dispatcher.held == {} and rig.seat.slots == set()
    assert rig.dispatcher.limiter.running("t") == 0 and len(rig.dispatcher.leases) == 0
    await rig.flush()
    assert rig.ack_of(started_id) == row.started
    assert rig.ack_of(unstarted_id) == ("visible in", 0)  # never an attempt, even at the last
    assert rig.counters.completed[Outcome.RELEASED] == 1
    if row.outcome is not None:
        assert rig.counters.completed[row.outcome] == 1
    assert sum(rig.counters.completed.values()) == (1 if row.forced else 2)


# --- held: the lease ---------------------------------------------------------------------------

LEASE_ROWS = {
    "dispatched": {},
    "waiting for its tenant's slot": {"max_concurrency_per_tenant": 0},
}


@pytest.mark.parametrize("changes", LEASE_ROWS.values(), ids=LEASE_ROWS.keys())
async def test_a_held_message_has_its_visibility_extended_before_it_lapses(
    make_rig: MakeRig, changes: dict[str, Any]
) -> None:
    rig = make_rig(**changes)
    [mid] = rig.publish()
    await rig.receive()
    rig.clock.advance(VISIBILITY_S / 2)  # the renewal margin: half the timeout
    assert rig.dispatcher.renew_leases(rig.clock()) == 1
    await rig.flush()
    assert rig.ack_of(mid) == ("visible in", VISIBILITY_S)  # a full timeout again, not 15 s
    assert rig.acks.visibility_changed == 1 and rig.counters.lease_renewals == 1


# --- received -> settled by a bug: recover_intake ------------------------------------------------


async def test_a_bug_while_taking_a_batch_settles_what_no_worker_has_as_a_failed_attempt(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig()
    first, second = rig.publish(2)
    limiter = rig.dispatcher.limiter
    admit = limiter.admit
    calls: list[str] = []

    def admit_once(tenant: str, item: int, now: float) -> Any:
        calls.append(tenant)
        if len(calls) == 2:
            raise RuntimeError("bookkeeping bug")
        return admit(tenant, item, now)

    monkeypatch.setattr(limiter, "admit", admit_once)
    messages = await rig.queue.receive(10, 0, VISIBILITY_S)
    with pytest.raises(RuntimeError) as failed:
        rig.dispatcher.on_received(messages)
    assert rig.dispatcher.recover_intake(messages, failed.value) == 2
    await rig.flush()
    assert rig.ack_of(first) == ("visible in", BASE_S)
    assert rig.ack_of(second) == ("visible in", BASE_S)
    assert rig.dispatcher.held == {} and rig.counters.intake_failures == 1


# --- ack pending -> confirmed --------------------------------------------------------------------


async def test_a_throttled_delete_is_sent_again_until_confirmed(make_rig: MakeRig) -> None:
    rig = make_rig()
    [mid] = rig.publish()
    await rig.receive()
    [delivery] = rig.worker_starts()
    rig.worker_reports(delivery, Outcome.SUCCESS)
    rig.queue.fail_next("delete_batch", "ThrottlingException")
    await rig.flush()
    assert rig.ack_of(mid) == ("deleted",)
    assert rig.acks.entries_retried == 1 and rig.acks.deleted == 1


async def test_a_delete_with_a_stale_receipt_handle_is_given_up(make_rig: MakeRig) -> None:
    """Its visibility lapsed and another consumer has it: that one owns it now."""
    rig = make_rig()
    [mid] = rig.publish()
    await rig.receive()
    [delivery] = rig.worker_starts()
    rig.worker_reports(delivery, Outcome.SUCCESS)
    rig.clock.advance(VISIBILITY_S)
    [elsewhere] = await rig.queue.receive(10, 0, VISIBILITY_S)
    await rig.flush()
    assert rig.acks.deletes_given_up == 1 and rig.acks.deleted == 0
    assert rig.queue.message(mid).receive_count == elsewhere.receive_count == 2
    assert rig.ack_of(mid) == ("visible in", VISIBILITY_S)  # in flight to the other consumer


LETTER_ROWS = {
    "DLQ send throttled -> sent again": ("ThrottlingException", False, 1),
    "DLQ send answer lost -> resent (one copy more, same letter id)": (None, True, 2),
}


@pytest.mark.parametrize(
    ("code", "carried_out", "copies"), LETTER_ROWS.values(), ids=LETTER_ROWS.keys()
)
async def test_a_dead_letter_deletes_the_original_only_once_the_dlq_accepted_it(
    make_rig: MakeRig, code: str | None, carried_out: bool, copies: int
) -> None:
    rig = make_rig()
    [mid] = rig.publish()
    await rig.receive()
    [delivery] = rig.worker_starts()
    rig.worker_reports(delivery, Outcome.REJECT, reason="no")
    rig.queue.fail_next("send_batch", code, carried_out=carried_out)
    await rig.flush()
    letters = rig.queue.dead_letters()
    assert len(letters) == copies
    assert len({m.attributes["goraxfast_letter_id"]["StringValue"] for m in letters}) == 1
    assert rig.ack_of(mid) == ("dead-lettered", "no")
    assert rig.acks.dead_lettered == 1 and rig.acks.deleted == 1


# --- the in-memory queue, where the rows above rely on it behaving as SQS does ------------------


async def test_a_lapsed_message_comes_back_with_a_new_handle_and_the_old_one_is_stale() -> None:
    clock = ManualClock()
    queue = InMemoryQueue(clock=clock)
    mid = queue.publish_body(body())
    [first] = await queue.receive(10, 0, 30)
    assert await queue.receive(10, 0, 30) == []  # in flight
    clock.advance(30)
    [again] = await queue.receive(10, 0, 30)
    assert (again.message_id, again.receive_count) == (mid, 2)
    assert again.receipt_handle != first.receipt_handle
    assert again.first_received_ms == first.first_received_ms
    result = await queue.delete_batch([("0", first.receipt_handle), ("1", again.receipt_handle)])
    assert result.successful == ("1",)
    assert [(f.id, f.code) for f in result.failed] == [("0", "ReceiptHandleIsInvalid")]
    visibility = await queue.change_visibility_batch([("0", again.receipt_handle, 5)])
    assert visibility.failed[0].code == "ReceiptHandleIsInvalid"  # deleted: stale too


async def test_a_visibility_change_on_a_lapsed_message_is_not_in_flight() -> None:
    clock = ManualClock()
    queue = InMemoryQueue(clock=clock)
    queue.publish_body(body())
    [m] = await queue.receive(10, 0, 30)
    clock.advance(30)
    result = await queue.change_visibility_batch([("0", m.receipt_handle, 60)])
    assert result.failed[0].code == "MessageNotInflight"
    assert (await queue.delete_batch([("0", m.receipt_handle)])).successful == ("0",)


async def test_a_scripted_fault_fails_the_next_calls_only() -> None:
    queue = InMemoryQueue()
    queue.publish_body(body())
    queue.fail_next("receive", "ThrottlingException", times=2)
    for _ in range(2):
        with pytest.raises(SQSError, match="ThrottlingException"):
            await queue.receive(10, 0, 30)
    assert len(await queue.receive(10, 0, 30)) == 1
    assert queue.calls["receive"] == 3


async def test_max_receive_count_moves_a_message_to_the_dlq_whole() -> None:
    clock = ManualClock()
    queue = InMemoryQueue(clock=clock, max_receive_count=2)
    mid = queue.publish_body(body())
    for _ in range(2):
        assert len(await queue.receive(10, 0, 30)) == 1
        clock.advance(30)
    assert await queue.receive(10, 0, 30) == []
    [moved] = queue.dead_letters()
    assert (moved.message_id, moved.body) == (mid, body())
    assert queue.message(mid).state is MessageState.REDRIVEN and queue.settled
