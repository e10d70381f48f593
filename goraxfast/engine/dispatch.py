"""The parent's bookkeeping of every message it holds, from receive to acknowledgement.

A delivery gets a slot id (unique for the engine's lifetime, so a late result can never be
mistaken for a newer message). Receipt handles stay here; the worker sees the slot. Each held
message is in exactly one place: waiting for its tenant's slot (limiter), ready for a worker
(``ready``), or dispatched to one seat (``SeatState.slots``). Its visibility lease runs from
receive until its outcome is known.

The message lifecycle
---------------------
One row per way out of a state. The *held* states (waiting, ready, dispatched) are in ``held``
and leased: while a message is in one, :meth:`Dispatcher.renew_leases` extends its visibility
(:class:`~goraxfast.core.leases.LeaseBook` says when). A message leaves ``held``, its lease and
its tenant's slot together, on its way to one of the states below them. Outcomes and actions
are :class:`~goraxfast.core.retry.Outcome` and :class:`~goraxfast.core.retry.ActionKind`;
"policy" is :class:`~goraxfast.core.retry.RetryPolicy`. Every row is tested, against an
in-memory queue, in ``tests/test_dispatch_lifecycle.py``.

===========  ================================================  ================================
state        event that leaves it -> next state                decided in
===========  ================================================  ================================
received     its body is undecodable or invalid -> poison      ``on_received``;
             (the rest of its receive batch goes on)           ``core.message.accepted_tenant``
received     leased, then admitted by tenant: a free slot      ``on_received``;
             -> ready; the tenant at its cap -> waiting; the   ``TenantLimiter.admit``
             waiting bounds (QUEUE_PREFETCH) full -> overflow  (``core.limiter``)
received     the engine is draining -> released at once        ``_release_arrivals``
received     a bug in ``on_received`` -> settled as a failed   ``recover_intake``;
             attempt (what a worker has is left alone)         policy ``intake_failed``
poison       staged at once: DEAD_LETTER with the error (no    policy ``poison``
             DLQ: REDRIVE, the backoff) -> ack pending
waiting      a message of its tenant settles and hands it      ``_settle``;
             its slot -> ready                                 ``TenantLimiter.release``
waiting      waited WORKER_THROTTLE_MAX_WAIT_SECONDS           ``expire_throttled``;
             -> overflow                                       ``TenantLimiter.expired``
waiting,     shutdown -> released                              ``release_undispatched``
ready
ready        a live worker past its worker_init has room in    ``pump``, ``_pick_seat``;
             its ring -> dispatched                            ``core.bursts.BurstSizer``
dispatched   its worker's Result comes up the ring -> settled  ``on_results``
dispatched   its worker died -> lost                           ``worker_lost`` (called by
                                                               the workforce)
lost         never taken off the ring -> settled RELEASED;     ``worker_lost``;
             started -> settled CRASH, or TIMEOUT when the     ``core.worker_loss``
             parent killed it for QUEUE_PROCESS_TIMEOUT (that  ``.lost_outcome``
             slot, or every slot of a blocked event loop); in
             a forced stop the started ones are forgotten,
             nothing sent
settled      the policy's action -> ack pending: DELETE;       ``_settle``, ``_apply``;
             CHANGE_VISIBILITY (Retry's delay, the failure     policy ``decide``
             backoff, 0 for RELEASED); DEAD_LETTER (Reject,
             QUEUE_MAX_RETRIES reached); REDRIVE (due for the
             DLQ, none set: the backoff, for the queue's
             redrive policy); NOTHING
             (QUEUE_DELETE_AFTER_PROCESS=false): done
overflow     staged at once: visibility                        ``_throttle_release``
             WORKER_THROTTLE_RELEASE_DELAY_SECONDS, never
             dead-lettered -> ack pending
released     staged at once: visibility 0, not an attempt      ``_release_now``,
             -> ack pending                                    ``_release_arrivals``
ack pending  its batch is due (full, or QUEUE_ACK_FLUSH_MS     ``core.acks.AckBatcher``;
             old) and SQS accepts it -> confirmed; a           ``engine.acker.Acker``;
             retryable failure -> sent again; any other ->     ``core.sqs_model``
             given up (back after its visibility timeout); a   ``.is_retryable``
             letter the DLQ accepted -> its delete is staged
             (a stub that fitted instead: the backoff)
confirmed    -- (counted: deleted, visibility changed,         ``Acker.counters``
             dead-lettered)
===========  ================================================  ================================

No state is a dead end: every message ends deleted, in the DLQ, or visible again in SQS, at
once, after its backoff or (an ack given up, QUEUE_DELETE_AFTER_PROCESS=false, a forced stop)
after its visibility timeout.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence

from goraxfast.core import counters as C
from goraxfast.core.ack_actions import ack_for
from goraxfast.core.acks import AckEntry, AckKind
from goraxfast.core.attempts import (
    FAILED_ATTEMPTS,
    FAILURE_LOG_BURST,
    FAILURE_LOG_REFILL_S,
    N_OUTCOMES,
    OUTCOMES,
    SETTLED_FOR_GOOD,
)
from goraxfast.core.bursts import BurstSizer
from goraxfast.core.leases import LeaseBook
from goraxfast.core.limiter import Admission, TenantLimiter
from goraxfast.core.message import accepted_tenant
from goraxfast.core.ordering import GroupOrder
from goraxfast.core.records import DELIVERY_ENCODER, RESULT_DECODER, Delivery
from goraxfast.core.retry import Action, ActionKind, Outcome, RetryPolicy
from goraxfast.core.ring import RingConsumer
from goraxfast.core.sqs_model import ReceivedMessage
from goraxfast.core.worker_loss import NOT_TIMED_OUT, lost_outcome, lost_reason
from goraxfast.engine.acker import Acker
from goraxfast.engine.dispatch_log import DispatchLog
from goraxfast.engine.held import (
    STAGED,
    DispatchCounters,
    Held,
    dead_letter_of,
    delivery_slot,
    held_of,
)
from goraxfast.engine.seats import SeatState
from goraxfast.ops import tracing

__all__ = [
    "FAILURE_LOG_BURST",
    "FAILURE_LOG_REFILL_S",
    "STAGED",
    "DispatchCounters",
    "Dispatcher",
    "Held",
    "held_of",
]


class Dispatcher:
    def __init__(
        self,
        *,
        seats: Sequence[SeatState],
        acker: Acker,
        leases: LeaseBook,
        limiter: TenantLimiter[int],
        policy: RetryPolicy,
        clock: Callable[[], float],
        queue_url: str,
        throttle_release_delay_s: int,
        fifo: bool = False,
    ) -> None:
        self.seats = list(seats)
        self.acker = acker
        self.leases = leases
        self.limiter = limiter
        self.policy = policy
        self.clock = clock
        self.queue_url = queue_url
        self.throttle_release_delay_s = throttle_release_delay_s
        self.held: dict[int, Held] = {}
        self.ready: deque[int] = deque()
        #: A FIFO queue: one message of a group at a time, in SQS's order (core/ordering.py);
        #: the later ones are held (and leased) in ``blocked`` until it is settled.
        self.order: GroupOrder[int] | None = GroupOrder() if fifo else None
        self.blocked: set[int] = set()
        self.counters = DispatchCounters()
        self.accepting = True  # False once draining: nothing new is dispatched
        self._next_slot = 1
        self._intake: list[Held] = []  # the batch on_received is taking, for recover_intake
        self._log = DispatchLog(queue_url)  # failed attempts, redrives, capped leases
        self.on_room: Callable[[], None] = lambda: None
        #: called when a message starts waiting for its tenant's slot (the throttle clock)
        self.on_waiting: Callable[[], None] = lambda: None
        #: called when a worker is first seen past its worker_init, before it is given work
        self.on_seat_ready: Callable[[SeatState], None] = lambda _seat: None
        #: called when a seat that ran its recycling budget has given back its last delivery
        self.on_spent: Callable[[SeatState], None] = lambda _seat: None
        self.bursts = BurstSizer()
        # The policy's answer to a success never depends on the message: asked once, so that
        # the common case skips building an Action per message.
        self._delete_on_success = policy.decide(Outcome.SUCCESS, 1).kind is ActionKind.DELETE
        #: The queue's name while tracing (deliveries then carry it and their trace context to
        #: the worker's span), None otherwise: asked once, so the untraced pump is unchanged.
        self.traced_queue = tracing.queue_name(queue_url) if tracing.enabled() else None

    # --- intake ---------------------------------------------------------------------------

    def on_received(self, messages: Sequence[ReceivedMessage]) -> None:
        """Take one receive batch: decode each body, lease, admit by tenant, dispatch.

        Whatever a body holds, its outcome is a held message or a dead letter: any exception
        while decoding one body is a poison verdict for that message alone. An exception past
        that is a bug of ours; :meth:`recover_intake` then settles every message of the batch
        that no worker has, so none is left in flight to nobody.
        """
        if not self.accepting:
            self._release_arrivals(messages)
            return
        now = self.clock()
        held = self.held
        accepted: list[Held] = []
        made: list[Held] = []
        self._intake = made
        slot = self._next_slot
        for m in messages:
            problem = ""
            try:
                tenant = accepted_tenant(m.body)
            except Exception as exc:  # MessageError by contract; anything else is poison too
                tenant, problem = "", f"{type(exc).__name__}: {exc}"
            h = held_of(m, slot, tenant, now)
            slot += 1
            self._next_slot = slot
            made.append(h)
            if not problem:
                held[h.slot] = h
                accepted.append(h)
            else:
                self.counters.poison += 1
                self._apply(h, self.policy.poison(problem, h.receive_count), now)
                h.seat = STAGED
        self.counters.received += len(messages)
        # One lease for the batch, taken before any admission can release a message again.
        self.leases.add_many([h.slot for h in accepted], now)
        order = self.order
        for h in accepted:
            if order is not None and not order.arrive(h.slot, h.group):
                self.blocked.add(h.slot)  # behind an earlier message of its group
                continue
            self._admit(h, now)
        self.pump()
        self._intake = []

    def _admit(self, h: Held, now: float) -> None:
        """Its tenant's slot: ready; the tenant at its cap: waiting; the waiting bounds
        full: back to SQS with the throttle delay."""
        admission = self.limiter.admit(h.tenant, h.slot, now)
        if admission is Admission.ADMITTED:
            self.ready.append(h.slot)
        elif admission is Admission.WAITING:
            self.counters.throttled += 1
            self.on_waiting()
        else:
            self._throttle_release(h.slot)

    def _free_tenant_slot(self, tenant: str) -> None:
        """A message that held its tenant's slot is gone: the next one waiting gets it."""
        handover = self.limiter.release(tenant)
        if handover is not None:
            self.ready.append(handover)

    def recover_intake(self, messages: Sequence[ReceivedMessage], error: BaseException) -> int:
        """:meth:`on_received` failed part-way (a bug): settle what no worker has taken.

        Each such message leaves every book (held, lease, tenant slot, ready queue) and gets the
        policy's answer for a failed attempt: visible again after the backoff, or dead-lettered
        once it has failed as often as QUEUE_MAX_RETRIES allows. Messages already dispatched to
        a worker, or already staged (poison), are left as they are. Returns how many it settled.
        """
        now = self.clock()
        problem = f"{type(error).__name__}: {error}"
        by_handle = {h.receipt_handle: h for h in self._intake}
        self._intake = []
        settled = 0
        for m in messages:
            h = by_handle.get(m.receipt_handle)
            if h is None:  # on_received failed before it got to this one
                h = held_of(m, 0, "")
            elif h.seat >= 0 or h.seat == STAGED:
                continue  # a worker has it, or its ack is staged already (poison, released)
            else:
                self._forget(h)
            self._apply(h, self.policy.intake_failed(problem, h.receive_count), now)
            settled += 1
        self.counters.intake_failures += 1
        self.on_room()
        return settled

    def _forget(self, h: Held) -> None:
        """Take an undispatched message out of every book, whatever stage it had reached."""
        self.held.pop(h.slot, None)
        self.leases.remove(h.slot)
        if self.order is not None and h.slot in self.order:
            self.blocked.discard(h.slot)
            intake = {m.slot for m in self._intake}
            for later in self.order.forget(h.slot):
                self.blocked.discard(later)
                if later not in intake:  # those of its batch are settled by recover_intake
                    self._release_now(later, holds_tenant_slot=False)
        try:
            self.ready.remove(h.slot)
        except ValueError:
            if not self.limiter.remove_waiting(h.tenant, h.slot):
                return  # never admitted: it held no tenant slot
        else:
            self._free_tenant_slot(h.tenant)  # admitted: it held a tenant slot

    def _throttle_release(self, slot: int) -> None:
        """Throttled past the local bound: back to SQS with a delay, never dead-lettered."""
        h = self.held.pop(slot)
        self.leases.remove(slot)
        self.counters.throttle_released += 1
        self.acker.add(
            AckKind.VISIBILITY,
            AckEntry(slot, h.receipt_handle, self.throttle_release_delay_s),
        )
        h.seat = STAGED
        if self.order is not None:
            self._group_goes_back(slot)
        self.on_room()

    # --- to the workers ---------------------------------------------------------------------

    def pump(self) -> None:
        """Hand ready deliveries to the least-loaded live workers, in runs, one wake-up each.

        A worker takes up to :meth:`BurstSizer.run_length` deliveries in a row before the next
        least-loaded one is chosen: whole batches when handlers are short (fewer wake-ups),
        one at a time when they are long (even load). Short handlers may also queue deeper in
        a worker's ring (``cap``); long ones only up to ``shallow_cap``, so that prefetched
        messages wait in the parent, where whichever worker frees up first takes them, rather
        than behind one slow handler.
        """
        if not self.ready or not self.accepting:
            return
        ready = self.ready
        held = self.held
        encode = DELIVERY_ENCODER.encode
        traced_queue = self.traced_queue
        run = self.bursts.run_length()
        deep = run > 1
        touched: set[SeatState] = set()
        dispatched = 0
        while ready:
            seat = self._pick_seat(deep)
            if seat is None:
                break
            room = min((seat.cap if deep else seat.shallow_cap) - len(seat.slots), run, seat.budget)
            room_before = room
            put = seat.producer.put
            slots = seat.slots
            full = False
            while ready and room:
                slot = ready.popleft()
                h = held.get(slot)
                if h is None:
                    continue
                try:
                    delivery = Delivery(
                        slot,
                        h.message_id,
                        h.receive_count,
                        h.first_received_ms,
                        h.sent_ms,
                        h.body,
                        "" if traced_queue is None else tracing.carried(traced_queue, h.attributes),
                    )
                    taken = put(encode(delivery))
                except BaseException:
                    ready.appendleft(slot)  # a bug must not lose it between the books
                    raise
                if not taken:
                    ready.appendleft(slot)
                    full = True
                    break
                h.seat = seat.index
                slots.add(slot)
                touched.add(seat)
                dispatched += 1
                room -= 1
            seat.budget -= room_before - room
            if full:
                break
        self.counters.dispatched += dispatched
        for seat in touched:
            seat.producer.notify()

    def _pick_seat(self, deep: bool = True) -> SeatState | None:
        """The live, ready worker with the most room. A worker still in its worker_init (which
        may load a model for minutes) gets nothing: deliveries wait in the parent for a worker
        that can run them. It announces readiness by waking the parent with an empty ring."""
        best: SeatState | None = None
        best_room = 0
        for seat in self.seats:
            if not seat.alive:
                continue
            if not seat.ready:
                if not seat.pid or seat.seat.counters[C.PID] != seat.pid:
                    continue
                seat.ready = True
                self.on_seat_ready(seat)
            room = min((seat.cap if deep else seat.shallow_cap) - len(seat.slots), seat.budget)
            if room > best_room:
                best, best_room = seat, room
        return best

    # --- from the workers -------------------------------------------------------------------

    def on_results(self, seat: SeatState) -> int:
        """Read every result the worker has published; returns how many.

        Per-batch work (the clock, waking the pollers, dispatching) is done once per call, not
        once per result; the acker is woken only by entries that make a batch due sooner.
        """
        seat.consumer.clear()
        records = seat.consumer.get_many()
        if not records:
            self.pump()  # a worker that just got past its worker_init, or a spurious wake-up
            return 0
        now = self.clock()
        settle = self._settle
        decode = RESULT_DECODER.decode
        ran_ns = ran = 0
        for raw in records:
            r = decode(raw)
            if r.duration_ns:
                ran_ns += r.duration_ns
                ran += 1
            if not 0 <= r.outcome < N_OUTCOMES:
                raise ValueError(f"result for slot {r.slot} has no outcome {r.outcome}")
            settle(
                r.slot, OUTCOMES[r.outcome], r.delay_s, r.reason, r.finished_ms, now, r.started_ns
            )
        if ran:
            self.bursts.observe(ran_ns // ran)  # one observation per batch: their mean
        self.on_room()
        self.pump()
        if not seat.budget and not seat.slots:
            self.on_spent(seat)
        return len(records)

    def _take_back(self, slot: int) -> bool:
        """A delivery a worker being recycled never started goes back to the front of the
        ready queue, for another worker: not to SQS, and not counted as released."""
        h = self.held.get(slot)
        if h is None or h.seat < 0 or not self.seats[h.seat].recycling_reason:
            return False
        self.seats[h.seat].slots.discard(slot)
        h.seat = -1
        self.ready.appendleft(slot)
        return True

    def complete(
        self,
        slot: int,
        outcome: Outcome,
        *,
        delay_s: float = -1.0,
        reason: str = "",
        finished_ms: int = 0,
    ) -> None:
        """One outcome that did not come through a result (a lost worker, a release)."""
        self._settle(slot, outcome, delay_s, reason, finished_ms, self.clock())
        self.on_room()

    def _settle(
        self,
        slot: int,
        outcome: Outcome,
        delay_s: float,
        reason: str,
        finished_ms: int,
        now: float,
        started_ns: int = 0,
    ) -> None:
        if outcome is Outcome.RELEASED and self.accepting and self._take_back(slot):
            return
        h = self.held.pop(slot, None)
        if h is None:
            return
        if started_ns and h.received_s:
            # Both are CLOCK_MONOTONIC (the worker's, the parent's: one clock on a host).
            dwell_s = max(0.0, started_ns / 1e9 - h.received_s)
            self.counters.dwell_histogram[bisect_left(C.DWELL_BUCKETS_S, dwell_s)] += 1
            self.counters.dwell_sum_s += dwell_s
        if h.seat >= 0:
            self.seats[h.seat].slots.discard(slot)
        self.leases.remove(slot)
        self._free_tenant_slot(h.tenant)
        counters = self.counters
        counters.completed[outcome] += 1
        if outcome is Outcome.RELEASED:
            counters.released += 1
        elif finished_ms and h.sent_ms:
            e2e_ms = max(0, finished_ms - h.sent_ms)
            counters.e2e_sum_ms += e2e_ms
            counters.e2e_histogram[C.bucket_index(e2e_ms * 1_000_000)] += 1
        if outcome is Outcome.SUCCESS and self._delete_on_success:
            self.acker.stage(AckKind.DELETE, AckEntry(slot, h.receipt_handle), now)
            if self.order is not None:
                self._group_moves_on(slot, now)
            return
        action = self.policy.decide(
            outcome, h.receive_count, delay_s=None if delay_s < 0 else delay_s, reason=reason
        )
        if outcome in FAILED_ATTEMPTS:
            self._log.failure(h, outcome, reason, action, now)
        self._apply(h, action, now)
        if self.order is not None:
            if action.kind in SETTLED_FOR_GOOD or (
                outcome is Outcome.SUCCESS and action.kind is ActionKind.NOTHING
            ):
                self._group_moves_on(slot, now)
            else:
                self._group_goes_back(slot)

    # --- FIFO message groups -------------------------------------------------------------------

    def _group_moves_on(self, slot: int, now: float) -> None:
        """``slot`` is done for good (deleted or dead-lettered): the next of its group may run."""
        assert self.order is not None
        nxt = self.order.succeeded(slot)
        if nxt is None or nxt not in self.held:
            return
        self.blocked.discard(nxt)
        self._admit(self.held[nxt], now)

    def _group_goes_back(self, slot: int) -> None:
        """``slot`` goes back to SQS (a failed attempt, a release): SQS keeps its group blocked
        while it is invisible, so the later ones held here go back too, unrun and visible at
        once; SQS delivers them again after it, in order."""
        assert self.order is not None
        for later in self.order.failed(slot):
            self.blocked.discard(later)
            self._release_now(later, holds_tenant_slot=False)

    def _apply(self, h: Held, action: Action, now: float) -> None:
        """Stage the ack ``action`` asks for (the acker wakes itself when that is needed)."""
        if action.kind is ActionKind.REDRIVE:
            self.counters.dead_letter_no_dlq += 1
            self._log.redrive(h, action, now)
        ack = ack_for(
            action, h.slot, h.receipt_handle, lambda: dead_letter_of(h, action, self.queue_url)
        )
        if ack is not None:
            self.acker.stage(ack[0], ack[1], now)

    # --- time-driven ------------------------------------------------------------------------

    def renew_leases(self, now: float) -> int:
        renewals = self.leases.due(now)
        for r in renewals:
            h = self.held.get(r.key)
            if h is not None:
                self.acker.add(AckKind.VISIBILITY, AckEntry(r.key, h.receipt_handle, r.timeout_s))
        self.counters.lease_renewals += len(renewals)
        for slot in self.leases.take_capped():
            h = self.held.get(slot)
            if h is not None:
                self._log.visibility_capped(h)
        return len(renewals)

    def expire_throttled(self, now: float, max_wait_s: float) -> None:
        for slot in self.limiter.expired(now, max_wait_s):
            self._throttle_release(slot)

    # --- shutdown and worker loss --------------------------------------------------------------

    def release_undispatched(self) -> int:
        """Shutdown: every message no worker has yet goes back to the queue at once."""
        self.accepting = False
        released = 0
        for slot in self.limiter.take_all_waiting():
            released += self._release_now(slot, holds_tenant_slot=False)
        while self.ready:
            released += self._release_now(self.ready.popleft(), holds_tenant_slot=True)
        while self.blocked:  # behind a running message of their group: back, unrun
            released += self._release_now(self.blocked.pop(), holds_tenant_slot=False)
        return released

    def _release_arrivals(self, messages: Sequence[ReceivedMessage]) -> None:
        """Draining: what a long poll still brings goes straight back, visible at once."""
        self.counters.received += len(messages)
        self.counters.released += len(messages)
        self.counters.released_on_arrival += len(messages)
        for m in messages:
            self.acker.add(AckKind.VISIBILITY, AckEntry(0, m.receipt_handle, 0))

    def _release_now(self, slot: int, *, holds_tenant_slot: bool) -> int:
        h = self.held.pop(slot, None)
        if h is None:
            return 0
        self.leases.remove(slot)
        if holds_tenant_slot:  # nothing waits while draining; kept right anyway
            self._free_tenant_slot(h.tenant)
        self.counters.released += 1
        self.acker.add(AckKind.VISIBILITY, AckEntry(slot, h.receipt_handle, 0))
        released = 1
        if self.order is not None and slot in self.order:
            self.blocked.discard(slot)
            for later in self.order.forget(slot):
                self.blocked.discard(later)
                released += self._release_now(later, holds_tenant_slot=False)
        return released

    def worker_lost(self, seat: SeatState, *, how: str, forced: bool) -> None:
        """A worker died: settle what it published, release what it never took, fail the rest.

        Its down ring is read by the parent itself: those deliveries were never started, so they
        are released without counting as an attempt. What it had started failed (CRASH or, when
        the parent killed it for overrunning QUEUE_PROCESS_TIMEOUT, TIMEOUT). When the engine is
        being force-stopped the started ones are left alone: they come back through their
        visibility timeout.
        """
        self.on_results(seat)
        for raw in RingConsumer(seat.seat.down.region).get_many():
            self.complete(delivery_slot(raw), Outcome.RELEASED)  # never started
        for slot in sorted(seat.slots):
            outcome = lost_outcome(
                slot, started=True, timed_out_slot=seat.timed_out_slot, forced=forced
            )
            if outcome is None:  # left to its visibility timeout: only forget it here
                h = self.held.pop(slot, None)
                if h is not None:
                    self.leases.remove(slot)
                    self._free_tenant_slot(h.tenant)
                    if self.order is not None:
                        self._group_goes_back(slot)
            else:
                self.complete(slot, outcome, reason=lost_reason(outcome, how))
        seat.slots.clear()
        seat.timed_out_slot = NOT_TIMED_OUT
        self.pump()  # tenant slots its settles handed over: to the live workers now

    def in_flight_by_tenant(self) -> dict[str, int]:
        return self.limiter.running_by_tenant()
