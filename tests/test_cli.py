"""The ``goraxfast`` command run as a real subprocess against the moto server fixture."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from goraxfast.cli.commands import dlq_name_for

_OWN_PREFIXES = ("AWS_", "QUEUE_", "WORKER_", "GORAXFAST_")


def cli_env(endpoint: str, **extra: str) -> dict[str, str]:
    """The user's environment minus anything goraxfast reads, pointed at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(
        AWS_ENDPOINT=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    env.update(extra)
    return env


def goraxfast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goraxfast", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def depth(boto_sqs: Any, url: str) -> int:
    attrs = boto_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attrs[k])
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


@pytest.fixture
def queue_env(sqs_endpoint: str, queue_pair: tuple[str, str]) -> dict[str, str]:
    main_url, dlq_url = queue_pair
    return cli_env(sqs_endpoint, AWS_SQS_QUEUE_URL=main_url, AWS_SQS_DLQ_URL=dlq_url)


@pytest.fixture
def created_names(boto_sqs: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(Exception):
            boto_sqs.delete_queue(QueueUrl=boto_sqs.get_queue_url(QueueName=name)["QueueUrl"])


def test_queues_create_prints_exports_for_queues_linked_by_redrive(
    sqs_endpoint: str, boto_sqs: Any, created_names: list[str]
) -> None:
    name = f"cli-create-{os.getpid()}"
    created_names += [name, f"{name}-dlq"]
    done = goraxfast(
        cli_env(sqs_endpoint), "queues", "create", "--name", name, "--max-receive-count", "7"
    )
    assert done.returncode == 0, done.stderr
    exports = dict(
        shlex.split(line)[1].split("=", 1) for line in done.stdout.splitlines()
    )  # every stdout line is `export NAME=value`, so `eval "$(goraxfast queues create)"` works
    assert set(exports) == {"AWS_SQS_QUEUE_URL", "AWS_SQS_DLQ_URL"}
    main = boto_sqs.get_queue_attributes(
        QueueUrl=exports["AWS_SQS_QUEUE_URL"], AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    dlq_arn = boto_sqs.get_queue_attributes(
        QueueUrl=exports["AWS_SQS_DLQ_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    redrive = json.loads(main["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 7


def test_publish_count_puts_that_many_messages_on_the_queue(
    queue_env: dict[str, str], boto_sqs: Any
) -> None:
    done = goraxfast(queue_env, "publish", "--count", "7", "--tenants", "3")
    assert done.returncode == 0, done.stderr
    assert re.match(r"published 7, failed 0 in [\d.]+ s \(\d+ msgs/s\)", done.stdout)
    assert depth(boto_sqs, queue_env["AWS_SQS_QUEUE_URL"]) == 7


def test_publish_file_reports_bad_lines_by_number_and_publishes_the_rest(
    queue_env: dict[str, str], boto_sqs: Any, tmp_path: Path
) -> None:
    good = {"tenant_id": "t1", "workflow_id": "w1", "workflow_version": 1, "trigger_type": "api"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "workflow_version": 0}),
        "",
        json.dumps({**good, "trigger_data": {"k": [1, 2]}}),
    ]
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = goraxfast(queue_env, "publish", "--file", str(path))
    assert done.returncode == 1
    assert f"{path}:2:" in done.stderr
    assert f"{path}:3: workflow_version must be greater than 0" in done.stderr
    assert done.stdout.startswith("published 2, failed 2")
    assert depth(boto_sqs, queue_env["AWS_SQS_QUEUE_URL"]) == 2


def test_stats_shows_depths_dlq_and_health(queue_env: dict[str, str], boto_sqs: Any) -> None:
    for _ in range(2):
        boto_sqs.send_message(QueueUrl=queue_env["AWS_SQS_QUEUE_URL"], MessageBody="x")
    boto_sqs.send_message(QueueUrl=queue_env["AWS_SQS_DLQ_URL"], MessageBody="dead")
    done = goraxfast(queue_env, "stats")
    assert done.returncode == 0, done.stderr
    assert re.search(r"visible\s+2\n", done.stdout)
    assert re.search(r"total\s+2\n", done.stdout)
    assert re.search(r"dlq\s+1 ", done.stdout)
    assert "unhealthy" in done.stdout
    assert "DLQ contains 1 messages" in done.stdout


def test_stats_json_parses_to_the_health_document(queue_env: dict[str, str], boto_sqs: Any) -> None:
    boto_sqs.send_message(QueueUrl=queue_env["AWS_SQS_QUEUE_URL"], MessageBody="x")
    done = goraxfast(queue_env, "stats", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["status"], doc["metrics"]["visible"], doc["metrics"]["dlq_depth"]) == (
        "healthy",
        1,
        0,
    )


def test_stats_on_a_missing_queue_fails_with_its_url_not_a_traceback(
    queue_env: dict[str, str], boto_sqs: Any
) -> None:
    boto_sqs.delete_queue(QueueUrl=queue_env["AWS_SQS_QUEUE_URL"])
    done = goraxfast(queue_env, "stats")
    assert done.returncode == 1
    assert queue_env["AWS_SQS_QUEUE_URL"] in done.stderr
    assert "Traceback" not in done.stderr


def test_fifo_queue_gets_a_fifo_dlq_name() -> None:
    assert (dlq_name_for("jobs"), dlq_name_for("jobs.fifo")) == ("jobs-dlq", "jobs-dlq.fifo")


# --- every mistake one line -------------------------------------------------------------------------

NOWHERE = "http://127.0.0.1:9"  # never contacted: a mistake is found before any call
QUEUE = f"{NOWHERE}/000000000000/orders"
TESTS = Path(__file__).parent


def mistake_env(**extra: str) -> dict[str, str]:
    return cli_env(NOWHERE, **{"AWS_SQS_QUEUE_URL": QUEUE, **extra})


#: id, arguments, environment, and each expected stderr line, in order (`` … ``: anything).
MISTAKES: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    # the environment
    (
        "poll interval 1e309",
        ["stats"],
        mistake_env(QUEUE_POLL_INTERVAL="1e309"),
        ["goraxfast stats: QUEUE_POLL_INTERVAL='1e309': a number from 0 to 3600"],
    ),
    (
        "retry base 1e309",
        ["stats"],
        mistake_env(QUEUE_RETRY_BASE_SECONDS="1e309"),
        ["QUEUE_RETRY_BASE_SECONDS='1e309': a number from 0 to 43200"],
    ),
    (
        "grace nan",
        ["stats"],
        mistake_env(WORKER_SHUTDOWN_GRACE_SECONDS="nan"),
        ["WORKER_SHUTDOWN_GRACE_SECONDS='nan': a number from 0 to 43200"],
    ),
    (
        "tenant named twice",
        ["stats"],
        mistake_env(WORKER_TENANT_LIMITS="a=1,b=2,a=3"),
        ["WORKER_TENANT_LIMITS='a=1,b=2,a=3': … 'a' is named twice"],
    ),
    (
        "key without secret",
        ["stats"],
        mistake_env(AWS_SECRET_ACCESS_KEY=""),
        ["AWS_SECRET_ACCESS_KEY='': required when AWS_ACCESS_KEY_ID is set"],
    ),
    (
        "secret without key",
        ["stats"],
        mistake_env(AWS_ACCESS_KEY_ID=""),
        ["AWS_ACCESS_KEY_ID='': required when AWS_SECRET_ACCESS_KEY is set"],
    ),
    (
        "unknown profile",
        ["stats"],
        mistake_env(AWS_PROFILE="nope", AWS_CONFIG_FILE="/nonexistent/config"),
        ["AWS_PROFILE='nope': a profile defined in /nonexistent/config"],
    ),
    (
        "health host that is a name",
        ["run", "--handler", "json:dumps"],
        mistake_env(WORKER_HEALTH_HOST="health.invalid"),
        ["WORKER_HEALTH_HOST='health.invalid': an IP address to listen on"],
    ),
    (
        "endpoint without scheme",
        ["stats"],
        mistake_env(AWS_ENDPOINT="localhost:4566"),
        ["AWS_ENDPOINT='localhost:4566': an http:// or https:// URL"],
    ),
    (
        "queue URL without a queue name",
        ["stats"],
        mistake_env(AWS_SQS_QUEUE_URL=NOWHERE),
        [f"AWS_SQS_QUEUE_URL='{NOWHERE}': … (no queue name after the host)"],
    ),
    (
        "DLQ that is the main queue",
        ["stats"],
        mistake_env(AWS_SQS_DLQ_URL=QUEUE),
        ["AWS_SQS_DLQ_URL= … a queue other than AWS_SQS_QUEUE_URL"],
    ),
    (
        "no queue URL",
        ["publish", "--count", "1"],
        cli_env(NOWHERE),
        ["goraxfast publish: AWS_SQS_QUEUE_URL='': required to consume or publish"],
    ),
    # flags
    ("watch 0", ["stats", "--watch", "0"], mistake_env(), ["--watch='0': a number from 1 to"]),
    ("watch -1", ["stats", "--watch", "-1"], mistake_env(), ["--watch='-1': a number from 1 to"]),
    ("watch inf", ["stats", "--watch", "inf"], mistake_env(), ["--watch='inf': a number from 1"]),
    (
        "count -5",
        ["publish", "--count", "-5"],
        mistake_env(),
        ["goraxfast publish: --count='-5': an integer from 1 to 1000000"],
    ),
    ("count 0", ["publish", "--count", "0"], mistake_env(), ["--count='0': an integer from 1"]),
    ("count 1e3", ["publish", "--count", "1e3"], mistake_env(), ["--count='1e3': an integer"]),
    ("tenants 0", ["publish", "--tenants", "0"], mistake_env(), ["--tenants='0': an integer"]),
    (
        "missing file",
        ["publish", "--file", "/nonexistent/m.jsonl"],
        mistake_env(),
        ["--file='/nonexistent/m.jsonl': a readable JSON-lines file (No such file or directory)"],
    ),
    (
        "tenants with a file",
        ["publish", "--file", str(Path(__file__)), "--tenants", "3"],
        mistake_env(),
        ["--tenants='3': only with --count"],
    ),
    (
        "queue name with a space",
        ["queues", "create", "--name", "my queue"],
        mistake_env(),
        ["goraxfast queues create: --name='my queue': a queue name: 1-80 letters"],
    ),
    (
        "max receive count 0",
        ["queues", "create", "--max-receive-count", "0"],
        mistake_env(),
        ["--max-receive-count='0': an integer from 1 to 1000"],
    ),
    (
        "visibility over 12 h",
        ["queues", "create", "--visibility-timeout", "43201"],
        mistake_env(),
        ["--visibility-timeout='43201': an integer from 0 to 43200"],
    ),
    (
        "standard DLQ of a FIFO queue",
        ["queues", "create", "--name", "jobs.fifo", "--dlq-name", "jobs-dlq"],
        mistake_env(),
        ["--dlq-name='jobs-dlq': a FIFO queue (ending .fifo), as --name 'jobs.fifo' is"],
    ),
    (
        "handler without a colon",
        ["run", "--handler", "myapp.jobs"],
        mistake_env(),
        ["goraxfast run: --handler='myapp.jobs': MODULE:FUNCTION"],
    ),
    (
        "handler that cannot be imported",
        ["run", "--handler", "no_such_module:handle"],
        mistake_env(),
        ["--handler='no_such_module:handle': cannot import handler module 'no_such_module'"],
    ),
    (
        "handler not callable",
        ["run", "--handler", "json:__doc__"],
        mistake_env(),
        ["--handler='json:__doc__': handler 'json:__doc__' is not callable"],
    ),
    (
        "workers 0",
        ["run", "--handler", "json:dumps", "--workers", "0"],
        mistake_env(),
        ["--workers='0'"],
    ),
    ("log level", ["--log-level", "loud", "stats"], mistake_env(), ["--log-level='loud': one of"]),
    # what argparse itself refuses, one line too
    ("no command", [], mistake_env(), ["goraxfast: the following arguments are required: COMMAND"]),
    ("unknown command", ["stat"], mistake_env(), ["goraxfast: argument COMMAND: invalid choice"]),
    ("unknown flag", ["stats", "--wat"], mistake_env(), ["unrecognized arguments: --wat"]),
    ("run without handler", ["run"], mistake_env(), ["required: --handler"]),
    (
        "count and file",
        ["publish", "--count", "1", "--file", "x"],
        mistake_env(),
        ["argument --file: not allowed with argument --count"],
    ),
    # several at once: all of them, flags first
    (
        "every problem at once",
        ["publish", "--count", "-5", "--tenants", "0"],
        cli_env(NOWHERE, QUEUE_MAX_MESSAGES="50", QUEUE_ENABLED="maybe", AWS_ACCESS_KEY_ID=""),
        [
            "--count='-5'",
            "--tenants='0'",
            "QUEUE_ENABLED='maybe'",
            "QUEUE_MAX_MESSAGES='50'",
            "AWS_ACCESS_KEY_ID='': required when AWS_SECRET_ACCESS_KEY is set",
            "AWS_SQS_QUEUE_URL='': required to consume or publish",
        ],
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "lines"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_a_mistake_is_one_line_each_and_exit_2(
    args: list[str], env: dict[str, str], lines: list[str]
) -> None:
    done = goraxfast(env, *args)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    got = done.stderr.splitlines()
    assert len(got) == len(lines), got
    for expected, line in zip(lines, got, strict=True):
        assert all(part in line for part in expected.split(" … ")), (expected, line)
    assert done.stdout == ""


def test_version_is_the_installed_package_version() -> None:
    done = goraxfast(mistake_env(), "--version")

    assert (done.returncode, done.stdout) == (0, f"goraxfast {version('goraxfast')}\n")


# --- a closed stdout ends the command quietly ---------------------------------------------------------


def goraxfast_into_closed_pipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with stdout a pipe whose reader has already gone (``| head`` done)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "goraxfast", *args],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def quiet(stderr: str) -> bool:
    return not any(word in stderr for word in ("Traceback", "BrokenPipe", "Exception ignored"))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["stats", "--help"], ["stats"], ["stats", "--json"]],
    ids=lambda a: " ".join(a),
)
def test_a_closed_stdout_ends_the_command_quietly(
    queue_env: dict[str, str], args: list[str]
) -> None:
    done = goraxfast_into_closed_pipe(queue_env, *args)

    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_a_closed_stdout_ends_publish_quietly_after_publishing(
    queue_env: dict[str, str], boto_sqs: Any
) -> None:
    done = goraxfast_into_closed_pipe(queue_env, "publish", "--count", "3")

    assert done.returncode == 141, done.stderr
    assert quiet(done.stderr)
    assert depth(boto_sqs, queue_env["AWS_SQS_QUEUE_URL"]) == 3


def test_a_closed_stdout_ends_queues_create_quietly(
    sqs_endpoint: str, created_names: list[str]
) -> None:
    name = f"cli-pipe-{os.getpid()}"
    created_names += [name, f"{name}-dlq"]

    done = goraxfast_into_closed_pipe(cli_env(sqs_endpoint), "queues", "create", "--name", name)

    assert done.returncode == 141, done.stderr
    assert quiet(done.stderr)


def test_stats_watch_ends_quietly_when_its_reader_stops_reading(queue_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "goraxfast", "stats", "--watch", "1", "--json"],
        env=queue_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert json.loads(proc.stdout.readline())["status"] == "healthy"  # `| head -1`
        proc.stdout.close()
        assert proc.wait(timeout=60) == 141
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()


# --- run: a port already taken, the handler's own log lines, its failures ----------------------------


def test_run_with_the_health_port_in_use_exits_2_with_one_line(queue_env: dict[str, str]) -> None:
    with socket.socket() as other_engine:
        other_engine.bind(("127.0.0.1", 0))
        other_engine.listen()
        port = other_engine.getsockname()[1]

        done = goraxfast(
            {**queue_env, "WORKER_HEALTH_PORT": str(port), "WORKER_PROCESSES": "1"},
            "run",
            "--handler",
            "json:dumps",
        )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if "WORKER_HEALTH_PORT" in line]
    assert line.startswith(f"goraxfast run: WORKER_HEALTH_PORT='{port}': cannot listen on ")
    assert "Address already in use" in line


def test_run_logs_the_handlers_own_lines_and_its_traceback_without_v(
    queue_env: dict[str, str], boto_sqs: Any
) -> None:
    boto_sqs.send_message(
        QueueUrl=queue_env["AWS_SQS_QUEUE_URL"],
        MessageBody=json.dumps(
            {
                "execution_id": "exec-logged",
                "tenant_id": "t1",
                "workflow_id": "w",
                "workflow_version": 1,
                "trigger_type": "test",
            }
        ),
    )
    env = {
        **queue_env,
        "PYTHONPATH": str(TESTS),
        "WORKER_HEALTH_PORT": "0",
        "WORKER_PROCESSES": "1",
        "QUEUE_WAIT_TIME_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "goraxfast", "run", "--handler", "cli_handlers:logs_then_fails"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:  # until the worker's traceback has been written (an event)
            lines.append(line)
            if line.startswith("ValueError: bad input in exec-logged"):
                break
        proc.send_signal(signal.SIGTERM)
        lines += proc.stderr.readlines()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    log = "".join(lines)
    assert "INFO myapp.jobs: handling exec-logged" in log
    assert "WARNING myapp.jobs: about to fail on exec-logged" in log
    assert "debug detail" not in log
    assert re.search(
        r"ERROR goraxfast\.worker: handler cli_handlers:logs_then_fails raised on message \S+ "
        r"\(receive count 1, tenant t1, execution exec-logged, worker 0\) \[message_id=\S+ "
        r"execution_id=exec-logged tenant_id=t1 receive_count=1 worker=0\]\nTraceback",
        log,
    ), log
