"""profiles.breakdown's in-memory measurement runs end to end and reports what it measured.

Not a performance test (no figure is compared with a threshold): it checks that the engine
drains the in-memory data plane with real forked workers and that the split is filled in.
The fauxqs measurements need Node and npm, so they are run by hand, not here.
"""

from __future__ import annotations

from profiles import breakdown


def test_the_in_memory_breakdown_measures_parent_and_workers() -> None:
    # Enough messages for the workers to show in /proc, which counts CPU in 10 ms ticks.
    sample = breakdown.engine_in_memory(measured=20_000)
    assert sample.msgs_per_s > 0
    assert sample.parent_us > 0
    assert sample.workers_us > 0
    assert sample.total_us == sample.parent_us + sample.workers_us


def test_the_table_has_one_row_per_measurement() -> None:
    rows = {
        "a": breakdown.Sample(100.0, 10.0, 2.0, 5.0),
        "b": breakdown.Sample(50.0, 20.0, 1.0),
    }
    lines = breakdown.table(rows).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| a | 100 | 12.0 (10.0 + 2.0) | 5.0 | 17.0 |")
    assert "| – |" in lines[3]
