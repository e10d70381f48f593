"""Prometheus text format 0.0.4: exact text for small cases, and a parse-back of a full scrape."""

from __future__ import annotations

import re

import pytest

from goraxfast.core.health import QueueMetrics, evaluate
from goraxfast.ops.prometheus import (
    HistogramSample,
    MetricFamily,
    Sample,
    format_value,
    queue_families,
    render,
)


def test_gauge_renders_help_type_and_labelled_samples() -> None:
    family = MetricFamily("jobs", "gauge", "Jobs.", [Sample(3, {"state": "a"}), Sample(1.5)])
    assert render([family]) == (
        '# HELP jobs Jobs.\n# TYPE jobs gauge\njobs{state="a"} 3\njobs 1.5\n'
    )


def test_counter_is_exposed_with_total_suffix() -> None:
    family = MetricFamily("goraxfast_messages", "counter", "Done.", [Sample(7)])
    assert render([family]) == (
        "# HELP goraxfast_messages_total Done.\n"
        "# TYPE goraxfast_messages_total counter\n"
        "goraxfast_messages_total 7\n"
    )


def test_counter_already_named_total_is_not_suffixed_twice() -> None:
    family = MetricFamily("x_total", "counter", "X.", [Sample(1)])
    assert "x_total_total" not in render([family])


def test_histogram_renders_cumulative_buckets_inf_sum_and_count() -> None:
    h = HistogramSample(bounds=[0.1, 1.0], counts=[2, 5], sum=3.25, count=6, labels={"w": "0"})
    assert render([MetricFamily("lat_seconds", "histogram", "Latency.", [h])]) == (
        "# HELP lat_seconds Latency.\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{w="0",le="0.1"} 2\n'
        'lat_seconds_bucket{w="0",le="1.0"} 5\n'
        'lat_seconds_bucket{w="0",le="+Inf"} 6\n'
        'lat_seconds_sum{w="0"} 3.25\n'
        'lat_seconds_count{w="0"} 6\n'
    )


def test_histogram_given_an_inf_bound_renders_one_inf_bucket() -> None:
    h = HistogramSample(bounds=[1.0, float("inf")], counts=[1, 2], sum=9.0, count=2)
    text = render([MetricFamily("h", "histogram", "H.", [h])])
    assert text.count('le="+Inf"') == 1


def test_label_values_escape_backslash_quote_and_newline() -> None:
    family = MetricFamily("m", "gauge", "M.", [Sample(1, {"path": 'a\\b"c\nd'})])
    assert 'm{path="a\\\\b\\"c\\nd"} 1' in render([family])


def test_help_escapes_backslash_and_newline() -> None:
    family = MetricFamily("m", "gauge", "line one\nback\\slash")
    assert render([family]).splitlines()[0] == "# HELP m line one\\nback\\\\slash"


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (True, "1"), (0.5, "0.5"), (float("inf"), "+Inf"), (float("-inf"), "-Inf")],
)
def test_values_use_prometheus_spelling(value: float, text: str) -> None:
    assert format_value(value) == text


def test_nan_is_spelled_nan() -> None:
    assert format_value(float("nan")) == "NaN"


@pytest.mark.parametrize(
    ("build", "complaint"),
    [
        (lambda: MetricFamily("bad-name", "gauge", ""), "invalid metric name"),
        (lambda: MetricFamily("m", "gauge", "", [Sample(1, {"0x": "v"})]), "invalid label"),
        (
            lambda: MetricFamily("h", "histogram", "", [HistogramSample([1, 2], [1], 0, 1)]),
            "2 bucket bounds but 1 counts",
        ),
        (
            lambda: MetricFamily("h", "histogram", "", [HistogramSample([1], [5], 0, 2)]),
            "cumulative",
        ),
        (lambda: MetricFamily("g", "gauge", "", [HistogramSample([], [], 0, 0)]), "cannot hold"),
    ],
)
def test_malformed_families_are_refused_with_the_reason(build, complaint: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=complaint):
        build()


def test_no_families_render_as_empty_body() -> None:
    assert render([]) == ""


_SAMPLE_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$'
)


def parse(text: str) -> dict[str, float]:
    """A strict little parser: every line is a comment or a well-formed sample."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE_LINE.match(line)
        assert match, f"malformed line: {line!r}"
        values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def test_queue_scrape_parses_back_to_the_collected_numbers() -> None:
    snapshot = QueueMetrics(visible=4, in_flight=2, delayed=1, dlq_depth=3, updated_at=1700.5)
    status = evaluate(snapshot, now=1701.0, interval_s=30, max_depth=0)
    values = parse(render(queue_families(snapshot, status)))
    assert values == {
        'goraxfast_queue_messages{state="visible"}': 4,
        'goraxfast_queue_messages{state="in_flight"}': 2,
        'goraxfast_queue_messages{state="delayed"}': 1,
        "goraxfast_queue_depth": 7,
        "goraxfast_dlq_depth": 3,
        "goraxfast_queue_metrics_updated_timestamp_seconds": 1700.5,
        "goraxfast_healthy": 0,
    }


def test_without_metrics_only_health_is_exported() -> None:
    status = evaluate(None, now=0.0, interval_s=30, max_depth=0)
    assert parse(render(queue_families(None, status))) == {"goraxfast_healthy": 0}


def test_without_dlq_no_dlq_depth_is_exported() -> None:
    snapshot = QueueMetrics(1, 0, 0, dlq_depth=None, updated_at=10.0)
    status = evaluate(snapshot, now=10.0, interval_s=30, max_depth=0)
    values = parse(render(queue_families(snapshot, status)))
    assert "goraxfast_dlq_depth" not in values
    assert values["goraxfast_healthy"] == 1
