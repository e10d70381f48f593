"""The bounds and tuning of the receive pipeline's sizing, and its steady-state rule.

:mod:`goraxfast.core.pipeline` explains the rule and drives it over time; this module holds what
that rule is parameterised by (:class:`PipelineLimits`, what an operator states and the README
quotes; :class:`SizerTuning`, the sizer's named smoothing and stepping constants), the bounds
that follow from them (:func:`held_bound`, :func:`prefetch_cap`), the steady state the table
tests read as a spec (:func:`size_for`), and the arithmetic both share (Little's law with
headroom, the room's batches, the work held in hand). It exists apart so that the settings and
the spec can be read, validated and tested without the time-dependent sizer; nothing here reads
a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from goraxfast.core.sqs_model import SQS_MAX_BATCH

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TUNING",
    "PipelineLimits",
    "PipelineSize",
    "SizerTuning",
    "ceil_count",
    "handler_start_rate",
    "held_bound",
    "pollers_for",
    "pollers_room",
    "prefetch_cap",
    "prefetch_for",
    "require",
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
    """How :class:`~goraxfast.core.pipeline.PipelineSizer` smooths and steps: not operator settings, but named so that a
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
    #: ~0.3 s at 40 ms; a burst on an idle engine must not wait seconds for the pipeline).
    #: 0.6, not more: a step is judged over one or two answers per poller, and new pollers'
    #: first answers land late (a connection to open), so a step that paid in full measures
    #: 2.5-3.5x at 15 ms on a real server; 0.75 (3.25x) sent such steps down to doubling ...
    fast_growth: float = 4.0
    linear_gain: float = 0.6
    #: ... then double per step, once a step paid less than that (the bottleneck is near) ...
    growth: float = 2.0
    #: ... while each step raises the delivered rate by at least a fifth (a doubling that pays
    #: nearly doubles it; one that does not means the bottleneck is elsewhere) ...
    min_gain: float = 0.2
    #: ... judged over at least this many round trips, and this long, after the step (the
    #: first round trip's answers were asked before it; the rest are counted). Two, not three:
    #: with the p90 round trip a little over 16 ms at 15 ms, three took two plan ticks a step,
    #: and a 20,000-message burst at +15 ms spent a third of its drain ramping ...
    settle_rtts: float = 2.0
    min_settle_s: float = 0.025
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
    require(rtt_s >= 0 and math.isfinite(rtt_s), f"rtt_s must be >= 0, got {rtt_s}")
    require(rate_per_s >= 0 and math.isfinite(rate_per_s), f"rate must be >= 0: {rate_per_s}")
    require(handler_s is None or handler_s >= 0, f"handler_s must be >= 0, got {handler_s}")
    require(workers >= 1, f"workers must be at least 1, got {workers}")
    handler_rate = handler_start_rate(handler_s, workers)
    rate = min(rate_per_s, handler_rate)
    start = handler_rate if math.isfinite(handler_rate) else rate
    cap = (
        limits.fixed_prefetch if limits.fixed_prefetch is not None else prefetch_cap(limits, start)
    )
    if limits.fixed_pollers is not None:
        pollers = limits.fixed_pollers
    else:
        pollers = min(
            pollers_for(limits, rate, rtt_s, limits.batch), pollers_room(limits, cap, workers)
        )
    if limits.fixed_prefetch is not None:
        prefetch = limits.fixed_prefetch
    else:
        # Work in hand for the rate these pollers can carry, not for one they cannot reach.
        carried = pollers * limits.batch / rtt_s if rtt_s > 0 else math.inf
        prefetch = prefetch_for(limits, pollers, min(rate, carried), rtt_s, cap)
    return PipelineSize(pollers, prefetch)


def pollers_for(limits: PipelineLimits, rate: float, rtt_s: float, per_receive: float) -> int:
    """Little's law with headroom: receives in flight to carry ``rate`` through ``rtt_s``."""
    wanted = ceil_count(limits.headroom * rate * rtt_s / max(1.0, per_receive))
    return max(limits.min_pollers, min(limits.max_pollers, wanted))


def pollers_room(limits: PipelineLimits, cap: int, workers: int) -> int:
    """Pollers beyond the batches the room holds would only wait for room."""
    return max(limits.min_pollers, (cap + workers) // limits.batch)


def prefetch_for(
    limits: PipelineLimits, pollers: int, rate: float, rtt_s: float | None, cap: int
) -> int:
    """Room for every receive in flight to land whole, plus ``rate`` × (round trip + slack) of
    work in hand in whole batches, within ``[min_prefetch, cap]``."""
    batch = limits.batch
    spare = batch * ceil_count(rate * ((rtt_s or 0.0) + limits.slack_s) / batch)
    return max(limits.min_prefetch, min(cap, pollers * batch + spare))


def handler_start_rate(handler_s: float | None, workers: int) -> float:
    """What ``workers`` slots of ``handler_s`` each can start a second (inf: not known)."""
    if handler_s is None or not handler_s > 0 or not math.isfinite(handler_s):
        return math.inf
    return workers / handler_s


def ceil_count(x: float) -> int:
    """``ceil`` for counts: rounding noise does not add one, and inf is "beyond any bound"."""
    # 1.5 × 20,000 × 0.015 / 10 is 45.000000000000007 in floating point: not 46 receives.
    return math.ceil(round(x, 9)) if math.isfinite(x) else _BEYOND if x > 0 else 0


def _floor(x: float) -> int:
    return math.floor(round(x, 9)) if math.isfinite(x) else _BEYOND if x > 0 else 0


_BEYOND = 1 << 62  # "more than any bound": every caller clamps it


def require(ok: bool, message: str) -> None:
    """A ValueError with ``message`` unless ``ok``: an argument check."""
    if not ok:
        raise ValueError(message)
