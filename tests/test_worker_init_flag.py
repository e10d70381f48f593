"""``goraxfast run --worker-init MODULE:FUNCTION``: each new worker calls it once, before its
first message; a function that cannot be one is refused at start with the other mistakes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from engine_support import TESTS, publish, trace_lines
from test_engine_signals import start_engine, wait_for_traced

RUN = (sys.executable, "-m", "goraxfast", "run")


def test_every_worker_fresh_ones_included_runs_worker_init_once_before_its_first_message(
    config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, config.queue_url, 8)
    proc = start_engine(
        config,
        trace,
        sleep_s=0.01,
        flags=("--worker-init", "cli_handlers:init_worker"),
        WORKER_MAX_MESSAGES="2",  # so that fresh workers are forked while it runs
    )
    try:
        wait_for_traced(trace, "end", 8, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already: a failure said why
            os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    lines = trace_lines(trace)
    assert sorted(ln[1] for ln in lines if ln[0] == "end") == sorted(ids)
    inits = Counter(ln[2] for ln in lines if ln[0] == "init")
    assert set(inits.values()) == {1}  # once per worker process
    ran = {ln[2] for ln in lines if ln[0] == "start"}
    assert len(ran) >= 4 and ran <= set(inits)  # every worker that ran a message was set up
    for pid in ran:  # ... before its first message
        first = next(i for i, ln in enumerate(lines) if ln[0] == "start" and ln[2] == pid)
        init = next(i for i, ln in enumerate(lines) if ln[0] == "init" and ln[2] == pid)
        assert init < first
    assert {ln[1] for ln in lines if ln[0] == "init"} <= {"0", "1"}  # the seat's index


@pytest.mark.parametrize(
    ("worker_init", "says"),
    [
        ("cli_handlers:init_takes_nothing", "must take the worker's index"),
        ("cli_handlers:init_async", "must be a plain function"),
        ("cli_handlers:no_such_function", "worker_init 'cli_handlers:no_such_function'"),
        ("no_such_module:init", "cannot import worker_init module 'no_such_module'"),
        ("not a path", "MODULE:FUNCTION"),
    ],
)
def test_a_worker_init_that_cannot_be_one_is_refused_at_start_with_exit_2(
    worker_init: str, says: str
) -> None:
    env = dict(os.environ, AWS_SQS_QUEUE_URL="http://127.0.0.1:1/000000000000/q")
    env["PYTHONPATH"] = str(TESTS)
    proc = subprocess.run(
        [*RUN, "--handler", "cli_handlers:slow", "--worker-init", worker_init],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--worker-init" in proc.stderr and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_handler_and_a_bad_worker_init_are_reported_together() -> None:
    env = dict(os.environ, AWS_SQS_QUEUE_URL="http://127.0.0.1:1/000000000000/q")
    env["PYTHONPATH"] = str(TESTS)
    proc = subprocess.run(
        [
            *RUN,
            "--handler",
            "cli_handlers:nope",
            "--worker-init",
            "cli_handlers:init_takes_nothing",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    problems = [ln for ln in proc.stderr.splitlines() if "--handler" in ln or "--worker-init" in ln]
    assert len(problems) == 2, proc.stderr
