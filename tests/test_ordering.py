"""GroupOrder, the FIFO ordering rule: table tests, a Hypothesis state machine against a model of
groups, and an engine run against a model of an SQS FIFO queue (groups blocked while a message is
in flight, released messages back in their own place) with failures, releases and slot reuse."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from goraxfast.core.ordering import GroupOrder

# --- table tests -----------------------------------------------------------------------------


def held(order: GroupOrder[int], *arrivals: tuple[int, str]) -> list[bool]:
    return [order.arrive(key, group) for key, group in arrivals]


def test_the_first_of_a_group_runs_the_others_wait_other_groups_run() -> None:
    order: GroupOrder[int] = GroupOrder()
    assert held(order, (1, "a"), (2, "a"), (3, "b"), (4, "a")) == [True, False, True, False]
    assert [order.is_runnable(k) for k in (1, 2, 3, 4)] == [True, False, True, False]
    assert order.waiting("a") == [2, 4] and order.waiting("b") == [] and order.waiting("z") == []
    assert set(order.groups()) == {"a", "b"} and len(order) == 4
    assert order.group_of(4) == "a" and 4 in order and 9 not in order


@pytest.mark.parametrize(
    ("steps", "left_held"),
    [
        # succeeded: the next of the group becomes runnable, in arrival order
        ([("succeeded", 1, 2), ("succeeded", 2, 4), ("succeeded", 4, None)], {3}),
        # the last of a group: nothing follows, the group is gone
        ([("succeeded", 3, None)], {1, 2, 4}),
        # failed head: every later held one of its group goes back, in order
        ([("failed", 1, [2, 4])], {3}),
        ([("failed", 3, [])], {1, 2, 4}),
        # forget of the head: as failed
        ([("forget", 1, [2, 4])], {3}),
        # forget of a waiting one: it and those after it go back; the head stays
        ([("forget", 2, [4])], {1, 3}),
        ([("forget", 4, [])], {1, 2, 3}),
        # succeeded of a waiting one (dead-lettered at intake): only it leaves
        ([("succeeded", 2, None), ("succeeded", 1, 4)], {3, 4}),
        # after a failure the group starts afresh with what arrives next
        (
            [("failed", 1, [2, 4]), ("arrive", (5, "a"), True), ("arrive", (6, "a"), False)],
            {3, 5, 6},
        ),
        # a slot that left may be used again, at the back of its new group
        ([("succeeded", 3, None), ("arrive", (3, "a"), False), ("forget", 2, [4, 3])], {1}),
    ],
)
def test_outcomes(steps: list[tuple[str, Any, Any]], left_held: set[int]) -> None:
    order: GroupOrder[int] = GroupOrder()
    held(order, (1, "a"), (2, "a"), (3, "b"), (4, "a"))
    for op, arg, expected in steps:
        got = order.arrive(*arg) if op == "arrive" else getattr(order, op)(arg)
        assert got == expected, (op, arg)
    assert {k for k in range(10) if k in order} == left_held and len(order) == len(left_held)


def test_a_message_that_never_ran_cannot_fail_an_attempt() -> None:
    order: GroupOrder[int] = GroupOrder()
    held(order, (1, "a"), (2, "a"))
    with pytest.raises(ValueError, match="not runnable"):
        order.failed(2)
    assert len(order) == 2 and order.is_runnable(1)


def test_misuse_is_refused_and_changes_nothing() -> None:
    order: GroupOrder[int] = GroupOrder()
    held(order, (1, "a"))
    with pytest.raises(ValueError, match="already held"):
        order.arrive(1, "b")
    for op in (order.succeeded, order.failed, order.forget, order.is_runnable):
        with pytest.raises(KeyError):
            op(7)  # type: ignore[operator]
    assert len(order) == 1 and list(order.groups()) == ["a"]


def test_any_hashable_key() -> None:
    order: GroupOrder[tuple[int, int]] = GroupOrder()
    assert order.arrive((0, 1), "g") and not order.arrive((0, 2), "g")
    assert order.succeeded((0, 1)) == (0, 2)


# --- a model of groups: every sequence of operations ------------------------------------------


class OrderMachine(RuleBasedStateMachine):
    """GroupOrder against a list per group, with slots reused as an engine reuses them.

    The caller's view (``told``: what arrive() and succeeded() said may run) must be exactly the
    earliest held message of each group, so a message never becomes runnable while an earlier
    one of its group is held, and one group never has two; every arrival leaves exactly once."""

    held_keys = Bundle("held_keys")

    def __init__(self) -> None:
        super().__init__()
        self.order: GroupOrder[int] = GroupOrder()
        self.model: dict[str, list[int]] = {}
        self.seq: dict[int, int] = {}  # slot -> arrival number of the message in it
        self.arrivals = 0
        self.free: list[int] = []
        self.slots = 0
        self.told: set[int] = set()
        self.left: list[int] = []  # arrival numbers, in the order they left
        self.last_run: dict[str, int] = {}  # group -> arrival number of its latest runnable

    def _runnable(self, key: int) -> None:
        group = self.order.group_of(key)
        assert self.seq[key] > self.last_run.get(group, -1), "runnable out of arrival order"
        self.last_run[group] = self.seq[key]
        self.told.add(key)

    def _leave(self, keys: list[int]) -> None:
        for key in keys:
            self.left.append(self.seq.pop(key))
            self.told.discard(key)
            self.free.append(key)

    def _group(self, key: int) -> list[int]:
        return self.model[self.order.group_of(key)]

    @rule(target=held_keys, group=st.sampled_from("abcd"))
    def arrive(self, group: str) -> int:
        if self.free:
            key = self.free.pop(0)
        else:
            key, self.slots = self.slots, self.slots + 1
        self.seq[key] = self.arrivals
        self.arrivals += 1
        queue = self.model.setdefault(group, [])
        assert self.order.arrive(key, group) is (not queue)
        queue.append(key)
        if len(queue) == 1:
            self._runnable(key)
        return key

    @precondition(lambda self: bool(self.seq))
    @rule(data=st.data())
    def succeeded(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.seq)))
        group = self.order.group_of(key)
        queue = self._group(key)
        expected = queue[1] if queue[0] == key and len(queue) > 1 else None
        got = self.order.succeeded(key)
        assert got == expected
        queue.remove(key)
        if not queue:
            del self.model[group]
        self._leave([key])
        if got is not None:
            self._runnable(got)

    @precondition(lambda self: bool(self.seq))
    @rule(data=st.data())
    def failed(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.seq)))
        group = self.order.group_of(key)
        queue = self._group(key)
        if queue[0] != key:
            with pytest.raises(ValueError):
                self.order.failed(key)
            return
        released = self.order.failed(key)
        assert released == queue[1:]
        del self.model[group]
        assert group not in self.order.groups() and self.order.waiting(group) == []
        self._leave([key, *released])

    @precondition(lambda self: bool(self.seq))
    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.seq)))
        group = self.order.group_of(key)
        queue = self._group(key)
        at = queue.index(key)
        released = self.order.forget(key)
        assert released == queue[at + 1 :]
        del queue[at:]
        if not queue:
            del self.model[group]
        self._leave([key, *released])

    @invariant()
    def the_callers_view_is_the_head_of_each_group(self) -> None:
        heads = {queue[0] for queue in self.model.values()}
        assert self.told == heads
        assert {k for k in self.seq if self.order.is_runnable(k)} == heads
        assert len(heads) == len(self.model)  # one runnable per group, no more

    @invariant()
    def the_rest_waits_in_arrival_order(self) -> None:
        assert set(self.order.groups()) == set(self.model)
        for group, queue in self.model.items():
            assert self.order.waiting(group) == queue[1:]
            assert [self.seq[k] for k in queue] == sorted(self.seq[k] for k in queue)
        assert len(self.order) == len(self.seq) == sum(map(len, self.model.values()))

    def teardown(self) -> None:
        for key in list(self.seq):
            if key in self.seq:
                self._leave([key, *self.order.forget(key)])
        assert sorted(self.left) == list(range(self.arrivals))  # each left exactly once
        assert len(self.order) == 0 and not self.order.groups()


TestOrderMachine = OrderMachine.TestCase
TestOrderMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# --- an engine on a model of an SQS FIFO queue ------------------------------------------------


@dataclass
class Stored:
    mid: int
    group: str
    invisible_until: int = -1  # tick; -1: visible
    deleted: bool = False
    receives: int = 0


@dataclass
class FifoQueueModel:
    """SQS FIFO as the rule relies on it: a group with a message in flight gives nothing; an
    available group gives its messages from the first not deleted, in order; a message made
    visible again keeps its place."""

    stored: list[Stored]
    now: int = 0
    handles: dict[int, Stored] = field(default_factory=dict)

    def receive(self, room: int) -> list[Stored]:
        blocked = {m.group for m in self.stored if not m.deleted and m.invisible_until > self.now}
        got: list[Stored] = []
        for m in self.stored:
            if len(got) >= room:
                break
            if m.deleted or m.group in blocked:
                continue
            m.invisible_until, m.receives = self.now + 1_000_000, m.receives + 1
            got.append(m)  # and more of its group may follow in this receive, in order
        return got

    def delete(self, m: Stored) -> None:
        m.deleted = True

    def visible_in(self, m: Stored, ticks: int) -> None:
        m.invisible_until = self.now + ticks if ticks else -1

    def settled(self) -> bool:
        return all(m.deleted for m in self.stored)


@dataclass
class EngineModel:
    """What the dispatcher will do with GroupOrder: slots, runnable ones started, outcomes."""

    queue: FifoQueueModel
    capacity: int
    fails: Callable[[Stored], bool]
    order: GroupOrder[int] = field(default_factory=GroupOrder)
    slots: dict[int, Stored] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)
    next_slot: int = 0
    runnable: set[int] = field(default_factory=set)
    running: set[int] = field(default_factory=set)
    runs: dict[str, list[int]] = field(default_factory=dict)  # successful runs per group

    def receive(self) -> None:
        for m in self.queue.receive(self.capacity - len(self.slots)):
            slot = self.free.pop() if self.free else self._new_slot()
            self.slots[slot] = m
            if self.order.arrive(slot, m.group):
                self.runnable.add(slot)

    def _new_slot(self) -> int:
        self.next_slot += 1
        return self.next_slot - 1

    def start(self, slot: int) -> None:
        group = self.slots[slot].group
        assert all(self.slots[s].group != group for s in self.running), "two of a group at once"
        self.runnable.discard(slot)
        self.running.add(slot)

    def finish(self, slot: int, backoff: int) -> None:
        m = self.slots[slot]
        self.running.discard(slot)
        if self.fails(m):
            self.queue.visible_in(m, backoff)
            released = self.order.failed(slot)
            self._leave(slot)
            for other in released:
                self.runnable.discard(other)
                self.queue.visible_in(self.slots[other], 0)
                self._leave(other)
            return
        self.runs.setdefault(m.group, []).append(m.mid)
        self.queue.delete(m)
        following = self.order.succeeded(slot)
        self._leave(slot)
        if following is not None:
            self.runnable.add(following)

    def release(self, slot: int) -> None:
        """Taken out without an outcome (a throttle bound, shutdown): back to SQS, unrun."""
        for other in [slot, *self.order.forget(slot)]:
            self.runnable.discard(other)
            self.queue.visible_in(self.slots[other], 0)
            self._leave(other)

    def _leave(self, slot: int) -> None:
        del self.slots[slot]
        self.free.append(slot)


@settings(max_examples=300, deadline=None)
@given(
    groups=st.lists(st.sampled_from("abcd"), min_size=1, max_size=40),
    failures=st.lists(st.sampled_from([0, 0, 1, 2]), min_size=40, max_size=40),
    capacity=st.integers(1, 12),
    data=st.data(),
)
def test_per_group_successful_runs_follow_publish_order(
    groups: list[str], failures: list[int], capacity: int, data: st.DataObject
) -> None:
    """Failures, retries with backoff, releases and slot reuse in any interleaving: each
    group's successful handler runs are exactly its messages in publish order, never two of a
    group at once, and nothing is left held. Message i fails its first ``failures[i]`` attempts."""
    queue = FifoQueueModel([Stored(i, g) for i, g in enumerate(groups)])
    engine = EngineModel(queue, capacity, fails=lambda m: m.receives <= failures[m.mid])
    for _ in range(400):
        if queue.settled():
            break
        action = data.draw(st.sampled_from(["receive", "start", "finish", "release", "tick"]))
        if action == "receive":
            engine.receive()
        elif action == "start" and engine.runnable:
            engine.start(data.draw(st.sampled_from(sorted(engine.runnable))))
        elif action == "finish" and engine.running:
            slot = data.draw(st.sampled_from(sorted(engine.running)))
            engine.finish(slot, backoff=data.draw(st.integers(0, 3)))
        elif action == "release":
            idle = sorted(set(engine.slots) - engine.running)
            if idle:
                engine.release(data.draw(st.sampled_from(idle)))
        else:
            queue.now += 1
        heads = {slot for slot in engine.slots if engine.order.is_runnable(slot)}
        assert heads == engine.runnable | engine.running  # no group stalls, none runs two
    for _ in range(1000):  # then run everything to the end, no more releases
        if queue.settled():
            break
        engine.receive()
        for slot in sorted(engine.runnable):
            engine.start(slot)
        for slot in sorted(engine.running):
            engine.finish(slot, backoff=1)
        queue.now += 1
    assert queue.settled()
    expected: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        expected.setdefault(g, []).append(i)
    assert engine.runs == expected
    assert len(engine.order) == 0 and not engine.slots
