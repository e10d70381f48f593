"""Recycling workers end to end: real forks, the real moto server over HTTP.

A worker past WORKER_MAX_MESSAGES, or past WORKER_MAX_MEMORY_MB, is given nothing more, finishes
what it holds and is replaced by a fresh fork: no message runs twice or goes back to SQS for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_support import append, engine_config, publish, queue_counts, trace_lines, wait_until
from test_engine_signals import start_engine, wait_for_traced

from goraxfast.config import Config
from goraxfast.core.recycling import MIB
from goraxfast.engine import recycler
from goraxfast.engine.engine import Engine
from goraxfast.engine.recycler import resident_bytes


async def test_workers_are_recycled_after_their_message_budget_and_nothing_runs_twice(
    config: Config, boto_sqs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goraxfast.engine")
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 40)

    def handler(msg, info):
        append(trace, msg.execution_id, info.receive_count, os.getpid())

    cfg = engine_config(config, worker_max_messages=5)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 40, what="40 deletes")
        stats = engine.stats()
        text = engine.prometheus_text()
    lines = trace_lines(trace)
    assert sorted(line[0] for line in lines) == sorted(ids)  # each exactly once
    assert {line[1] for line in lines} == {"1"}  # none came back from SQS
    per_pid = Counter(line[2] for line in lines)
    assert max(per_pid.values()) <= 5  # 5 plus a tenth of 5, rounded down: exactly 5
    assert len(per_pid) >= 8
    assert stats.worker_recycles >= 6 and stats.worker_restarts == 0
    assert stats.released == 0 and stats.failed == 0 and stats.crashed == 0
    assert f'goraxfast_worker_recycles_total{{reason="messages"}} {stats.worker_recycles}' in text
    recycled = [r.getMessage() for r in caplog.records if " recycled: " in r.getMessage()]
    assert len(recycled) == stats.worker_recycles
    assert recycled[0].endswith(
        "recycled: ran 5 messages (WORKER_MAX_MESSAGES=5); forking a fresh one"
    )
    assert queue_counts(boto_sqs, config.queue_url) == (0, 0)


async def test_async_workers_are_recycled_after_their_budget_with_their_tasks_finished(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 24, tenants=8)

    async def handler(msg, info):
        await asyncio.sleep(0.02)  # several run at once in one worker
        append(trace, msg.execution_id, info.receive_count, os.getpid())

    cfg = engine_config(config, worker_processes=1, concurrent_workers=4, worker_max_messages=6)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 24, what="24 deletes")
        stats = engine.stats()
    lines = trace_lines(trace)
    assert sorted(line[0] for line in lines) == sorted(ids)
    assert {line[1] for line in lines} == {"1"}
    per_pid = Counter(line[2] for line in lines)
    assert max(per_pid.values()) <= 6 and len(per_pid) >= 4, per_pid
    assert stats.worker_recycles >= 3 and stats.worker_restarts == 0 and stats.released == 0


async def test_a_worker_that_grows_past_the_memory_limit_is_replaced_once_it_finishes(
    config: Config, boto_sqs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycler, "MEMORY_CHECK_INTERVAL_S", 0.05)
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 8)
    leak: list[bytes] = []  # each worker's own copy, after the fork

    def handler(msg, info):
        leak.append(os.urandom(1) * (48 * MIB))  # written, so resident
        time.sleep(0.2)
        append(trace, msg.execution_id, info.receive_count, os.getpid())

    # a worker is forked from this process: fresh, it holds about what this process holds
    limit_mb = (resident_bytes(os.getpid()) or 0) // MIB + 100
    cfg = engine_config(config, worker_processes=1, worker_max_memory_mb=limit_mb)
    async with Engine(cfg, handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 8, what="8 deletes")
        stats = engine.stats()
        text = engine.prometheus_text()
    lines = trace_lines(trace)
    assert sorted(line[0] for line in lines) == sorted(ids)
    assert {line[1] for line in lines} == {"1"}
    assert stats.worker_recycles >= 2 and stats.worker_restarts == 0
    assert len({line[2] for line in lines}) >= 3
    assert stats.released == 0  # what a recycled worker had not started went to the other
    assert max(Counter(line[2] for line in lines).values()) <= 3  # 48 MiB each: past 100 by 3
    assert 'goraxfast_worker_recycles_total{reason="memory"}' in text


async def test_a_memory_limit_below_a_fresh_worker_is_reported_once_and_every_message_runs(
    config: Config,
    boto_sqs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(recycler, "MEMORY_CHECK_INTERVAL_S", 0.02)
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 10)

    def handler(msg):
        time.sleep(0.05)
        append(trace, msg.execution_id, os.getpid())

    cfg = engine_config(config, worker_max_memory_mb=1)
    async with Engine(cfg, handler) as engine:
        first_pids = sorted(engine.worker_pids())
        await wait_until(lambda: engine.stats().deleted >= 10, what="10 deletes")
        assert sorted(engine.worker_pids()) == first_pids
        assert engine.stats().worker_recycles == 0
    assert sorted(line[0] for line in trace_lines(trace)) == sorted(ids)
    warned = [r.getMessage() for r in caplog.records if "WORKER_MAX_MEMORY_MB=1 " in r.getMessage()]
    assert len(warned) == 1 and "not applied" in warned[0]


def test_goraxfast_run_recycles_workers_from_the_environment_and_stops_cleanly(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 12)
    proc = start_engine(config, trace, sleep_s=0.01, WORKER_MAX_MESSAGES="3")
    try:
        wait_for_traced(trace, "end", 12, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already: a failure said why
            os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as systemd stops it
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    ended = [ln for ln in trace_lines(trace) if ln[0] == "end"]
    assert sorted(ln[1] for ln in ended) == sorted(ids)
    per_pid = Counter(ln[2] for ln in ended)
    assert len(per_pid) >= 4 and max(per_pid.values()) <= 3, per_pid
    assert "recycled: ran 3 messages (WORKER_MAX_MESSAGES=3); forking a fresh one" in out
    assert "worker_recycles=" in out and "worker_restarts=0" in out
