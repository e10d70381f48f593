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
from dataclasses import dataclass
from enum import StrEnum

from goraxfast.core.estimates import Quantile, Rate
from goraxfast.core.pipeline_limits import (
    DEFAULT_LIMITS,
    DEFAULT_TUNING,
    PipelineLimits,
    PipelineSize,
    SizerTuning,
    ceil_count,
    handler_start_rate,
    held_bound,
    pollers_for,
    pollers_room,
    prefetch_cap,
    prefetch_for,
    require,
    size_for,
)

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
        self._rtt = Quantile(tuning.rtt_samples, tuning.rtt_quantile)
        self._ack_rtt = Quantile(tuning.rtt_samples, tuning.rtt_quantile)
        self._received = Rate(tuning.rate_window_s, tuning.long_rate_window_s)
        self._completed = Rate(tuning.rate_window_s, tuning.long_rate_window_s)
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
        require(workers >= 1, f"workers must be at least 1, got {workers}")
        lim, tun = self.limits, self.tuning
        now = self._tick(now_s)
        if pollers_waiting is not None:
            self._mark_busy(now, pollers_waiting > 0)
        else:
            self._mark_busy(now, ready > 0 or running >= workers)
        rtt = self.rtt_s
        completed = self._rate(self._completed, now)
        received = self._rate(self._received, now)
        handler_rate = handler_start_rate(handler_s, workers)
        # Partial batches carry fewer messages per round trip: more receives for the same rate
        # (at most twice as many: below half full the queue is drained, not the pipeline).
        per_receive = lim.batch * max(0.5, 1.0 if self._fill is None else self._fill)
        # Idle slots start what arrives at once: what the handlers can start is what they
        # finish, or what their slots allow when that is more.
        start = max(completed, handler_rate) if math.isfinite(handler_rate) else completed
        cap = lim.fixed_prefetch if lim.fixed_prefetch is not None else prefetch_cap(lim, start)
        top = min(lim.max_pollers, pollers_room(lim, cap, workers))

        if self._fill is None:
            reason, rate, target = Reason.WARMING, 0.0, self._pollers
            if lim.fixed_pollers is None:
                # The first answers already measure the minimum's rate: the probe's first
                # epoch starts with them, not a tick later (restarted every tick until they
                # come, so a long wait for the first message is not in it).
                self._probe.start(now, rtt)
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
            wanted = prefetch_for(lim, pollers, max(completed, received), rtt, cap)
            prefetch = self._prefetch = min(cap, _hold(self._prefetch, wanted, tun.deadband))

        ack_rtt = self._ack_rtt.value()
        ack_rtt = ack_rtt if ack_rtt is not None else rtt
        acks = 1
        if ack_rtt is not None:
            acks = ceil_count(lim.headroom * completed * ack_rtt / lim.batch)
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

    def _rate(self, rate: Rate, now: float) -> float:
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
        return pollers_for(self.limits, rate, rtt, per_receive)

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
            keep = ceil_count(probe.before * max(1.0, rate / base)) if base > 0 else probe.before
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
        step = min(ceiling, max(current + 1, ceil_count(current * growth)))
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


def _hold(current: int, wanted: int, deadband: float) -> int:
    """Up at once, down only past the dead band."""
    return wanted if wanted >= current or wanted < current * (1 - deadband) else current


def _mix(mean: float, sample: float, weight: float) -> float:
    return mean + weight * (sample - mean)
