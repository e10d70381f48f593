"""The health rules of the README's "Health and metrics", table-driven, plus the core's purity."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from goraxfast.core import health
from goraxfast.core.health import STALE_SLACK_S, QueueMetrics, evaluate, stale_after_s

NOW = 1_000_000.0
INTERVAL = 30.0


def metrics(
    visible: int = 0,
    in_flight: int = 0,
    delayed: int = 0,
    dlq: int | None = 0,
    age_s: float = 0.0,
) -> QueueMetrics:
    return QueueMetrics(visible, in_flight, delayed, dlq, updated_at=NOW - age_s)


CASES = [
    ("fresh empty queue", metrics(), 0, ()),
    ("no DLQ configured", metrics(dlq=None), 0, ()),
    ("no metrics yet", None, 0, ("Metrics are stale",)),
    ("DLQ holds messages", metrics(dlq=3), 0, ("DLQ contains 3 messages",)),
    ("depth over threshold", metrics(5, 4, 2), 10, ("Queue depth 11 exceeds threshold 10",)),
    ("depth equal to threshold", metrics(5, 5), 10, ()),
    ("threshold 0 disables the depth rule", metrics(10_000), 0, ()),
    ("one missed collection tolerated", metrics(age_s=2 * INTERVAL), 0, ()),
    (
        "stale after two intervals plus slack",
        metrics(age_s=2 * INTERVAL + STALE_SLACK_S + 0.001),
        0,
        ("Metrics are stale",),
    ),
    (
        "all three, in gorax's order",
        metrics(visible=20, dlq=1, age_s=3600),
        5,
        ("DLQ contains 1 messages", "Queue depth 20 exceeds threshold 5", "Metrics are stale"),
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "max_depth", "issues"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_issues_follow_the_spec_rules(
    snapshot: QueueMetrics | None, max_depth: int, issues: tuple[str, ...]
) -> None:
    status = evaluate(snapshot, now=NOW, interval_s=INTERVAL, max_depth=max_depth)
    assert status.issues == issues


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_healthy_is_exactly_no_issues(
    case: tuple[str, QueueMetrics | None, int, tuple[str, ...]],
) -> None:
    _, snapshot, max_depth, _ = case
    status = evaluate(snapshot, now=NOW, interval_s=INTERVAL, max_depth=max_depth)
    assert status.healthy == (not status.issues)


def test_staleness_bound_scales_with_the_interval() -> None:
    assert stale_after_s(1.0) < stale_after_s(30.0) < stale_after_s(300.0)
    fresh_for_long_interval = metrics(age_s=200)
    assert evaluate(fresh_for_long_interval, now=NOW, interval_s=300, max_depth=0).healthy
    assert not evaluate(fresh_for_long_interval, now=NOW, interval_s=30, max_depth=0).healthy


def test_total_is_visible_plus_in_flight_plus_delayed() -> None:
    assert metrics(1, 2, 4).total == 7


def test_status_serialises_to_json_with_metrics() -> None:
    status = evaluate(metrics(1, 2, 3, dlq=4), now=NOW, interval_s=INTERVAL, max_depth=0)
    doc = json.loads(json.dumps(status.to_dict()))
    assert doc["status"] == "unhealthy"
    assert doc["issues"] == ["DLQ contains 4 messages"]
    assert doc["metrics"] == {
        "visible": 1,
        "in_flight": 2,
        "delayed": 3,
        "total": 6,
        "dlq_depth": 4,
        "updated_at": NOW,
    }


def test_status_without_metrics_serialises_metrics_as_null() -> None:
    doc = evaluate(None, now=NOW, interval_s=INTERVAL, max_depth=0).to_dict()
    assert doc["metrics"] is None
    assert doc["healthy"] is False


def test_health_core_imports_no_io_or_clock() -> None:
    tree = ast.parse(Path(health.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"asyncio", "os", "time", "socket", "random"}
