"""The receive pipeline sized by the round trip (issue 13, item 1).

Read the tables as the spec: a round trip, a rate, a handler time and handler slots give the
receives to keep in flight and the room beyond the running messages. The dynamic tests drive
:class:`PipelineSizer` through a small simulated SQS (a round trip, a backlog, handlers of a
given speed, optionally a server or parent CPU that serves only so many messages a second) on a
simulated clock: no wall clock, no sleeps, the same run every time.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goraxfast.core.pipeline import (
    DEFAULT_LIMITS,
    PipelineLimits,
    PipelinePlan,
    PipelineSize,
    PipelineSizer,
    Reason,
    SizerTuning,
    held_bound,
    prefetch_cap,
    size_for,
)
from goraxfast.core.sqs_model import SQS_MAX_BATCH
from goraxfast.engine.pipeline import PLAN_INTERVAL_S  # the simulated engine plans as often

FAST = 20e-6  # a no-op handler, seconds
MS = 0.001

# --- the steady state, as a spec -------------------------------------------------------------

STEADY = [
    # (round trip s, wanted msg/s, handler s, slots) -> (pollers, prefetch)
    pytest.param(0.1 * MS, 20_000, FAST, 10, (2, 230), id="loopback 0.1ms, 20k/s: min pollers"),
    pytest.param(15 * MS, 15_000, FAST, 10, (34, 720), id="in-region 15ms, 15k/s: 34 in flight"),
    pytest.param(15 * MS, 20_000, FAST, 10, (45, 950), id="in-region 15ms, 20k/s: 45 in flight"),
    pytest.param(40 * MS, 20_000, FAST, 10, (120, 2200), id="40ms, 20k/s: 120 in flight"),
    pytest.param(40 * MS, 40_000, FAST, 10, (128, 2500), id="40ms, 40k/s: both at their caps"),
    pytest.param(100 * MS, 5_000, FAST, 10, (75, 1300), id="cross-region 100ms, 5k/s"),
    pytest.param(25 * MS, 5_000, 5 * MS, 32, (19, 370), id="NAT 25ms, 5ms handlers x32: 5k/s"),
    pytest.param(15 * MS, 20_000, 10 * MS, 10, (3, 60), id="10ms handlers x10 cap it at 1k/s"),
    pytest.param(15 * MS, 1_000, 1.0, 2, (2, 4), id="1s handlers x2: 2s of work held"),
    pytest.param(40 * MS, 1_000, 1.0, 2, (2, 4), id="1s handlers x2 at 40ms: the same"),
    pytest.param(15 * MS, 1_000, 60.0, 4, (2, 0), id="1min handlers: nothing held ahead"),
    pytest.param(15 * MS, 0, FAST, 10, (2, 20), id="idle queue: min pollers, room to land"),
    pytest.param(15 * MS, 0, None, 10, (2, 0), id="idle, handlers unknown: nothing ahead"),
    pytest.param(0.0, 20_000, None, 10, (2, 220), id="zero round trip: min pollers"),
]


@pytest.mark.parametrize(("rtt_s", "rate", "handler_s", "workers", "expected"), STEADY)
def test_steady_state(
    rtt_s: float, rate: float, handler_s: float | None, workers: int, expected: tuple[int, int]
) -> None:
    assert size_for(rtt_s, rate, handler_s, workers) == PipelineSize(*expected)


OPERATOR = [
    # (QUEUE_POLLERS, QUEUE_PREFETCH, fixed, round trip, msg/s) -> (pollers, prefetch); 10 slots
    pytest.param(20, None, False, 40 * MS, 20_000, (20, 450), id="QUEUE_POLLERS=20 caps pollers"),
    pytest.param(None, 100, False, 15 * MS, 20_000, (11, 100), id="QUEUE_PREFETCH=100 caps both"),
    pytest.param(8, 200, True, 15 * MS, 20_000, (8, 200), id="both fixed: kept as set"),
    pytest.param(8, 200, True, 0.1 * MS, 0, (8, 200), id="both fixed: kept on an idle queue"),
    pytest.param(
        5, None, True, 40 * MS, 20_000, (5, 120), id="pollers fixed, prefetch sized for them"
    ),
    pytest.param(None, 40, True, 15 * MS, 20_000, (5, 40), id="prefetch fixed at 40: 5 pollers"),
    pytest.param(0, None, False, 15 * MS, 20_000, (45, 950), id="QUEUE_POLLERS=0: automatic"),
    pytest.param(1, 0, False, 15 * MS, 20_000, (1, 0), id="caps below the minimums: obeyed"),
]


@pytest.mark.parametrize(("pollers", "prefetch", "fixed", "rtt_s", "rate", "expected"), OPERATOR)
def test_operator_settings(
    pollers: int | None,
    prefetch: int | None,
    fixed: bool,
    rtt_s: float,
    rate: float,
    expected: tuple[int, int],
) -> None:
    limits = PipelineLimits.from_settings(pollers, prefetch, fixed=fixed)
    assert size_for(rtt_s, rate, FAST, 10, limits) == PipelineSize(*expected)


@pytest.mark.parametrize(
    ("limits", "workers", "bound"),
    [
        pytest.param(DEFAULT_LIMITS, 10, 2_510, id="defaults, 10 slots: 10 + 2,500"),
        pytest.param(PipelineLimits.from_settings(None, 300), 4, 304, id="QUEUE_PREFETCH=300 cap"),
        pytest.param(PipelineLimits.from_settings(8, 200, fixed=True), 10, 210, id="fixed 200"),
    ],
)
def test_held_bound_is_slots_plus_the_prefetch_ceiling(
    limits: PipelineLimits, workers: int, bound: int
) -> None:
    assert held_bound(limits, workers) == bound


@pytest.mark.parametrize(
    ("rate", "cap"),
    [
        pytest.param(2.0, 4, id="2 msg/s: 4 startable within 2 s"),
        pytest.param(0.1, 0, id="one every 10 s: none"),
        pytest.param(20_000.0, 2_500, id="20k msg/s: max_prefetch"),
    ],
)
def test_prefetch_is_what_the_handlers_start_within_the_dwell(rate: float, cap: int) -> None:
    assert prefetch_cap(DEFAULT_LIMITS, rate) == cap


def test_default_bounds_cover_the_issue_targets() -> None:
    """20 k msg/s at 40 ms needs 80 receives in flight, 120 with the headroom."""
    assert DEFAULT_LIMITS.max_pollers >= math.ceil(1.5 * 20_000 * 0.040 / SQS_MAX_BATCH)
    assert DEFAULT_LIMITS.max_prefetch >= DEFAULT_LIMITS.max_pollers * SQS_MAX_BATCH
    assert 1 <= DEFAULT_LIMITS.min_pollers <= 2
    assert DEFAULT_LIMITS.max_dwell_s == 2.0


def test_unset_settings_are_the_defaults() -> None:
    assert PipelineLimits.from_settings() == DEFAULT_LIMITS
    assert PipelineLimits.from_settings(0, None) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_pollers": 0},
        {"min_pollers": 5, "max_pollers": 4},
        {"min_prefetch": -1},
        {"min_prefetch": 50, "max_prefetch": 40},
        {"fixed_pollers": 0},
        {"fixed_prefetch": -1},
        {"max_dwell_s": 0.0},
        {"max_dwell_s": math.nan},
        {"headroom": 0.5},
        {"slack_s": -1.0},
        {"batch": 11},
        {"batch": 0},
        {"max_ack_batches": 0},
    ],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PipelineLimits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"growth": 1.0}, {"rtt_quantile": 0.0}, {"shrink": 1.0}, {"busy_tau_s": 0.0}]
)
def test_nonsense_tuning_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SizerTuning(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [(-0.001, 100.0, None, 1), (0.01, -1.0, None, 1), (0.01, 1.0, -1.0, 1), (0.01, 1.0, None, 0)],
)
def test_size_for_refuses_nonsense(args: tuple[float, float, float | None, int]) -> None:
    with pytest.raises(ValueError):
        size_for(*args)


# --- a simulated SQS and engine, on a simulated clock --------------------------------------


@dataclass
class World:
    """One queue, one engine: what the sizer cannot see, only observe."""

    rtt_s: float = 15 * MS
    handler_rate: float = 20_000.0  # msg/s all slots together finish
    workers: int = 10
    backlog: int = 10**9
    arrival_rate: float = 0.0  # new messages per second
    wait_s: float = 20.0
    #: Messages per second the server (or the engine's own CPU) can answer with: beyond it,
    #: receives queue and their round trips grow.
    serve_rate: float | None = None
    rtt_noise: Callable[[], float] | None = None
    handler_s: float | None = FAST  # what the engine tells plan()
    tell_waiting: bool = True  # the engine tells plan() how many pollers wait for room


@dataclass
class Receive:
    sent: float
    due: float
    asked: int


@dataclass
class Trace:
    plans: list[tuple[float, PipelinePlan]] = field(default_factory=list)
    completions: list[tuple[float, int]] = field(default_factory=list)
    receives_sent: list[float] = field(default_factory=list)
    held_max: int = 0
    waiting_max_after: dict[float, int] = field(default_factory=dict)

    def rate(self, start: float, end: float) -> float:
        return sum(n for t, n in self.completions if start <= t < end) / (end - start)

    def pollers(self, start: float = 0.0) -> list[int]:
        return [plan.pollers for t, plan in self.plans if t >= start]

    @property
    def last(self) -> PipelinePlan:
        return self.plans[-1][1]


def simulate(
    world: World,
    seconds: float,
    sizer: PipelineSizer | None = None,
    *,
    trace: Trace | None = None,
    start_s: float = 0.0,
    dt: float = 0.002,
    plan_every_s: float = PLAN_INTERVAL_S,
    waiting_after_s: float = 0.0,
) -> tuple[PipelineSizer, Trace]:
    """Run the engine's loop: receives reserve room under ``workers + prefetch`` before they
    are sent (as the engine's credits do), handlers drain what was received, plans come on a
    timer. Checks on every tick that nothing held exceeds :func:`held_bound`."""
    sizer = sizer if sizer is not None else PipelineSizer()
    trace = trace if trace is not None else Trace()
    limits, batch = sizer.limits, sizer.limits.batch
    bound = held_bound(limits, world.workers)
    in_flight: list[Receive] = []
    pool = reserved = 0  # received, not finished (running or ready); room held by receives
    budget = arrivals = 0.0
    server_free = start_s
    t = start_s
    plan = sizer.plan(t, workers=world.workers, running=0, ready=0, handler_s=world.handler_s)
    waiting = 0  # pollers that found no room on the last tick
    next_plan = t + plan_every_s
    for _ in range(round(seconds / dt)):
        t += dt
        arrivals += world.arrival_rate * dt
        world.backlog += int(arrivals)
        arrivals -= int(arrivals)
        for receive in list(in_flight):
            if receive.due > t:
                continue
            if world.backlog > 0:
                count = min(receive.asked, world.backlog)
            elif t >= receive.sent + world.wait_s:
                count = 0
            else:
                continue  # a long poll: waits for messages
            world.backlog -= count
            in_flight.remove(receive)
            reserved -= receive.asked
            pool += count
            sizer.observe_receive(t, t - receive.sent, count, world.wait_s, receive.asked)
        budget += world.handler_rate * dt
        done = min(pool, math.floor(budget))
        budget -= done
        pool -= done
        if pool == 0:
            budget = min(budget, 1.0)
        if done:
            sizer.observe_completions(t, done)
            trace.completions.append((t, done))
        running = min(world.workers, pool)
        if t >= next_plan:
            plan = sizer.plan(
                t, workers=world.workers, running=running, ready=pool - running,
                handler_s=world.handler_s, pollers_waiting=waiting if world.tell_waiting else None,
            )  # fmt: skip
            trace.plans.append((t, plan))
            next_plan += plan_every_s
        capacity = world.workers + plan.prefetch
        waiting = 0
        while len(in_flight) < plan.pollers:
            free = capacity - pool - reserved
            if free < min(plan.receive_at_least, capacity) or free <= 0:
                waiting = plan.pollers - len(in_flight)
                break
            asked = min(batch, free)
            reserved += asked
            rtt = world.rtt_s + (world.rtt_noise() if world.rtt_noise else 0.0)
            due = t + rtt
            if world.serve_rate:
                server_free = max(server_free, t + rtt / 2) + asked / world.serve_rate
                due = server_free + rtt / 2
            in_flight.append(Receive(t, due, asked))
            trace.receives_sent.append(t)
        held = pool + reserved
        assert held <= bound, f"held {held} > bound {bound} at t={t:.3f}"
        trace.held_max = max(trace.held_max, held)
        if t >= waiting_after_s:
            ahead = pool - running + reserved  # held beyond the running ones
            trace.waiting_max_after[waiting_after_s] = max(
                trace.waiting_max_after.get(waiting_after_s, 0), ahead
            )
    return sizer, trace


# --- dynamics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtt_s", "at_least", "share"),
    [
        pytest.param(15 * MS, 30, 0.95, id="15ms: >=30 in flight, 95% of the handlers' 20k/s"),
        pytest.param(40 * MS, 80, 0.90, id="40ms: >=80 in flight, 90% of the handlers' 20k/s"),
    ],
)
def test_grows_until_the_handlers_are_the_bottleneck(
    rtt_s: float, at_least: int, share: float
) -> None:
    _, trace = simulate(World(rtt_s=rtt_s), seconds=3.0)
    assert at_least <= trace.last.pollers <= DEFAULT_LIMITS.max_pollers
    assert trace.last.reason is Reason.HANDLERS
    assert trace.rate(2.0, 3.0) >= share * 20_000


def test_reaches_full_speed_within_a_quarter_second_at_15ms() -> None:
    """Each step judged over two round trips, one plan tick at 15 ms: 128 in flight at 0.15 s."""
    _, trace = simulate(World(rtt_s=15 * MS), seconds=1.0)
    assert trace.rate(0.25, 1.0) >= 0.9 * 20_000


def test_reaches_full_speed_within_half_a_second_at_40ms() -> None:
    """Fourfold steps while they pay in proportion: 2 -> 8 -> 32 -> 128 receives in flight,
    where doubling steps judged over three round trips took 1.3 s to reach 90 % (a
    20,000-message burst is 1 s of work)."""
    _, trace = simulate(World(rtt_s=40 * MS), seconds=1.5)
    assert trace.rate(0.5, 1.5) >= 0.9 * 20_000


def test_the_first_answers_start_the_probe() -> None:
    """The minimum's rate is measured from the first answers on, not from the tick after:
    at 15 ms the first step comes on the second plan."""
    _, trace = simulate(World(rtt_s=15 * MS), seconds=0.06)
    assert [plan.pollers for _, plan in trace.plans][:2] == [2, 8]


def test_a_long_wait_for_the_first_message_is_not_in_the_first_epoch() -> None:
    """An engine that waited a minute for its first message measures the minimum over what
    came since, not over the minute: its first steps are the same as a busy start's."""
    sizer = PipelineSizer()
    for i in range(2400):  # a minute of plan ticks, nothing answered
        sizer.plan(i * 0.025, workers=10, running=0, ready=0, handler_s=FAST)
    world = World(rtt_s=15 * MS)
    _, late = simulate(world, seconds=0.3, sizer=sizer, start_s=60.0)
    _, early = simulate(World(rtt_s=15 * MS), seconds=0.3)
    assert [p.pollers for _, p in late.plans] == [p.pollers for _, p in early.plans]


def test_growth_drops_to_doubling_once_a_step_pays_less_than_in_proportion() -> None:
    """6k msg/s at 15 ms takes ~9 receives in flight: the fourfold steps stop paying in
    proportion near there, and every later probe (after each hold) steps by doubling."""
    _, trace = simulate(World(rtt_s=15 * MS, serve_rate=6_000), seconds=25.0)
    settled = trace.pollers(start=1.0)
    steps = [b / a for a, b in itertools.pairwise(settled) if b > a]
    assert steps and max(steps) <= 2.0
    assert max(settled) < DEFAULT_LIMITS.max_pollers
    assert trace.rate(15.0, 25.0) >= 0.95 * 6_000


def test_loopback_stays_at_min_pollers_when_the_cpu_is_the_limit() -> None:
    """On loopback the parent's CPU, not the round trip, limits: more receives in flight only
    queue behind each other, and growing must notice it does not pay."""
    world = World(rtt_s=0.1 * MS, serve_rate=18_000)
    _, trace = simulate(world, seconds=3.0, dt=0.0001)  # ticks finer than the round trip
    assert max(trace.pollers(start=0.5)) <= 4
    assert trace.rate(2.0, 3.0) >= 0.95 * 18_000


def test_stops_growing_when_the_server_is_the_limit() -> None:
    """5k msg/s at 15 ms takes 7.5 receives in flight; beyond, round trips only lengthen."""
    _, trace = simulate(World(rtt_s=15 * MS, serve_rate=5_000), seconds=30.0)
    settled = trace.pollers(start=1.0)
    assert sorted(settled)[len(settled) // 2] <= 12  # mostly what the server can serve ...
    assert sum(p > 12 for p in settled) <= 0.05 * len(settled)  # ... briefly probing beyond
    assert max(settled) <= 2 * 12
    assert trace.rate(20.0, 30.0) >= 0.95 * 5_000


def test_slow_handlers_get_min_pollers_and_no_more_than_the_dwell_ahead() -> None:
    """1 s handlers on 2 slots finish 2 a second: no more than ~2 s of them wait."""
    world = World(rtt_s=15 * MS, handler_rate=2.0, workers=2, handler_s=1.0, backlog=1_000)
    _, trace = simulate(world, seconds=20.0, dt=0.005, waiting_after_s=3.0)
    assert set(trace.pollers()) == {DEFAULT_LIMITS.min_pollers}
    assert max(plan.prefetch for _, plan in trace.plans) <= 6
    assert trace.waiting_max_after[3.0] <= 6
    assert trace.held_max <= 2 + 6
    assert trace.rate(5.0, 20.0) >= 0.9 * 2.0


def test_shrinks_gently_to_min_pollers_once_the_queue_is_empty() -> None:
    world = World(rtt_s=15 * MS, backlog=40_000)
    sizer, trace = simulate(world, seconds=4.0)
    grown = trace.last.pollers
    assert grown >= 30
    simulate(world, seconds=60.0, sizer=sizer, trace=trace, start_s=4.0, dt=0.01)
    assert trace.last.pollers == DEFAULT_LIMITS.min_pollers
    assert trace.last.prefetch == DEFAULT_LIMITS.min_pollers * SQS_MAX_BATCH  # room to land
    assert trace.last.reason is Reason.IDLE
    values = trace.pollers(start=4.0)
    assert all(b >= math.floor(a * 0.75) for a, b in itertools.pairwise(values))
    assert len(set(values)) >= 5, "stepped down, not dropped"


def test_an_idle_queue_costs_one_long_poll_per_poller() -> None:
    world = World(rtt_s=15 * MS, backlog=5_000)
    _, trace = simulate(world, seconds=100.0, dt=0.01)
    late = [t for t in trace.receives_sent if t >= 60.0]
    # 40 s of 20 s long polls: two rounds of min_pollers, and one more that was in flight
    assert len(late) <= 3 * DEFAULT_LIMITS.min_pollers
    assert trace.last.reason is Reason.IDLE


def test_grows_again_when_messages_come_back() -> None:
    world = World(rtt_s=15 * MS, backlog=0)
    sizer, trace = simulate(world, seconds=30.0, dt=0.01)
    assert trace.last.pollers == DEFAULT_LIMITS.min_pollers
    world.backlog = 10**9
    simulate(world, seconds=3.0, sizer=sizer, trace=trace, start_s=30.0)
    assert trace.last.pollers >= 30
    assert trace.rate(32.0, 33.0) >= 0.9 * 20_000


def test_a_trickle_is_sized_for_what_arrives() -> None:
    world = World(rtt_s=15 * MS, backlog=0, arrival_rate=500.0)
    _, trace = simulate(world, seconds=20.0)
    assert trace.last.reason is Reason.DRAINED
    assert trace.last.pollers <= 4
    assert trace.rate(10.0, 20.0) >= 0.95 * 500


def test_fixed_settings_are_kept_whatever_is_measured() -> None:
    sizer = PipelineSizer(PipelineLimits.from_settings(8, 200, fixed=True))
    _, trace = simulate(World(rtt_s=40 * MS), seconds=3.0, sizer=sizer)
    assert {(plan.pollers, plan.prefetch) for _, plan in trace.plans} == {(8, 200)}
    assert {plan.reason for _, plan in trace.plans} == {Reason.FIXED}
    assert trace.held_max <= 10 + 200


def test_caps_are_never_exceeded_and_are_reached_when_needed() -> None:
    sizer = PipelineSizer(PipelineLimits.from_settings(20, 300))
    _, trace = simulate(World(rtt_s=40 * MS), seconds=3.0, sizer=sizer)
    assert max(trace.pollers()) == 20
    assert max(plan.prefetch for _, plan in trace.plans) <= 300
    assert trace.held_max <= 10 + 300


@pytest.mark.parametrize(
    "world",
    [
        pytest.param(World(rtt_s=40 * MS), id="40ms fast handlers"),
        pytest.param(World(rtt_s=15 * MS, handler_rate=500.0, handler_s=0.02), id="20ms handlers"),
        pytest.param(World(rtt_s=0.1 * MS, serve_rate=18_000), id="loopback, CPU-bound"),
        pytest.param(World(rtt_s=15 * MS, arrival_rate=3_000, backlog=0), id="3k/s arrivals"),
    ],
)
def test_never_holds_more_than_the_bound(world: World) -> None:
    _, trace = simulate(world, seconds=3.0)  # simulate() asserts it on every tick
    assert 0 < trace.held_max <= held_bound(DEFAULT_LIMITS, world.workers)


def reversals(values: list[int]) -> int:
    steps = [b - a for a, b in itertools.pairwise(values) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


def test_noisy_round_trips_do_not_make_it_flap() -> None:
    rng = random.Random(13)
    world = World(rtt_s=10 * MS, rtt_noise=lambda: rng.uniform(0.0, 10 * MS), handler_rate=5_000.0)
    _, trace = simulate(world, seconds=25.0)
    settled = trace.pollers(start=5.0)
    assert reversals(settled) == 0
    assert len(set(settled)) <= 3
    prefetches = [plan.prefetch for t, plan in trace.plans if t >= 5.0]
    assert reversals(prefetches) <= 1


def test_noisy_round_trips_while_handlers_are_busy_only_ever_shrink_it() -> None:
    sizer, _ = simulate(World(rtt_s=40 * MS), seconds=2.0)  # grown to cover 40 ms
    history = []
    for i in range(1, 2_561):
        now = 2.0 + i / 128  # 20 s; times exact in binary, so rate windows hold whole events
        rtt = 0.012 if i % 3 else 0.020  # a p90 of 20 ms, means from 12 to 15 ms
        if i % 23 == 22:
            rtt = 0.5  # an outlier now and then (under a tenth of the samples)
        sizer.observe_receive(now, rtt, 10)
        sizer.observe_completions(now, 80)  # 10,240 msg/s
        plan = sizer.plan(now, workers=10, running=10, ready=50, pollers_waiting=3)
        history.append(plan.pollers)
    need = math.ceil(1.5 * 10_240 * 0.020 / 10)
    assert history == sorted(history, reverse=True), "never up again"
    assert need <= history[-1] <= need / (1 - SizerTuning().deadband)  # within the dead band


def test_without_pollers_waiting_messages_waiting_for_a_slot_stand_in() -> None:
    _, trace = simulate(World(rtt_s=15 * MS, tell_waiting=False), seconds=2.0)
    assert trace.last.pollers >= 30
    assert trace.rate(1.0, 2.0) >= 0.95 * 20_000


# --- observations ------------------------------------------------------------------------------


def test_empty_long_polls_are_not_round_trip_samples() -> None:
    sizer = PipelineSizer()
    sizer.observe_receive(20.0, 20.0, 0, wait_s=20)
    assert sizer.rtt_s is None
    sizer.observe_receive(20.5, 0.015, 3, wait_s=20)
    assert sizer.rtt_s == 0.015


def test_empty_short_polls_and_early_empty_answers_are_samples() -> None:
    sizer = PipelineSizer()
    sizer.observe_receive(1.0, 0.02, 0, wait_s=0)
    assert sizer.rtt_s == 0.02
    other = PipelineSizer()
    other.observe_receive(1.0, 0.03, 0, wait_s=20)  # answered long before its wait
    assert other.rtt_s == 0.03


def test_a_few_outliers_do_not_move_the_round_trip() -> None:
    sizer = PipelineSizer()
    for i in range(60):
        sizer.observe_receive(i * 0.01, 0.015, 10)
    for i in range(4):
        sizer.observe_receive(1.0 + i * 0.01, 2.0, 10)
    assert sizer.rtt_s == 0.015


def test_a_real_change_of_round_trip_shows_within_a_few_receives() -> None:
    sizer = PipelineSizer()
    for i in range(64):
        sizer.observe_receive(i * 0.01, 0.015, 10)
    for i in range(8):
        sizer.observe_receive(1.0 + i * 0.01, 0.040, 10)
    assert sizer.rtt_s == 0.040


def test_the_ack_round_trip_sizes_the_deletes_in_flight() -> None:
    sizer = PipelineSizer()
    for i in range(100):
        now = i * 0.01
        sizer.observe_receive(now, 0.040, 10)
        sizer.observe_completions(now, 200)  # 20k msg/s
        sizer.observe_ack(now, 0.040)
    plan = sizer.plan(1.0, workers=10, running=10, ready=100)
    rate = sizer.completion_rate(1.0)
    assert rate == pytest.approx(20_000, rel=0.05)
    assert plan.ack_batches == math.ceil(1.5 * rate * 0.040 / 10)


def test_the_ack_round_trip_stands_in_until_a_receive_gives_one() -> None:
    sizer = PipelineSizer()
    sizer.observe_ack(0.0, 0.025)
    assert sizer.rtt_s == 0.025


def test_before_anything_is_measured_the_plan_is_the_minimum() -> None:
    plan = PipelineSizer().plan(0.0, workers=10, running=0, ready=0)
    assert (plan.pollers, plan.prefetch, plan.capacity) == (2, 0, 10)
    assert plan.reason is Reason.WARMING


def test_time_running_backwards_or_nan_is_taken_as_the_latest_time() -> None:
    sizer = PipelineSizer()
    sizer.observe_completions(10.0, 100)
    sizer.observe_completions(5.0, 100)
    sizer.observe_completions(math.nan, 100)
    assert sizer.completion_rate(10.0) == pytest.approx(300 / 0.1)
    assert sizer.completion_rate(math.nan) >= 0


def test_plan_refuses_zero_workers() -> None:
    with pytest.raises(ValueError):
        PipelineSizer().plan(0.0, workers=0, running=0, ready=0)


# --- any sequence of observations: always within bounds ------------------------------------

finite = st.floats(min_value=-1.0, max_value=100.0, allow_nan=False)
odd = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
events = st.lists(
    st.one_of(
        st.tuples(
            st.just("receive"),
            finite,
            odd,
            st.integers(-1, 12),
            st.sampled_from([0.0, 1.0, 20.0, math.nan]),
            st.one_of(st.none(), st.integers(0, 10)),
        ),
        st.tuples(st.just("complete"), finite, st.integers(-5, 5_000)),
        st.tuples(st.just("ack"), finite, odd),
        st.tuples(
            st.just("plan"),
            finite,
            st.integers(1, 64),
            st.integers(0, 100),
            st.integers(0, 3_000),
            st.one_of(st.none(), st.floats(0.0, 120.0), st.just(math.nan)),
        ),
    ),
    max_size=120,
)
limit_sets = st.builds(
    PipelineLimits.from_settings,
    st.one_of(st.none(), st.integers(0, 200)),
    st.one_of(st.none(), st.integers(0, 5_000)),
    fixed=st.booleans(),
    batch=st.integers(1, 10),
)


@settings(max_examples=300, deadline=None)
@given(limits=limit_sets, script=events)
def test_any_observations_give_plans_within_bounds(
    limits: PipelineLimits, script: list[tuple[object, ...]]
) -> None:
    sizer = PipelineSizer(limits)
    now = 0.0
    for event in script:
        kind, step = event[0], event[1]
        assert isinstance(step, float)
        now += step  # may step back: the sizer takes the latest time seen
        if kind == "receive":
            _, _, rtt, count, wait, asked = event
            sizer.observe_receive(now, rtt, count, wait, asked)  # type: ignore[arg-type]
        elif kind == "complete":
            sizer.observe_completions(now, event[2])  # type: ignore[arg-type]
        elif kind == "ack":
            sizer.observe_ack(now, event[2])  # type: ignore[arg-type]
        else:
            _, _, workers, running, ready, handler_s = event
            assert isinstance(workers, int)
            plan = sizer.plan(
                now, workers=workers, running=running, ready=ready, handler_s=handler_s,  # type: ignore[arg-type]
            )  # fmt: skip
            startable = sizer.completion_rate(now)
            if isinstance(handler_s, float) and handler_s > 0:
                startable = max(startable, workers / handler_s)
            check_plan(plan, limits, workers, startable)


def check_plan(plan: PipelinePlan, limits: PipelineLimits, workers: int, startable: float) -> None:
    if limits.fixed_pollers is not None:
        assert plan.pollers == limits.fixed_pollers
    else:
        assert limits.min_pollers <= plan.pollers <= limits.max_pollers
    if limits.fixed_prefetch is not None:
        assert plan.prefetch == limits.fixed_prefetch
    else:
        assert limits.min_prefetch <= plan.prefetch <= limits.max_prefetch
        assert plan.prefetch <= prefetch_cap(limits, startable)  # the dwell bound
    assert plan.capacity == workers + plan.prefetch <= held_bound(limits, workers)
    assert 1 <= plan.ack_batches <= limits.max_ack_batches
    assert 1 <= plan.receive_at_least <= limits.batch
    assert isinstance(plan.reason, Reason)
    assert plan.rate_per_s >= 0 and math.isfinite(plan.rate_per_s)
