"""How many receives to keep in flight and how many messages to hold: sized by the round trip.

On loopback a ReceiveMessage costs ~0.1 ms; in an AWS region 10–30 ms, more across regions or
through a NAT. By Little's law a receive pipeline delivers at most ``receives in flight ×
messages per receive ÷ round trip``: five pollers of ten at 15 ms cap an engine at ~3,300 msg/s
however fast its handlers are (issue 13 measured 2.7 k). So the pipeline is sized by the
bandwidth-delay product, with headroom, between bounds an operator can state:

- ``pollers = ceil(headroom × rate × rtt ÷ batch)`` in ``[min_pollers, max_pollers]``;
- ``prefetch = pollers × batch + rate × (rtt + slack_s)`` (the second term in whole batches):
  room for every receive in flight to land whole, plus a round trip of work in hand, so that a
  late answer, or answers landing together, do not leave a handler slot idle;
- ``prefetch ≤ max(min_prefetch, start rate × max_dwell_s)`` and ``≤ max_prefetch``, the start
  rate being what the handlers complete a second (or ``workers ÷ handler time`` when that is
  more: idle slots start what lands at once): an engine never hides more messages from the
  rest of a fleet than its handlers start within ``max_dwell_s``, whatever the round trip;
- no more pollers than that room holds batches (a receive without room only waits for it).

``prefetch`` is the room beyond the running messages, as the engine's credits already count it:
the messages waiting for a slot *and* the batches reserved by receives in flight draw from it.
So everything an engine holds (running, waiting, reserved) stays under :func:`held_bound`:
``workers + max_prefetch`` (or ``workers + fixed_prefetch``).

The steady-state rule is :func:`size_for`, which the table tests read as a spec. The engine
drives :class:`PipelineSizer` with what it observes and asks it for a :class:`PipelinePlan`,
and which part is the bottleneck decides what happens:

- handlers starved while receives come back full: the receive pipeline is the bottleneck, so
  the pollers grow fourfold per step while each step pays nearly in proportion, then double,
  but only while each step raises the delivered rate. Growth is only ever
  by such a step, never by the formula: when the parent's CPU or the server is the limit, more
  receives in flight only lengthen the round trip, and the formula fed with that round trip
  would ask for more without end;
- pollers waiting for room (handlers busy): sized down towards the formula for the rate the
  handlers complete at;
- receives partial or empty (the queue drained): sized down towards what arrives, to
  ``min_pollers`` on an idle queue.

Everything is smoothed (a windowed p90 of the round trip, windowed rates, a time-weighted busy
signal) and shrinking waits out a dead band and a hold time, a quarter at a time, so noisy
round trips do not make it flap and a short lull does not throw away a grown pipeline.

Nothing here reads a clock: every observation and plan carries its time (``now_s``, seconds on
any monotonic clock), and the same sequence of calls always gives the same plans.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from goraxfast.core.sqs_model import SQS_MAX_BATCH

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TUNING",
    "PipelineLimits",
    "PipelinePlan",
    "PipelineSize",
    "PipelineSizer",
    "Reason",
    "SizerTuning",
    "held_bound",
    "prefetch_cap",
    "size_for",
]


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    """The bounds of the sizing rule: what an operator sets and the README quotes.

    ``max_pollers`` 128: 20 k msg/s through a 40 ms round trip needs 80 receives in flight, 120
    with the headroom; a poller costs a coroutine and a kept-alive connection, and an idle queue
    never keeps more than ``min_pollers`` of them. ``min_pollers`` 2: what an idle queue costs
    (one long poll each, 2 × 3 requests a minute), and while one poller's answer is being handed
    over the other is already waiting at SQS, so the first messages of a burst do not wait a
    round trip. ``max_prefetch`` 2,500: the 1,280 messages 128 receives in flight may bring,
    plus the round trip of work in hand that keeps the slots busy (50 ms of the ~21 k msg/s
    they carry at 40 ms: ~1,070); ~2.5 MB of gorax's ~1 KB bodies (an operator with large
    bodies lowers ``QUEUE_PREFETCH``). ``min_prefetch`` 0: a slow handler's messages are
    not held beyond what ``max_dwell_s`` allows (a floor of a batch would hide five seconds of
    work from the fleet for 1 s handlers on 2 slots); receives still ask for whole batches when
    the room allows.
    """

    min_pollers: int = 2
    max_pollers: int = 128
    min_prefetch: int = 0
    max_prefetch: int = 2_500
    #: QUEUE_POLLERS / QUEUE_PREFETCH as fixed values: the sizer then keeps them whatever it
    #: measures (caps are ``max_pollers`` / ``max_prefetch``).
    fixed_pollers: int | None = None
    fixed_prefetch: int | None = None
    #: Messages held beyond the running ones are all startable within this (at the rate the
    #: handlers start them): fairness to the other engines sharing the queue, and a bound on
    #: how long a message waits in the engine's hands.
    max_dwell_s: float = 2.0
    #: Receives in flight beyond the bandwidth-delay product: round trips vary, batches come
    #: back short, and a pipeline sized exactly starves the handlers at every hiccup.
    headroom: float = 1.5
    #: Work held ready beyond what the receives in flight bring: a round trip of it (so that
    #: an answer that comes late, or answers that land together, do not leave a slot idle)
    #: and this much more.
    slack_s: float = 0.010
    #: Messages per receive (QUEUE_MAX_MESSAGES), and entries per delete batch.
    batch: int = SQS_MAX_BATCH
    #: Delete batches in flight at most (the same Little's law: completions × ack round trip).
    max_ack_batches: int = 128

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.batch <= SQS_MAX_BATCH:
            problems.append(f"batch must be in 1..{SQS_MAX_BATCH}, got {self.batch}")
        if self.min_pollers < 1:
            problems.append(f"min_pollers must be at least 1, got {self.min_pollers}")
        if self.max_pollers < self.min_pollers:
            problems.append(
                f"max_pollers ({self.max_pollers}) is below min_pollers ({self.min_pollers})"
            )
        if self.min_prefetch < 0:
            problems.append(f"min_prefetch must not be negative, got {self.min_prefetch}")
        if self.max_prefetch < self.min_prefetch:
            problems.append(
                f"max_prefetch ({self.max_prefetch}) is below min_prefetch ({self.min_prefetch})"
            )
        if self.fixed_pollers is not None and self.fixed_pollers < 1:
            problems.append(f"fixed_pollers must be at least 1, got {self.fixed_pollers}")
        if self.fixed_prefetch is not None and self.fixed_prefetch < 0:
            problems.append(f"fixed_prefetch must not be negative, got {self.fixed_prefetch}")
        if not (math.isfinite(self.max_dwell_s) and self.max_dwell_s > 0):
            problems.append(f"max_dwell_s must be a positive number, got {self.max_dwell_s}")
        if not (math.isfinite(self.headroom) and self.headroom >= 1):
            problems.append(f"headroom must be at least 1, got {self.headroom}")
        if not (math.isfinite(self.slack_s) and self.slack_s >= 0):
            problems.append(f"slack_s must not be negative, got {self.slack_s}")
        if self.max_ack_batches < 1:
            problems.append(f"max_ack_batches must be at least 1, got {self.max_ack_batches}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_settings(
        cls,
        pollers: int | None = None,
        prefetch: int | None = None,
        *,
        fixed: bool = False,
        batch: int = SQS_MAX_BATCH,
    ) -> PipelineLimits:
        """The limits an operator's QUEUE_POLLERS / QUEUE_PREFETCH mean.

        Unset (None, or 0 pollers as gorax's "automatic"): the defaults. Set: the most the sizer
        may choose (``fixed=False``, the default) or the value it keeps (``fixed=True``). A cap
        below the default minimum lowers the minimum with it, so a cap is always obeyed.
        """
        base = cls(batch=batch)
        min_pollers, max_pollers, fixed_pollers = base.min_pollers, base.max_pollers, None
        min_prefetch, max_prefetch, fixed_prefetch = base.min_prefetch, base.max_prefetch, None
        if pollers:
            if fixed:
                fixed_pollers = pollers
            else:
                max_pollers = pollers
                min_pollers = min(min_pollers, pollers)
        if prefetch is not None:
            if fixed:
                fixed_prefetch = prefetch
            else:
                max_prefetch = prefetch
                min_prefetch = min(min_prefetch, prefetch)
        return cls(
            min_pollers=min_pollers,
            max_pollers=max_pollers,
            min_prefetch=min_prefetch,
            max_prefetch=max_prefetch,
            fixed_pollers=fixed_pollers,
            fixed_prefetch=fixed_prefetch,
            batch=batch,
        )


DEFAULT_LIMITS = PipelineLimits()


@dataclass(frozen=True, slots=True)
class SizerTuning:
    """How :class:`PipelineSizer` smooths and steps: not operator settings, but named so that a
    test can make the dynamics visible and every constant says why it is what it is."""

    #: Rates are messages over the last quarter second, so that the pollers follow a ramp
    #: within a few round trips; over up to two seconds when the short window holds fewer
    #: than 20 messages, so that a slow handler's rate is not 0 or 8 a second by chance.
    rate_window_s: float = 0.25
    long_rate_window_s: float = 2.0
    min_rate_messages: int = 20
    #: A rate is never divided by less than this: the first batch alone is not a rate.
    min_rate_span_s: float = 0.1
    #: The round trip is the p90 of the last 64 samples: a few outliers (a slow connection, a
    #: GC pause) do not move it; a real change does within a handful of receives.
    rtt_samples: int = 64
    rtt_quantile: float = 0.9
    #: Receive-bound, pollers grow fourfold per step while every step so far paid nearly in
    #: proportion (``linear_gain`` of what it promised: 2 -> 8 -> 32 -> 128 in three steps,
    #: ~0.5 s at 40 ms; a burst on an idle engine must not wait seconds for the pipeline) ...
    fast_growth: float = 4.0
    linear_gain: float = 0.75
    #: ... then double per step, once a step paid less than that (the bottleneck is near) ...
    growth: float = 2.0
    #: ... while each step raises the delivered rate by at least a fifth (a doubling that pays
    #: nearly doubles it; one that does not means the bottleneck is elsewhere) ...
    min_gain: float = 0.2
    #: ... judged over at least this many round trips, and this long, after the step ...
    settle_rtts: float = 3.0
    min_settle_s: float = 0.05
    #: ... and after a step that did not pay, probing pauses this long.
    reprobe_s: float = 10.0
    #: Shrinking: only to a target below (1 - deadband) of the current value, held that long,
    #: then by at most a quarter per hold time (128 -> 2 in ~15 s of idle queue).
    deadband: float = 0.2
    shrink_hold_s: float = 1.0
    shrink: float = 0.75
    #: "Handlers busy" is a time-weighted mean, over ~this, of "pollers wait for room" (or,
    #: when the engine does not say, "messages wait for a slot"), taken as true above a half.
    busy_tau_s: float = 0.25
    #: The mean fill of receives (count / asked), weighing each new receive this much; below
    #: ``drained_fill`` the queue has fewer messages than the pollers ask for.
    fill_weight: float = 0.2
    drained_fill: float = 0.5

    def __post_init__(self) -> None:
        positive = {
            "rate_window_s": self.rate_window_s,
            "long_rate_window_s": self.long_rate_window_s,
            "min_rate_span_s": self.min_rate_span_s,
            "min_settle_s": self.min_settle_s,
            "busy_tau_s": self.busy_tau_s,
        }
        problems = [f"{name} must be positive, got {v}" for name, v in positive.items() if v <= 0]
        if self.rtt_samples < 1:
            problems.append(f"rtt_samples must be at least 1, got {self.rtt_samples}")
        if not 0 < self.rtt_quantile <= 1:
            problems.append(f"rtt_quantile must be in (0, 1], got {self.rtt_quantile}")
        if self.growth <= 1 or self.fast_growth < self.growth:
            problems.append(
                f"growth must be above 1 and fast_growth at least growth, got {self.growth}"
                f" and {self.fast_growth}"
            )
        if not 0 <= self.linear_gain <= 1:
            problems.append(f"linear_gain must be in [0, 1], got {self.linear_gain}")
        if self.min_gain < 0 or self.settle_rtts < 0 or self.reprobe_s < 0:
            problems.append("min_gain, settle_rtts and reprobe_s must not be negative")
        if not 0 <= self.deadband < 1 or not 0 < self.shrink < 1 or self.shrink_hold_s < 0:
            problems.append("deadband in [0, 1), shrink in (0, 1), shrink_hold_s >= 0")
        if not 0 < self.fill_weight <= 1 or not 0 <= self.drained_fill <= 1:
            problems.append("fill_weight in (0, 1], drained_fill in [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))


DEFAULT_TUNING = SizerTuning()


class PipelineSize(NamedTuple):
    """Receives to keep in flight, and room beyond the running messages."""

    pollers: int
    prefetch: int


class Reason(StrEnum):
    """Why a plan is what it is: for the log line and the bench report."""

    FIXED = "fixed by the operator"
    WARMING = "nothing measured yet"
    HANDLERS = "handlers busy, pollers wait for room: sized to their completion rate"
    PROBING = "handlers starved, receives full: growing"
    HELD = "handlers starved, receives full: growing did not pay, holding"
    CAPPED = "handlers starved, receives full: at the cap"
    DRAINED = "receives partial: sized for what arrives"
    IDLE = "queue idle"


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    """What the engine should run now."""

    #: ReceiveMessage calls to keep in flight (pollers beyond it finish their receive and stop).
    pollers: int
    #: Room beyond the running messages, shared by the ready ones and the receives in flight.
    prefetch: int
    #: ``workers + prefetch``: the engine's credit capacity; what it holds never exceeds it.
    capacity: int
    #: The room a poller waits for before it receives: a whole batch while the prefetch holds
    #: one (a receive costs the same for one message as for ten), else what the prefetch
    #: allows, at least one free slot: slow handlers get whole batches only when there is room
    #: for them, and a handler slot that comes free does not wait for its neighbours.
    receive_at_least: int
    #: Delete batches to keep in flight.
    ack_batches: int
    reason: Reason
    #: The round trip (p90) and the rate (msg/s) the plan was sized for, for the record.
    rtt_s: float | None
    rate_per_s: float


def held_bound(limits: PipelineLimits, workers: int) -> int:
    """The most messages an engine with ``workers`` handler slots ever holds: running, waiting
    for a slot, or reserved by a receive in flight (the README's figure)."""
    room = limits.fixed_prefetch if limits.fixed_prefetch is not None else limits.max_prefetch
    return workers + room


def prefetch_cap(limits: PipelineLimits, start_rate_per_s: float) -> int:
    """The most room beyond the running messages: what handlers starting ``start_rate_per_s``
    messages a second start within ``max_dwell_s`` (not below ``min_prefetch``, not above
    ``max_prefetch``)."""
    startable = _floor(max(0.0, start_rate_per_s) * limits.max_dwell_s)
    return min(limits.max_prefetch, max(limits.min_prefetch, startable))


def size_for(
    rtt_s: float,
    rate_per_s: float,
    handler_s: float | None,
    workers: int,
    limits: PipelineLimits = DEFAULT_LIMITS,
) -> PipelineSize:
    """The steady state for a receive round trip of ``rtt_s``, a wanted rate of ``rate_per_s``
    and handlers of ``handler_s`` each (None: unknown) on ``workers`` slots: the rule in the
    module docstring, which the table tests spell out. The handlers cap the rate: a pipeline
    sized beyond what they can start only hides messages. What they can start (``workers ÷
    handler_s``, or the rate when the handler time is unknown) bounds the prefetch."""
    _require(rtt_s >= 0 and math.isfinite(rtt_s), f"rtt_s must be >= 0, got {rtt_s}")
    _require(rate_per_s >= 0 and math.isfinite(rate_per_s), f"rate must be >= 0: {rate_per_s}")
    _require(handler_s is None or handler_s >= 0, f"handler_s must be >= 0, got {handler_s}")
    _require(workers >= 1, f"workers must be at least 1, got {workers}")
    handler_rate = _handler_rate(handler_s, workers)
    rate = min(rate_per_s, handler_rate)
    start = handler_rate if math.isfinite(handler_rate) else rate
    cap = (
        limits.fixed_prefetch if limits.fixed_prefetch is not None else prefetch_cap(limits, start)
    )
    if limits.fixed_pollers is not None:
        pollers = limits.fixed_pollers
    else:
        pollers = min(_need(limits, rate, rtt_s, limits.batch), _room(limits, cap, workers))
    if limits.fixed_prefetch is not None:
        prefetch = limits.fixed_prefetch
    else:
        # Work in hand for the rate these pollers can carry, not for one they cannot reach.
        carried = pollers * limits.batch / rtt_s if rtt_s > 0 else math.inf
        prefetch = _prefetch_for(limits, pollers, min(rate, carried), rtt_s, cap)
    return PipelineSize(pollers, prefetch)


class PipelineSizer:
    """The sizing rule over time: fed observations, asked for plans (all times are arguments).

    Call :meth:`observe_receive` for every ReceiveMessage answer, :meth:`observe_completions`
    as handlers finish, :meth:`observe_ack` for every delete batch answer, and :meth:`plan`
    on a timer (every 50–100 ms is plenty; nothing in it depends on how often).
    """

    def __init__(
        self, limits: PipelineLimits = DEFAULT_LIMITS, tuning: SizerTuning = DEFAULT_TUNING
    ) -> None:
        self.limits = limits
        self.tuning = tuning
        self._now: float | None = None
        self._since = 0.0  # the first time seen: rates are not divided by time before it
        self._rtt = _Quantile(tuning.rtt_samples, tuning.rtt_quantile)
        self._ack_rtt = _Quantile(tuning.rtt_samples, tuning.rtt_quantile)
        self._received = _Rate(tuning.rate_window_s, tuning.long_rate_window_s)
        self._completed = _Rate(tuning.rate_window_s, tuning.long_rate_window_s)
        self._fill: float | None = None
        self._busy: float | None = None
        self._busy_at = 0.0
        self._pollers = limits.fixed_pollers or limits.min_pollers
        self._prefetch = (
            limits.fixed_prefetch if limits.fixed_prefetch is not None else limits.min_prefetch
        )
        self._acks = 1
        self._below_since: float | None = None
        self._probe = _Probe()

    # --- observations -----------------------------------------------------------------------

    def observe_receive(
        self,
        now_s: float,
        rtt_s: float,
        count: int,
        wait_s: float = 0.0,
        asked: int | None = None,
    ) -> None:
        """A ReceiveMessage answered after ``rtt_s`` with ``count`` messages, having asked for
        ``asked`` (default: a batch) with a long-poll wait of ``wait_s``.

        An empty answer to a long poll waited for messages, not for the network: it says the
        queue is drained but is no round-trip sample (an empty answer well before its wait is).
        A non-empty one is a sample, even one that waited on a sparse queue: pollers never grow
        by the formula, so such a sample can at most slow their shrinking where little arrives.
        """
        now = self._tick(now_s)
        count = max(0, count)
        want = max(1, self.limits.batch if asked is None else asked)
        self._received.add(now, count)
        self._probe.count(now, count)
        fill = min(1.0, count / want)
        self._fill = fill if self._fill is None else _mix(self._fill, fill, self.tuning.fill_weight)
        wait = wait_s if math.isfinite(wait_s) and wait_s > 0 else 0.0
        if math.isfinite(rtt_s) and rtt_s >= 0 and (count > 0 or rtt_s < wait / 2 or wait == 0):
            self._rtt.add(rtt_s)

    def observe_completions(self, now_s: float, count: int) -> None:
        """``count`` handlers finished (whatever their outcome: a slot came free)."""
        now = self._tick(now_s)
        if count > 0:
            self._completed.add(now, count)

    def observe_ack(self, now_s: float, rtt_s: float) -> None:
        """A delete (or visibility) batch answered after ``rtt_s``: sizes the acks in flight,
        and stands in for the receive round trip until a receive has given one."""
        self._tick(now_s)
        if math.isfinite(rtt_s) and rtt_s >= 0:
            self._ack_rtt.add(rtt_s)

    # --- estimates --------------------------------------------------------------------------

    @property
    def rtt_s(self) -> float | None:
        """The receive round trip sized for (p90), else the ack round trip, else None."""
        rtt = self._rtt.value()
        return rtt if rtt is not None else self._ack_rtt.value()

    def completion_rate(self, now_s: float) -> float:
        """Handlers finished per second over the last rate window."""
        return self._rate(self._completed, self._tick(now_s))

    def received_rate(self, now_s: float) -> float:
        """Messages received per second over the last rate window."""
        return self._rate(self._received, self._tick(now_s))

    # --- the plan ---------------------------------------------------------------------------

    def plan(
        self,
        now_s: float,
        *,
        workers: int,
        running: int,
        ready: int,
        handler_s: float | None = None,
        pollers_waiting: int | None = None,
    ) -> PipelinePlan:
        """What to run now, for ``workers`` handlers that run at once, of which ``running`` hold
        a message, with ``ready`` messages waiting for one, handlers taking ``handler_s`` on
        average (None: not known yet) and ``pollers_waiting`` pollers waiting for room now
        (None: not known).

        ``workers ÷ handler_s`` is taken as what the handlers can start a second, so pass the
        handlers that really run at once (for ``def`` handlers, the worker processes).

        The handlers are the bottleneck when pollers wait for the room they free. Without
        ``pollers_waiting`` the sign is messages waiting for a slot, which receives landing
        together also show for a moment: pass it when the engine's credits know it.
        """
        _require(workers >= 1, f"workers must be at least 1, got {workers}")
        lim, tun = self.limits, self.tuning
        now = self._tick(now_s)
        if pollers_waiting is not None:
            self._mark_busy(now, pollers_waiting > 0)
        else:
            self._mark_busy(now, ready > 0 or running >= workers)
        rtt = self.rtt_s
        completed = self._rate(self._completed, now)
        received = self._rate(self._received, now)
        handler_rate = _handler_rate(handler_s, workers)
        # Partial batches carry fewer messages per round trip: more receives for the same rate
        # (at most twice as many: below half full the queue is drained, not the pipeline).
        per_receive = lim.batch * max(0.5, 1.0 if self._fill is None else self._fill)
        # Idle slots start what arrives at once: what the handlers can start is what they
        # finish, or what their slots allow when that is more.
        start = max(completed, handler_rate) if math.isfinite(handler_rate) else completed
        cap = lim.fixed_prefetch if lim.fixed_prefetch is not None else prefetch_cap(lim, start)
        top = min(lim.max_pollers, _room(lim, cap, workers))

        if self._fill is None:
            reason, rate, target = Reason.WARMING, 0.0, self._pollers
        elif self._busy is not None and self._busy >= 0.5:
            # Pollers wait for room: they are enough; no more than the formula says are needed.
            reason, rate = Reason.HANDLERS, min(completed, handler_rate)
            target = min(self._pollers, self._need(rate, rtt, per_receive))
            self._probe.stop()
        elif self._fill < tun.drained_fill or received <= 0:
            # Partial batches, or nothing at all (long polls waiting): the queue is drained, and
            # more pollers would not bring more (nor is a long poll's wait a round trip to size
            # for): no more than what arrives needs.
            reason = Reason.DRAINED if received > 0 else Reason.IDLE
            rate = received
            target = min(self._pollers, self._need(rate, rtt, per_receive))
            self._probe.stop()
        else:
            rate = received
            ceiling = top
            if math.isfinite(handler_rate):
                ceiling = min(ceiling, self._need(handler_rate, rtt, per_receive))
            reason, target = self._step_probe(now, rtt, max(ceiling, lim.min_pollers))

        if lim.fixed_pollers is not None:
            pollers = lim.fixed_pollers
        else:
            pollers = self._settle(now, max(lim.min_pollers, min(target, top)))
            pollers = self._pollers = max(lim.min_pollers, min(pollers, top))

        if lim.fixed_prefetch is not None:
            prefetch = lim.fixed_prefetch
        else:
            wanted = _prefetch_for(lim, pollers, max(completed, received), rtt, cap)
            prefetch = self._prefetch = min(cap, _hold(self._prefetch, wanted, tun.deadband))

        ack_rtt = self._ack_rtt.value()
        ack_rtt = ack_rtt if ack_rtt is not None else rtt
        acks = 1
        if ack_rtt is not None:
            acks = _ceil(lim.headroom * completed * ack_rtt / lim.batch)
        acks = self._acks = max(1, min(lim.max_ack_batches, _hold(self._acks, acks, tun.deadband)))

        if lim.fixed_pollers is not None and lim.fixed_prefetch is not None:
            reason = Reason.FIXED
        at_least = min(lim.batch, max(1, prefetch))
        return PipelinePlan(
            pollers, prefetch, workers + prefetch, at_least, acks, reason, rtt, rate
        )

    # --- internals --------------------------------------------------------------------------

    def _tick(self, now_s: float) -> float:
        """Time never runs backwards here: a non-finite or earlier time counts as the latest
        seen, so a caller's glitch cannot make a rate negative."""
        last = self._now
        if last is None:
            now = now_s if math.isfinite(now_s) else 0.0
            self._since = now
        else:
            now = now_s if math.isfinite(now_s) and now_s > last else last
        self._now = now
        return now

    def _rate(self, rate: _Rate, now: float) -> float:
        tun = self.tuning
        window = rate.short
        if window.total(now) < tun.min_rate_messages:
            window = rate.long
        span = max(tun.min_rate_span_s, min(window.window_s, now - self._since))
        return window.total(now) / span

    def _mark_busy(self, now: float, busy: bool) -> None:
        x = 1.0 if busy else 0.0
        if self._busy is None:
            self._busy = x
        else:
            weight = -math.expm1(-(now - self._busy_at) / self.tuning.busy_tau_s)
            self._busy = _mix(self._busy, x, weight)
        self._busy_at = now

    def _need(self, rate: float, rtt: float | None, per_receive: float) -> int:
        if rtt is None:
            return self._pollers
        return _need(self.limits, rate, rtt, per_receive)

    def _settle(self, now: float, target: int) -> int:
        """Take a probe's step at once (a starved handler is lost throughput); shrink only to a
        target clearly lower (the dead band) and lower for a while (the hold), a quarter at a
        time: so a noisy estimate does not move the pollers down and up again."""
        tun, current = self.tuning, self._pollers
        if target > current:
            self._below_since = None
            return target
        if target >= current * (1 - tun.deadband):
            self._below_since = None
            return current
        if self._below_since is None:
            self._below_since = now
            return current
        if now - self._below_since < tun.shrink_hold_s:
            return current
        self._below_since = now
        return max(target, math.floor(current * tun.shrink))

    def _step_probe(self, now: float, rtt: float | None, ceiling: int) -> tuple[Reason, int]:
        """Receive-bound: measure the delivered rate at the current pollers, step up, measure
        again; keep stepping while it pays."""
        tun, probe, current = self.tuning, self._probe, self._pollers
        if now < probe.hold_until:
            return Reason.HELD, current
        if ceiling <= current:
            probe.stop()
            return Reason.CAPPED, current
        if probe.started is None:
            probe.start(now, rtt)
            return Reason.PROBING, current
        settle = max(tun.min_settle_s, tun.settle_rtts * (rtt or 0.0))
        if now - probe.started < settle:
            return Reason.PROBING, current
        span = now - probe.counting_from
        rate = probe.messages / span if span > 0 else 0.0
        base = probe.base
        if base is not None and rate < base * (1 + tun.min_gain):
            # The step did not pay: keep what the gain it did bring was worth, no more.
            keep = _ceil(probe.before * max(1.0, rate / base)) if base > 0 else probe.before
            self._pollers = max(probe.before, min(keep, current))
            probe.stop()
            probe.linear = False  # probing again from here later: the bottleneck is near
            probe.hold_until = now + tun.reprobe_s
            return Reason.HELD, self._pollers
        if rate <= 0:
            probe.stop()
            probe.start(now, rtt)  # nothing came back yet: measure again
            return Reason.PROBING, current
        if base is not None and probe.before > 0:
            promised = current / probe.before - 1  # the gain a step in proportion brings
            if rate < base * (1 + tun.linear_gain * promised):
                probe.linear = False  # near the bottleneck: smaller steps from here on
        growth = tun.fast_growth if probe.linear else tun.growth
        step = min(ceiling, max(current + 1, _ceil(current * growth)))
        probe.before, probe.base = current, rate
        probe.start(now, rtt)
        return Reason.PROBING, step


@dataclass(slots=True)
class _Probe:
    """One measuring epoch of the receive-bound probe."""

    started: float | None = None
    counting_from: float = math.inf  # receives answered before this were asked before the step
    messages: int = 0
    base: float | None = None  # delivered rate before the step (None: no step yet)
    before: int = 0  # pollers before the step
    hold_until: float = -math.inf
    #: every step of this climb paid nearly in proportion (so far): steps are fast_growth
    linear: bool = True

    def start(self, now: float, rtt: float | None) -> None:
        self.started, self.counting_from, self.messages = now, now + (rtt or 0.0), 0

    def stop(self) -> None:
        self.started, self.counting_from, self.base = None, math.inf, None
        self.linear = True  # the next climb starts with fast steps again

    def count(self, now: float, messages: int) -> None:
        if now >= self.counting_from:
            self.messages += messages


class _Rate:
    """The same counts over a short and a long window."""

    __slots__ = ("long", "short")

    def __init__(self, short_s: float, long_s: float) -> None:
        self.short = _Window(short_s)
        self.long = _Window(max(short_s, long_s))

    def add(self, now: float, count: int) -> None:
        self.short.add(now, count)
        self.long.add(now, count)


@dataclass(slots=True)
class _Window:
    """Counts over the last ``window_s`` seconds (times never decrease)."""

    window_s: float
    _events: deque[tuple[float, int]] = field(default_factory=deque)
    _sum: int = 0

    def add(self, now: float, count: int) -> None:
        self._events.append((now, count))
        self._sum += count

    def total(self, now: float) -> int:
        events, horizon = self._events, now - self.window_s
        while events and events[0][0] <= horizon:
            self._sum -= events.popleft()[1]
        return self._sum


class _Quantile:
    """A quantile of the last ``size`` samples: robust to a few outliers, unlike a mean. Until
    there are enough samples for the quantile to be other than the largest, the median: the
    first receive also paid the connection's handshakes, and is no tail."""

    __slots__ = ("_cached", "_q", "_samples")

    def __init__(self, size: int, q: float) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._q = q
        self._cached: float | None = None

    def add(self, sample: float) -> None:
        self._samples.append(sample)
        self._cached = None

    def value(self) -> float | None:
        if self._cached is None and self._samples:
            ordered = sorted(self._samples)
            n = len(ordered)
            q = self._q if n * (1 - self._q) >= 1 else 0.5
            self._cached = ordered[max(0, math.ceil(q * n) - 1)]
        return self._cached


def _need(limits: PipelineLimits, rate: float, rtt_s: float, per_receive: float) -> int:
    """Little's law with headroom: receives in flight to carry ``rate`` through ``rtt_s``."""
    wanted = _ceil(limits.headroom * rate * rtt_s / max(1.0, per_receive))
    return max(limits.min_pollers, min(limits.max_pollers, wanted))


def _room(limits: PipelineLimits, cap: int, workers: int) -> int:
    """Pollers beyond the batches the room holds would only wait for room."""
    return max(limits.min_pollers, (cap + workers) // limits.batch)


def _prefetch_for(
    limits: PipelineLimits, pollers: int, rate: float, rtt_s: float | None, cap: int
) -> int:
    batch = limits.batch
    spare = batch * _ceil(rate * ((rtt_s or 0.0) + limits.slack_s) / batch)
    return max(limits.min_prefetch, min(cap, pollers * batch + spare))


def _handler_rate(handler_s: float | None, workers: int) -> float:
    if handler_s is None or not handler_s > 0 or not math.isfinite(handler_s):
        return math.inf
    return workers / handler_s


def _hold(current: int, wanted: int, deadband: float) -> int:
    """Up at once, down only past the dead band."""
    return wanted if wanted >= current or wanted < current * (1 - deadband) else current


def _mix(mean: float, sample: float, weight: float) -> float:
    return mean + weight * (sample - mean)


def _ceil(x: float) -> int:
    # 1.5 × 20,000 × 0.015 / 10 is 45.000000000000007 in floating point: not 46 receives.
    return math.ceil(round(x, 9)) if math.isfinite(x) else _BEYOND if x > 0 else 0


def _floor(x: float) -> int:
    return math.floor(round(x, 9)) if math.isfinite(x) else _BEYOND if x > 0 else 0


_BEYOND = 1 << 62  # "more than any bound": every caller clamps it


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
