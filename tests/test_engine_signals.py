"""``goraxfast run`` as operators run it: a real process, real SIGTERM/SIGINT, exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from engine_support import engine_env, publish, queue_counts, trace_lines
from faultproxy import FaultProxy, Rule

from goraxfast.cli.moto_server import free_port


def start_engine(
    config,
    trace: Path,
    *,
    sleep_s: float = 1.0,
    grace_s: float = 20,
    flags: tuple[str, ...] = (),
    **extra_env: str,
) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """``goraxfast run`` in a process group of its own, as systemd and Kubernetes start it."""
    settings = {
        "QUEUE_CONCURRENT_WORKERS": "2",
        "QUEUE_PREFETCH": "8",
        "WORKER_SHUTDOWN_GRACE_SECONDS": str(grace_s),
        "GORAXFAST_TEST_SLEEP": str(sleep_s),
        **extra_env,
    }
    env = engine_env(config.aws_endpoint, config.queue_url, config.dlq_url, trace, **settings)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "goraxfast",
            "run",
            "--handler",
            "cli_handlers:slow",
            "--workers",
            "2",
            *flags,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def send(proc: subprocess.Popen[str], sig: signal.Signals, to: str) -> None:
    """``to="group"``: every process of the engine at once (systemd's KillMode=control-group,
    dumb-init, GNU timeout, ``kill -TERM -- -PGID``); ``to="parent"``: the parent alone."""
    if to == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def wait_ready(proc: subprocess.Popen[str], port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"engine not ready:\n{proc.communicate()[0]}")
        time.sleep(0.05)


def wait_for_starts(
    trace: Path, count: int, proc: subprocess.Popen[str], timeout_s: float = 30
) -> None:
    wait_for_traced(trace, "start", count, proc, timeout_s)


def wait_for_traced(
    trace: Path, event: str, count: int, proc: subprocess.Popen[str], timeout_s: float = 30
) -> None:
    """Until ``count`` lines of ``event`` (``start``, ``end``) are traced; fails at once if the
    engine exits first."""
    deadline = time.monotonic() + timeout_s
    while sum(1 for line in trace_lines(trace) if line[0] == event) < count:
        if proc.poll() is not None:
            raise AssertionError(
                f"engine exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("handlers did not start")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "parent"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_drains_and_exits_0_releasing_unstarted_messages_at_once(
    config, boto_sqs, tmp_path: Path, sig: signal.Signals, to: str
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 10)
    proc = start_engine(config, trace)
    wait_for_starts(trace, 2, proc)
    sent_at = time.monotonic()
    send(proc, sig, to)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert time.monotonic() - sent_at < 20  # within the grace period
    lines = trace_lines(trace)
    started = {line[1] for line in lines if line[0] == "start"}
    finished = {line[1] for line in lines if line[0] == "end"}
    assert started == finished  # running handlers were allowed to finish
    visible, in_flight = queue_counts(boto_sqs, config.queue_url)
    assert (visible, in_flight) == (10 - len(finished), 0)  # not after the 30 s visibility timeout
    assert "stopped: received=" in out
    assert len(out.splitlines()) < 20, out  # a handful of lines, never a loop


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "parent"])
def test_a_second_signal_forces_exit_with_code_3_and_deletes_nothing_unprocessed(
    config, boto_sqs, tmp_path: Path, to: str
) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 4)
    proc = start_engine(config, trace, sleep_s=60)
    wait_for_starts(trace, 2, proc)
    send(proc, signal.SIGTERM, to)
    time.sleep(0.5)  # the first signal must have been seen before the second means "force"
    send(proc, signal.SIGTERM, to)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, out
    assert "forcing exit" in out
    assert not any(line[0] == "end" for line in trace_lines(trace))
    visible, in_flight = queue_counts(boto_sqs, config.queue_url)
    assert visible + in_flight == 4  # the two that ran come back through their visibility timeout


@pytest.mark.slow
def test_messages_published_just_after_a_stop_are_visible_to_the_next_consumer_at_once(
    config, boto_sqs, tmp_path: Path
) -> None:
    """The stopping engine's long polls are not abandoned: SQS would complete them for nobody
    and hide what they bring for the visibility timeout (30 s here)."""
    trace = tmp_path / "trace"
    port = free_port()
    proc = start_engine(
        config,
        trace,
        QUEUE_WAIT_TIME_SECONDS="5",
        QUEUE_POLLERS="3",
        WORKER_HEALTH_PORT=str(port),
    )
    wait_ready(proc, port)
    time.sleep(0.5)  # let the pollers enter their long polls (nothing observable marks it)
    os.killpg(proc.pid, signal.SIGTERM)
    publish(boto_sqs, config.queue_url, 30)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    visible, in_flight = queue_counts(boto_sqs, config.queue_url)
    assert (visible, in_flight) == (30, 0), out


def test_run_refuses_a_bad_environment_listing_every_problem(tmp_path: Path) -> None:
    env = dict(
        os.environ, QUEUE_MAX_MESSAGES="50", QUEUE_ENABLED="maybe", AWS_SQS_QUEUE_URL="http://x/q"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "goraxfast", "run", "--handler", "json:dumps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "QUEUE_MAX_MESSAGES" in proc.stderr and "QUEUE_ENABLED" in proc.stderr


def test_run_reports_a_handler_that_cannot_be_imported(config, tmp_path: Path) -> None:
    env = dict(os.environ, AWS_SQS_QUEUE_URL=config.queue_url, AWS_ENDPOINT=config.aws_endpoint)
    proc = subprocess.run(
        [sys.executable, "-m", "goraxfast", "run", "--handler", "no_such_module:handle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2  # a flag the operator must fix: restarting cannot
    assert "no_such_module" in proc.stderr and "Traceback" not in proc.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:  # gone between the two looks (ENOENT, or ESRCH while reading)
        return False


@pytest.mark.slow
def test_workers_leave_when_the_parent_is_killed(config, boto_sqs, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 4)
    proc = start_engine(config, trace, sleep_s=0.2)
    wait_for_starts(trace, 2, proc)
    worker_pids = {int(line[2]) for line in trace_lines(trace)}
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in worker_pids if _alive(pid)]


@pytest.mark.slow
def test_a_handler_killed_for_its_timeout_leaves_its_stack_in_the_log(
    config, boto_sqs, tmp_path: Path
) -> None:
    """Before SIGKILL the worker writes every thread's stack (faulthandler), so the log says
    where the handler was stuck, as gunicorn's SIGABRT does."""
    trace = tmp_path / "trace"
    publish(boto_sqs, config.queue_url, 1)
    proc = start_engine(
        config,
        trace,
        sleep_s=60,
        grace_s=1,
        QUEUE_PROCESS_TIMEOUT="1",
        QUEUE_RETRY_BASE_SECONDS="0",
    )
    try:
        wait_for_starts(trace, 2, proc)  # the second start: the first was killed and released
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "killing worker" in out and "QUEUE_PROCESS_TIMEOUT" in out, out
    assert "cli_handlers.py" in out and "in slow" in out, out  # the frame it was stuck in


def _group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("to", ["group", "parent"])
def test_a_signal_during_the_start_up_checks_stops_cleanly_with_exit_0(
    config, sqs_endpoint: str, tmp_path: Path, to: str
) -> None:
    """SQS does not answer the start-up checks (a slow region, a NAT still coming up), and
    systemd or Kubernetes stops the engine meanwhile: it exits 0 at once with one line, its
    workers with it, rather than dying by the signal with its zygote left to notice."""
    with FaultProxy(sqs_endpoint) as proxy:
        proxy.add(Rule.blackhole("GetQueueAttributes"))
        proc = start_engine(config.with_(aws_endpoint=proxy.endpoint), tmp_path / "trace")
        deadline = time.monotonic() + 30
        while proxy.count("GetQueueAttributes") == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "no start-up check"
            time.sleep(0.02)
        send(proc, signal.SIGTERM, to)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "SIGTERM during start-up: stopped before receiving anything (exit 0)" in out
    assert "Traceback" not in out
    assert _group_gone(proc.pid), "a worker or the zygote outlived the engine"
