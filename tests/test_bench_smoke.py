"""A tiny end-to-end bench on the test suite's moto server: every piece runs and reports.

Not a performance test: moto is slow with depth, so a few hundred messages in all, and no
figure is compared with a threshold. It checks the bench's contract instead: one row per
contender, each run measured (positive rates and CPU, the server's CPU seen), latency samples
collected, and the Markdown table written with ratios to goraxfast.
"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import parse_args
from bench.suite import main as run_suite
from goraxfast.cli.moto_server import MotoServer

CONTENDERS = ("goraxfast-fast", "goraxfast-botocore", "naive-boto3", "aio-batch", "ceiling")


@pytest.mark.slow
def test_tiny_bench_on_moto_reports_every_contender(moto_server: MotoServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert moto_server._proc is not None
    args = parse_args(
        [
            "--endpoint",
            moto_server.endpoint,
            "--server-pid",
            str(moto_server._proc.pid),
            "--contenders",
            ",".join(CONTENDERS),
            "--messages",
            "40",
            "--warmup",
            "10",
            "--runs",
            "1",
            "--latency-messages",
            "5",
            "--latency-rate",
            "20",
            "--out",
            str(tmp_path),
        ]
    )
    assert run_suite(args) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {r["contender"]: r for r in doc["e2e_summary"]}
    assert set(rows) == set(CONTENDERS)
    for name, row in rows.items():
        assert row["status"] == "ok", f"{name}: {row['error']}"
        assert row["msgs_per_s"] > 0
        # measured, not necessarily non-zero: /proc counts CPU in 10 ms ticks and a lean
        # contender may spend less than one tick on 40 messages
        assert row["client_us_per_msg"] >= 0
        assert row["server_us_per_msg"] >= 0
        assert row["latency_samples"] == 5
        # row["duplicates"] is reported, not asserted: moto's server sometimes hands one
        # message to two concurrent receives (4 in 800 with 8 receivers, visibility 60 s)
    assert rows[doc["meta"]["baseline"]]["x_throughput"] == 1.0
    table = (tmp_path / "results.md").read_text()
    for row in doc["e2e_summary"]:
        assert row["label"] in table
    assert "× goraxfast" in table


@pytest.mark.slow
def test_tiny_fifo_bench_on_moto_reports_each_queue_against_the_standard_one(
    moto_server: MotoServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from bench.fifo import main as run_fifo

    assert moto_server._proc is not None
    argv = ["--endpoint", moto_server.endpoint, "--server-pid", str(moto_server._proc.pid)]
    # a group or two per message: moto blocks a group while any of its messages is in flight
    # and answers such a receive at once, empty, so a few busy groups crawl there (not a
    # FIFO figure: a bench on fauxqs or AWS gives those)
    argv += ["--groups", "0,20", "--messages", "30", "--warmup", "6", "--runs", "1"]
    assert run_fifo([*argv, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {r["groups"]: r for r in doc["summary"]}
    assert set(rows) == {0, 20}
    assert all(r["runs_ok"] == 1 and r["msgs_per_s"] > 0 for r in rows.values())
    assert rows[0]["rate_ratio"] == 1.0
    assert rows[20]["per_receive"] > 0  # the engine's own receive count was read
    table = (tmp_path / "results.md").read_text()
    assert "FIFO, 20 groups" in table and "standard queue" in table
