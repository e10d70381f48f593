"""Issue 11's outages and mistakes as operators meet them: ``goraxfast run`` as a real process
(its own process group, real forks, real signals) against the real moto server, with the fault
proxy between them where a fault is needed.

The engine's output goes to a file the test reads while it runs; every engine is killed (its
whole process group) when its test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine_support import engine_env as base_engine_env
from engine_support import publish, queue_counts, trace_lines
from faultproxy import FaultProxy, Rule

from goraxfast.cli.moto_server import free_port

TESTS = Path(__file__).parent
#: "Within seconds": a mistake found at start ends the process well inside this.
STARTUP_MISTAKE_S = 10.0
#: How long an outage may last before /health/ready says so (the engine's bound is 5 s).
NOT_READY_WITHIN_S = 10.0
#: The outage whose log lines are counted, and the most lines it may cost.
OUTAGE_WINDOW_S = 8.0
OUTAGE_MAX_LINES = 5
#: Receives back off up to 20 s (with jitter) in an outage, so recovery may take that long.
RECOVERY_S = 40.0

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def engine_env(
    endpoint: str, queue_url: str, dlq_url: str, trace: Path, **extra: str
) -> dict[str, str]:
    """A small engine (2 running, 2 prefetched), so that capacity is reached quickly."""
    small = {"QUEUE_CONCURRENT_WORKERS": "2", "QUEUE_PREFETCH": "2", **extra}
    return base_engine_env(endpoint, queue_url, dlq_url, trace, **small)


@contextlib.contextmanager
def running(
    env: dict[str, str], log: Path, handler: str = "cli_handlers:slow"
) -> Iterator[subprocess.Popen[bytes]]:
    """``goraxfast run`` in a process group of its own, output to ``log``; killed at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "goraxfast", "run", "--handler", handler, "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def lines_of(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines() if log.exists() else []


def run_to_exit(env: dict[str, str], log: Path, timeout_s: float = 30) -> tuple[int, float]:
    """Start the engine and wait for it to end by itself: (exit code, seconds it took)."""
    started = time.monotonic()
    with running(env, log) as proc:
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout_s} s:\n" + "\n".join(lines_of(log))
            ) from None
    return code, time.monotonic() - started


def ready_status(port: int) -> int | None:
    """/health/ready's status, or None when nothing answers."""
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(
    predicate: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float,
    what: str,
) -> float:
    """Poll ``predicate`` until it holds (returns when, ``time.monotonic()``); fail if the
    engine exits first or the deadline passes, showing its log."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"engine exited ({proc.returncode}) before {what}:\n" + "\n".join(lines_of(log))
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}:\n" + "\n".join(lines_of(log))
            )
        time.sleep(0.05)
    return time.monotonic()


def ended(trace: Path) -> list[str]:
    return [line[1] for line in trace_lines(trace) if line[0] == "end"]


def assert_one_line_naming(lines: list[str], name: str) -> str:
    naming = [line for line in lines if name in line]
    assert len(naming) == 1, "\n".join(lines)
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    return naming[0]


# --- 1. a queue that does not exist -------------------------------------------------------------


@pytest.mark.parametrize("variable", ["AWS_SQS_QUEUE_URL", "AWS_SQS_DLQ_URL"])
def test_a_queue_that_does_not_exist_exits_2_within_seconds_with_one_line_naming_it(
    sqs_endpoint: str, queue_pair: tuple[str, str], tmp_path: Path, variable: str
) -> None:
    main_url, dlq_url = queue_pair
    missing = f"{sqs_endpoint}/123456789012/no-such-queue-{os.getpid()}"
    urls = {"AWS_SQS_QUEUE_URL": main_url, "AWS_SQS_DLQ_URL": dlq_url, variable: missing}
    log = tmp_path / "engine.log"
    trace = tmp_path / "trace"
    env = engine_env(sqs_endpoint, urls["AWS_SQS_QUEUE_URL"], urls["AWS_SQS_DLQ_URL"], trace)
    code, took_s = run_to_exit(env, log)
    lines = lines_of(log)
    assert code == 2, lines
    assert took_s < STARTUP_MISTAKE_S, lines
    assert missing in assert_one_line_naming(lines, variable)


# --- 2. credentials refused, access denied, no credentials at all -------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(403, "InvalidClientTokenId"), (400, "UnrecognizedClientException")]
)
def test_credentials_sqs_refuses_exit_2_within_seconds_with_one_line(
    sqs_endpoint: str, queue_pair: tuple[str, str], tmp_path: Path, status: int, code: str
) -> None:
    log = tmp_path / "engine.log"
    with FaultProxy(sqs_endpoint) as proxy:
        proxy.add(Rule.error("GetQueueAttributes", status, code))
        env = engine_env(proxy.endpoint, *queue_pair, tmp_path / "trace")
        exit_code, took_s = run_to_exit(env, log)
        assert proxy.count("GetQueueAttributes", "error") >= 1
        assert proxy.count("ReceiveMessage") == 0  # refused before taking any message
    lines = lines_of(log)
    assert exit_code == 2, lines
    assert took_s < STARTUP_MISTAKE_S, lines
    assert code in assert_one_line_naming(lines, "AWS_ACCESS_KEY_ID")


def test_access_denied_exits_2_within_seconds_with_one_line_naming_the_queue(
    sqs_endpoint: str, queue_pair: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "engine.log"
    with FaultProxy(sqs_endpoint) as proxy:
        proxy.add(Rule.error("GetQueueAttributes", 403, "AccessDenied"))
        env = engine_env(proxy.endpoint, *queue_pair, tmp_path / "trace")
        exit_code, took_s = run_to_exit(env, log)
        assert proxy.count("ReceiveMessage") == 0
    lines = lines_of(log)
    assert exit_code == 2, lines
    assert took_s < STARTUP_MISTAKE_S, lines
    line = assert_one_line_naming(lines, "AWS_SQS_QUEUE_URL")
    assert "AccessDenied" in line and queue_pair[0] in line


@pytest.mark.parametrize("client", ["fast", "botocore"])
def test_no_credentials_at_all_exit_2_within_seconds_with_one_line(
    sqs_endpoint: str, queue_pair: tuple[str, str], tmp_path: Path, client: str
) -> None:
    log = tmp_path / "engine.log"
    (tmp_path / "credentials").write_text("")
    (tmp_path / "config").write_text("")
    env = engine_env(
        sqs_endpoint,
        *queue_pair,
        tmp_path / "trace",
        GORAXFAST_SQS_CLIENT=client,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    code, took_s = run_to_exit(env, log)
    lines = lines_of(log)
    assert code == 2, lines
    assert took_s < STARTUP_MISTAKE_S, lines
    assert_one_line_naming(lines, "credentials")


# --- 3. an unreachable endpoint -----------------------------------------------------------------

FAULTS: dict[str, Callable[[], Rule]] = {
    "every call answered 503": lambda: Rule.error(None, 503, "ServiceUnavailable"),
    "every connection reset": lambda: Rule.reset(None),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("client", "fault"),
    [("fast", "every call answered 503"), ("botocore", "every connection reset")],
)
def test_an_outage_makes_ready_503_logs_a_handful_of_lines_and_the_engine_recovers(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    client: str,
    fault: str,
) -> None:
    log, trace, port = tmp_path / "engine.log", tmp_path / "trace", free_port()
    main_url, _ = queue_pair
    with FaultProxy(sqs_endpoint) as proxy:
        env = engine_env(
            proxy.endpoint,
            *queue_pair,
            trace,
            GORAXFAST_SQS_CLIENT=client,
            WORKER_HEALTH_PORT=str(port),
        )
        with running(env, log) as proc:
            wait_for(lambda: ready_status(port) == 200, proc, log, 30, "ready at start")
            before = len(lines_of(log))
            outage = proxy.add(FAULTS[fault]())
            began = time.monotonic()
            ids = publish(boto_sqs, main_url, 6, prefix="during-")  # straight to moto
            not_ready_at = wait_for(
                lambda: ready_status(port) == 503, proc, log, NOT_READY_WITHIN_S, "ready 503"
            )
            statuses = []
            while time.monotonic() - began < OUTAGE_WINDOW_S:  # it stays not ready
                statuses.append(ready_status(port))
                time.sleep(0.2)
            outage_lines = lines_of(log)[before:]
            proxy.remove(outage)
            failed_calls = proxy.count(None, "error") + proxy.count(None, "reset")
            wait_for(lambda: ready_status(port) == 200, proc, log, RECOVERY_S, "ready again")
            wait_for(
                lambda: set(ids) <= set(ended(trace)), proc, log, RECOVERY_S, "messages handled"
            )
    assert not_ready_at - began < NOT_READY_WITHIN_S
    assert set(statuses) <= {503}, statuses  # once not ready, not ready until it ends
    assert failed_calls > len(outage_lines)  # many attempts, not a line for each
    assert 1 <= len(outage_lines) <= OUTAGE_MAX_LINES, "\n".join(outage_lines)


# --- 4. readiness through a busy drain ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("client", ["fast", "botocore"])
def test_ready_is_never_503_while_every_slot_is_busy_draining(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    client: str,
) -> None:
    log, trace, port = tmp_path / "engine.log", tmp_path / "trace", free_port()
    env = engine_env(
        sqs_endpoint,
        *queue_pair,
        trace,
        GORAXFAST_SQS_CLIENT=client,
        GORAXFAST_TEST_SLEEP="0.25",
        WORKER_HEALTH_PORT=str(port),
    )
    with running(env, log) as proc:
        wait_for(lambda: ready_status(port) == 200, proc, log, 30, "ready at start")
        ids = publish(boto_sqs, queue_pair[0], 16)  # 8 times the 2 slots
        samples: list[tuple[int | None, int]] = []  # (status, handlers running then)

        def drained() -> bool:
            lines = trace_lines(trace)
            running_now = sum(1 for x in lines if x[0] == "start") - len(ended(trace))
            samples.append((ready_status(port), running_now))
            return set(ids) <= {x[1] for x in lines if x[0] == "end"}

        wait_for(drained, proc, log, 60, "the drain")
    assert {status for status, _ in samples} == {200}, samples
    assert sum(1 for _, busy in samples if busy >= 2) >= 10, samples  # sampled while full


# --- 5. a failing handler -----------------------------------------------------------------------


@pytest.mark.slow
def test_each_failed_attempt_logs_its_message_id_exception_and_next_step(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    log, trace = tmp_path / "engine.log", tmp_path / "trace"
    main_url, dlq_url = queue_pair
    env = engine_env(
        sqs_endpoint,
        *queue_pair,
        trace,
        QUEUE_MAX_RETRIES="2",
        QUEUE_RETRY_BASE_SECONDS="1",
        QUEUE_RETRY_MAX_SECONDS="1",
    )
    publish(boto_sqs, main_url, 1, prefix="doomed-", tenant="tenant-x")
    with running(env, log, handler="cli_handlers:fail") as proc:
        wait_for(lambda: queue_counts(boto_sqs, dlq_url)[0] == 1, proc, log, 30, "the dead letter")
        attempts = [x for x in trace_lines(trace) if x[0] == "fail"]
        wait_for(  # the line is written after the handler's trace: give it its moment
            lambda: all(x[2] in log.read_text() for x in attempts), proc, log, 5, "log lines"
        )
    lines = lines_of(log)
    assert [(x[1], int(x[3])) for x in attempts] == [("doomed-0", 1), ("doomed-0", 2)]
    next_steps = {1: "retry in 1 s", 2: "dead-lettered"}
    for _, execution_id, message_id, receive in attempts:
        about = [line for line in lines if message_id in line and f"receive {receive}" in line]
        assert len(about) == 1, "\n".join(lines)
        line = about[0]
        assert "ValueError" in line and f"boom-{execution_id}" in line, line
        assert execution_id in line and "tenant-x" in line, line
        assert next_steps[int(receive)] in line, line


# --- 6. the delete outage -----------------------------------------------------------------------

#: QUEUE_CONCURRENT_WORKERS + QUEUE_PREFETCH in engine_env: the most messages the engine holds.
CAPACITY = 2 + 2


def flat_for(read: Callable[[], int], window_s: float) -> tuple[int, int]:
    """``read()`` at the start and at the end of a window (an absence cannot be awaited)."""
    first = read()
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline and read() == first:
        time.sleep(0.05)
    return first, read()


@contextlib.contextmanager
def delete_outage(
    sqs_endpoint: str, queue_pair: tuple[str, str], tmp_path: Path, client: str
) -> Iterator[tuple[FaultProxy, Rule, subprocess.Popen[bytes], Path, Path]]:
    """An engine whose every DeleteMessageBatch fails (500 InternalError) from the start, once
    it has run a capacity's worth of messages and seen their deletes fail."""
    log, trace = tmp_path / "engine.log", tmp_path / "trace"
    with FaultProxy(sqs_endpoint) as proxy:
        outage = proxy.add(Rule.error("DeleteMessageBatch", 500, "InternalError"))
        env = engine_env(proxy.endpoint, *queue_pair, trace, GORAXFAST_SQS_CLIENT=client)
        with running(env, log) as proc:
            wait_for(lambda: len(ended(trace)) >= CAPACITY, proc, log, 30, "a capacity handled")
            proxy.wait_count("DeleteMessageBatch", "error", at_least=3, timeout_s=30)
            yield proxy, outage, proc, log, trace


@pytest.mark.slow
@pytest.mark.parametrize("client", ["fast", "botocore"])
def test_while_deletes_keep_failing_no_new_messages_are_received(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    client: str,
) -> None:
    main_url, _ = queue_pair
    publish(boto_sqs, main_url, 25 * CAPACITY)  # enough that an empty queue cannot stop receives
    with delete_outage(sqs_endpoint, queue_pair, tmp_path, client) as (proxy, _, _, log, trace):
        time.sleep(1.5)  # a long poll already started may still bring messages (1 s wait)
        receives = flat_for(lambda: proxy.count("ReceiveMessage"), 4.0)
        handled = len(ended(trace))
        deletes_failed = proxy.count("DeleteMessageBatch", "error")
        visible, _ = queue_counts(boto_sqs, main_url)
    lines = "\n".join(lines_of(log))
    assert deletes_failed >= 3
    assert receives[0] == receives[1], (receives, lines)
    assert visible > 0, f"the engine took all {handled} messages while no delete went through"
    # What it owes SQS is bounded: its capacity, plus what it took in the round trip or two
    # before the first delete call failed (each failure is seen at once: acks are never
    # retried inside the client); here 4-8 with the fast client, up to 20 with botocore's.
    assert handled <= 8 * CAPACITY, f"{handled} messages run while no delete went through"


@pytest.mark.slow
def test_sigterm_in_a_delete_outage_exits_4_and_logs_how_many_acks_were_left_unsent(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    main_url, _ = queue_pair
    ids = publish(boto_sqs, main_url, 3 * CAPACITY)
    with delete_outage(sqs_endpoint, queue_pair, tmp_path, "fast") as (_, _, proc, log, trace):
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=40)  # the final flush tries for 15 s
        handled = len(ended(trace))
    lines = lines_of(log)
    assert code == 4, "\n".join(lines)
    unsent = [m for line in lines if (m := re.search(r"(\d+) acknowledgements? could not", line))]
    assert len(unsent) == 1, "\n".join(lines)
    assert int(unsent[0].group(1)) == handled, "\n".join(lines)
    visible, in_flight = queue_counts(boto_sqs, main_url)
    assert visible + in_flight == len(ids)  # nothing was deleted: each runs again


@pytest.mark.slow
def test_when_a_delete_outage_ends_receives_resume_everything_is_deleted_and_sigterm_exits_0(
    sqs_endpoint: str,
    queue_pair: tuple[str, str],
    boto_sqs,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    main_url, _ = queue_pair
    ids = publish(boto_sqs, main_url, 3 * CAPACITY)
    with delete_outage(sqs_endpoint, queue_pair, tmp_path, "botocore") as outage_run:
        proxy, outage, proc, log, trace = outage_run
        proxy.remove(outage)
        wait_for(lambda: set(ids) <= set(ended(trace)), proc, log, 60, "every message handled")
        wait_for(lambda: queue_counts(boto_sqs, main_url) == (0, 0), proc, log, 30, "queue empty")
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    lines = lines_of(log)
    assert code == 0, "\n".join(lines)
    assert not any("could not be sent" in line for line in lines), "\n".join(lines)
