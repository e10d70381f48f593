"""Prometheus text exposition format 0.0.4, rendered from plain data: no client library, no registry.

The engine sums per-worker counters from shared memory on demand, so a registry of live metric
objects would only be a second copy of numbers it already has. Callers build
:class:`MetricFamily` values at scrape time and :func:`render` turns them into text. Queue depth
is exported so autoscalers (KEDA, HPA custom metrics) can read it from ``/metrics``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from goraxfast.core.health import HealthStatus, QueueMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a counter or gauge, distinguished from its siblings by its labels."""

    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistogramSample:
    """One histogram: ``counts[i]`` observations were <= ``bounds[i]`` (cumulative, as exposed).

    ``+Inf`` need not be among the bounds: its bucket is ``count``.
    """

    bounds: Sequence[float]
    counts: Sequence[int]
    sum: float
    count: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric name with its type and help, and all its samples. Counters get ``_total``."""

    name: str
    kind: Kind
    help: str
    samples: Sequence[Sample | HistogramSample] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for sample in self.samples:
            is_hist = isinstance(sample, HistogramSample)
            if is_hist != (self.kind == "histogram"):
                raise ValueError(f"{self.name}: a {self.kind} cannot hold {type(sample).__name__}")
            for label in sample.labels:
                if not _LABEL.match(label) or label.startswith("__"):
                    raise ValueError(f"{self.name}: invalid label name {label!r}")
                if is_hist and label == "le":
                    raise ValueError(f"{self.name}: 'le' is reserved for histogram buckets")
            if isinstance(sample, HistogramSample):
                _check_histogram(self.name, sample)

    @property
    def exposed_name(self) -> str:
        if self.kind == "counter" and not self.name.endswith("_total"):
            return self.name + "_total"
        return self.name


def _check_histogram(name: str, h: HistogramSample) -> None:
    if len(h.bounds) != len(h.counts):
        raise ValueError(f"{name}: {len(h.bounds)} bucket bounds but {len(h.counts)} counts")
    if any(b >= a for a, b in zip(h.bounds[1:], h.bounds, strict=False)):
        raise ValueError(f"{name}: bucket bounds must increase: {list(h.bounds)}")
    cumulative = [*h.counts, h.count]
    if any(b > a for a, b in zip(cumulative[1:], cumulative, strict=False)):
        raise ValueError(f"{name}: counts must be cumulative and <= count: {cumulative}")


def format_value(value: float) -> str:
    """Go's float spelling as Prometheus parses it: ``+Inf``, ``-Inf``, ``NaN``; ints stay ints."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(labels: Mapping[str, str], extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels.items(), *([extra] if extra else [])]
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(str(v))}"' for k, v in pairs) + "}"


def _family_lines(family: MetricFamily) -> Iterable[str]:
    name = family.exposed_name
    yield f"# HELP {name} {_escape_help(family.help)}"
    yield f"# TYPE {name} {family.kind}"
    for sample in family.samples:
        if isinstance(sample, HistogramSample):
            for bound, count in zip(sample.bounds, sample.counts, strict=True):
                if math.isinf(bound):
                    continue  # rendered once below as the +Inf bucket
                le = ("le", format_value(float(bound)))
                yield f"{name}_bucket{_labels(sample.labels, le)} {count}"
            yield f"{name}_bucket{_labels(sample.labels, ('le', '+Inf'))} {sample.count}"
            yield f"{name}_sum{_labels(sample.labels)} {format_value(sample.sum)}"
            yield f"{name}_count{_labels(sample.labels)} {sample.count}"
        else:
            yield f"{name}{_labels(sample.labels)} {format_value(sample.value)}"


def render(families: Iterable[MetricFamily]) -> str:
    """The whole scrape body; each family's HELP and TYPE precede its samples, as 0.0.4 wants."""
    lines = [line for family in families for line in _family_lines(family)]
    return "\n".join(lines) + "\n" if lines else ""


def queue_families(metrics: QueueMetrics | None, health: HealthStatus) -> list[MetricFamily]:
    """Queue gauges and the health verdict.

    Without metrics only ``goraxfast_healthy`` is exported: an absent depth is honest, a 0 would
    tell an autoscaler the queue is drained.
    """
    families: list[MetricFamily] = []
    if metrics is not None:
        families += [
            MetricFamily(
                "goraxfast_queue_messages",
                "gauge",
                "Messages in the main queue by state (SQS approximate counters).",
                [
                    Sample(metrics.visible, {"state": "visible"}),
                    Sample(metrics.in_flight, {"state": "in_flight"}),
                    Sample(metrics.delayed, {"state": "delayed"}),
                ],
            ),
            MetricFamily(
                "goraxfast_queue_depth",
                "gauge",
                "Messages in the main queue: visible + in flight + delayed.",
                [Sample(metrics.total)],
            ),
        ]
        if metrics.dlq_depth is not None:
            families.append(
                MetricFamily(
                    "goraxfast_dlq_depth",
                    "gauge",
                    "Messages in the dead-letter queue.",
                    [Sample(metrics.dlq_depth)],
                )
            )
        families.append(
            MetricFamily(
                "goraxfast_queue_metrics_updated_timestamp_seconds",
                "gauge",
                "When the queue metrics were last collected (Unix time).",
                [Sample(metrics.updated_at)],
            )
        )
    families.append(
        MetricFamily(
            "goraxfast_healthy",
            "gauge",
            "1 when /health reports healthy, else 0.",
            [Sample(1 if health.healthy else 0)],
        )
    )
    return families
