"""Every metric on ``/metrics`` is in the README, under the name a scrape shows, and every
``goraxfast_*`` series the README promises is one the engine exports."""

from __future__ import annotations

import re
from pathlib import Path

from goraxfast import Engine, ExecutionMessage
from goraxfast.core.health import QueueMetrics, evaluate
from goraxfast.ops.prometheus import queue_families, render
from goraxfast.testing import InMemoryQueue

README = (Path(__file__).parent.parent / "README.md").read_text()

#: Series the README names that the engine does not export yet: each is a bug of the code or of
#: the README, listed so that it is seen, and taken off once the two agree again.
NOT_EXPORTED_YET: set[str] = set()


def handle(msg: ExecutionMessage) -> None:
    """Nothing to do: the test reads the metrics, not the work."""


async def exported_families() -> set[str]:
    """The families of a running engine's exposition, as ``# TYPE`` lines name them, and the
    queue gauges a collection adds."""
    queue = InMemoryQueue()
    queue.publish(
        ExecutionMessage.new(tenant_id="t1", workflow_id="w", workflow_version=1, trigger_type="x")
    )
    async with Engine(queue.config(), handle, data_plane=queue, serve_http=False) as engine:
        await queue.wait_until_settled(timeout_s=30)
        text = engine.prometheus_text()
    snapshot = QueueMetrics(visible=1, in_flight=0, delayed=0, dlq_depth=0, updated_at=1.0)
    text += render(
        queue_families(snapshot, evaluate(snapshot, now=1.0, interval_s=30, max_depth=0))
    )
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


async def test_every_exported_metric_is_named_in_the_readme() -> None:
    families = await exported_families()
    assert {"goraxfast_received_total", "process_cpu_seconds_total"} <= families
    assert sorted(f for f in families if f"`{f}" not in README) == []


async def test_every_goraxfast_series_the_readme_names_is_exported() -> None:
    families = await exported_families()
    histograms = {f"{f}{suffix}" for f in families for suffix in ("_bucket", "_sum", "_count")}
    named = set(re.findall(r"`(goraxfast_[a-z_]+)(?:\{[^`]*\})?`", README))
    series = {n for n in named if n.endswith(("_total", "_seconds", "_bytes")) or n in families}
    missing = series - families - histograms
    assert sorted(missing - NOT_EXPORTED_YET) == []
    assert sorted(NOT_EXPORTED_YET - missing) == [], "exported now: take it off NOT_EXPORTED_YET"
