"""Per-tenant limits: caps hold exactly, waiting is FIFO and bounded, nothing leaks."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from goraxfast.core.limiter import Admission, TenantLimiter

ADMITTED, WAITING, OVERFLOW = Admission.ADMITTED, Admission.WAITING, Admission.OVERFLOW


def limiter(
    cap: int = 2,
    overrides: dict[str, int] | None = None,
    per_tenant: int = 3,
    total: int = 100,
) -> TenantLimiter[str]:
    return TenantLimiter(cap, overrides, max_waiting_per_tenant=per_tenant, max_waiting_total=total)


def test_admits_up_to_the_cap_then_queues() -> None:
    lim = limiter(cap=2)
    assert [lim.admit("a", f"m{i}", now=0.0) for i in range(3)] == [ADMITTED, ADMITTED, WAITING]
    assert lim.running("a") == 2
    assert lim.waiting("a") == 1


def test_tenants_have_independent_caps() -> None:
    lim = limiter(cap=1)
    assert lim.admit("a", "a1", now=0.0) is ADMITTED
    assert lim.admit("b", "b1", now=0.0) is ADMITTED
    assert lim.admit("a", "a2", now=0.0) is WAITING
    assert lim.running_by_tenant() == {"a": 1, "b": 1}


def test_override_replaces_the_default_cap_for_that_tenant() -> None:
    lim = limiter(cap=1, overrides={"big": 3})
    assert lim.cap("big") == 3
    assert lim.cap("other") == 1
    assert [lim.admit("big", str(i), now=0.0) for i in range(4)] == [ADMITTED] * 3 + [WAITING]


def test_cap_zero_never_admits() -> None:
    lim = limiter(cap=1, overrides={"paused": 0})
    assert lim.admit("paused", "m", now=0.0) is WAITING
    assert lim.running("paused") == 0


def test_release_without_waiting_frees_the_slot() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "m1", now=0.0)
    assert lim.release("a") is None
    assert lim.running("a") == 0
    assert lim.admit("a", "m2", now=0.0) is ADMITTED


def test_release_hands_the_slot_to_the_oldest_waiting_item() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "running", now=0.0)
    lim.admit("a", "first", now=1.0)
    lim.admit("a", "second", now=2.0)
    assert lim.release("a") == "first"
    assert lim.running("a") == 1
    assert lim.release("a") == "second"
    assert lim.release("a") is None
    assert lim.running("a") == 0


def test_a_new_item_does_not_overtake_waiting_ones() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "running", now=0.0)
    lim.admit("a", "waiting", now=1.0)
    assert lim.admit("a", "newcomer", now=2.0) is WAITING
    assert lim.release("a") == "waiting"


def test_release_with_nothing_running_is_a_caller_bug() -> None:
    lim = limiter()
    with pytest.raises(ValueError):
        lim.release("nobody")
    lim.admit("a", "m", now=0.0)
    lim.release("a")
    with pytest.raises(ValueError):
        lim.release("a")


def test_overflow_when_the_tenant_queue_is_full() -> None:
    lim = limiter(cap=1, per_tenant=2, total=100)
    lim.admit("a", "run", now=0.0)
    assert [lim.admit("a", f"w{i}", now=0.0) for i in range(3)] == [WAITING, WAITING, OVERFLOW]
    assert lim.waiting("a") == 2
    assert lim.admit("b", "b", now=0.0) is ADMITTED


def test_overflow_when_all_queues_together_are_full() -> None:
    lim = limiter(cap=1, per_tenant=10, total=2)
    for tenant in "abc":
        lim.admit(tenant, "run", now=0.0)
    assert lim.admit("a", "a-wait", now=0.0) is WAITING
    assert lim.admit("b", "b-wait", now=0.0) is WAITING
    assert lim.admit("c", "c-wait", now=0.0) is OVERFLOW
    assert lim.waiting_total() == 2


def test_overflow_of_an_unknown_tenant_leaves_no_state() -> None:
    lim = limiter(cap=1, overrides={"paused": 0}, per_tenant=0)
    assert lim.admit("paused", "m", now=0.0) is OVERFLOW
    assert lim.tenant_count() == 0


def test_expired_returns_items_that_waited_long_enough_oldest_first() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "a-run", now=0.0)
    lim.admit("b", "b-run", now=0.0)
    lim.admit("b", "b-old", now=1.0)
    lim.admit("a", "a-old", now=2.0)
    lim.admit("a", "a-new", now=5.0)
    assert lim.expired(now=10.5, max_wait_s=10.0) == []
    assert lim.expired(now=12.0, max_wait_s=10.0) == ["b-old", "a-old"]
    assert lim.waiting_total() == 1
    assert lim.release("a") == "a-new"


def test_oldest_waiting_since_tracks_the_next_expiry() -> None:
    lim = limiter(cap=1)
    assert lim.oldest_waiting_since() is None
    lim.admit("a", "run", now=0.0)
    lim.admit("a", "w", now=3.0)
    assert lim.oldest_waiting_since() == 3.0


def test_remove_waiting_drops_that_item_only() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "run", now=0.0)
    lim.admit("a", "w1", now=0.0)
    lim.admit("a", "w2", now=0.0)
    assert lim.remove_waiting("a", "w1")
    assert not lim.remove_waiting("a", "w1")
    assert not lim.remove_waiting("nobody", "w2")
    assert lim.waiting_total() == 1
    assert lim.release("a") == "w2"


def test_take_all_waiting_empties_every_queue_oldest_first() -> None:
    lim = limiter(cap=1)
    lim.admit("a", "a-run", now=0.0)
    lim.admit("b", "b-run", now=0.0)
    lim.admit("a", "a1", now=3.0)
    lim.admit("b", "b1", now=1.0)
    lim.admit("a", "a2", now=3.0)
    assert lim.take_all_waiting() == ["b1", "a1", "a2"]
    assert lim.waiting_total() == 0
    assert lim.running_by_tenant() == {"a": 1, "b": 1}


def test_many_admit_release_cycles_leave_no_slots_and_no_tenants() -> None:
    lim = limiter(cap=3, per_tenant=5, total=1000)
    tenants = [f"tenant-{i}" for i in range(257)]
    handed_over = 0
    for cycle in range(20):
        for tenant in tenants:  # 3 run, 2 wait
            for i in range(5):
                lim.admit(tenant, f"{cycle}-{i}", now=float(cycle))
        for tenant in tenants:  # 5 runs end: 2 hand their slot on, 3 free it
            for _ in range(5):
                handed_over += lim.release(tenant) is not None
    assert handed_over == 20 * 257 * 2
    assert lim.running_by_tenant() == {}
    assert lim.waiting_total() == 0
    assert lim.tenant_count() == 0


@pytest.mark.parametrize("bad", [{"default_cap": -1}, {"max_waiting_total": -1}])
def test_rejects_negative_settings(bad: dict[str, int]) -> None:
    settings_ = {"default_cap": 1, "max_waiting_per_tenant": 1, "max_waiting_total": 1} | bad
    with pytest.raises(ValueError):
        TenantLimiter(
            settings_["default_cap"],
            max_waiting_per_tenant=settings_["max_waiting_per_tenant"],
            max_waiting_total=settings_["max_waiting_total"],
        )


TENANTS = st.sampled_from(["a", "b", "c", "d"])


class LimiterModel(RuleBasedStateMachine):
    """Every admitted or waiting item comes back exactly once, and caps always hold."""

    def __init__(self) -> None:
        super().__init__()
        self.lim: TenantLimiter[int] = TenantLimiter(
            2, {"a": 1, "d": 0}, max_waiting_per_tenant=3, max_waiting_total=5
        )
        self.now = 0.0
        self.serial = 0
        self.running: dict[str, list[int]] = {}  # items holding a slot, per tenant
        self.waiting: dict[int, str] = {}
        self.accepted: set[int] = set()  # items admitted or queued
        self.finished: list[int] = []  # items whose run ended, or that left the queue

    @rule(tenant=TENANTS, step=st.floats(min_value=0.0, max_value=3.0))
    def admit(self, tenant: str, step: float) -> None:
        self.now += step
        item = self.serial
        self.serial += 1
        result = self.lim.admit(tenant, item, self.now)
        if result is not OVERFLOW:
            self.accepted.add(item)
        if result is ADMITTED:
            self.running.setdefault(tenant, []).append(item)
        elif result is WAITING:
            self.waiting[item] = tenant

    @precondition(lambda self: any(self.running.values()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        tenant = data.draw(st.sampled_from(sorted(t for t, r in self.running.items() if r)))
        self.finished.append(self.running[tenant].pop(0))
        handed = self.lim.release(tenant)
        if handed is not None:
            assert self.waiting.pop(handed) == tenant
            self.running[tenant].append(handed)

    @rule(max_wait_s=st.floats(min_value=0.0, max_value=10.0))
    def expire(self, max_wait_s: float) -> None:
        for item in self.lim.expired(self.now, max_wait_s):
            del self.waiting[item]
            self.finished.append(item)

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data())
    def remove_one(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(sorted(self.waiting)))
        assert self.lim.remove_waiting(self.waiting.pop(item), item)
        self.finished.append(item)

    @invariant()
    def counts_match_and_caps_hold(self) -> None:
        for tenant in "abcd":
            running = self.lim.running(tenant)
            assert 0 <= running <= self.lim.cap(tenant)
            assert running == len(self.running.get(tenant, []))
        assert self.lim.waiting_total() == len(self.waiting) <= 5

    def teardown(self) -> None:
        for item in self.lim.take_all_waiting():
            del self.waiting[item]
            self.finished.append(item)
        for tenant, items in self.running.items():
            while items:
                self.finished.append(items.pop())
                assert self.lim.release(tenant) is None
        assert not self.waiting
        assert len(self.finished) == len(set(self.finished))
        assert set(self.finished) == self.accepted
        assert self.lim.tenant_count() == 0


TestLimiterModel = LimiterModel.TestCase
TestLimiterModel.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
