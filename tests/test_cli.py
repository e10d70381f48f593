"""The ``goraxfast`` command run as a real subprocess against the moto server fixture."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goraxfast.cli import dlq_name_for

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


def test_bad_environment_lists_every_problem_and_exits_2(sqs_endpoint: str) -> None:
    env = cli_env(sqs_endpoint, QUEUE_MAX_MESSAGES="50", QUEUE_ENABLED="maybe")
    done = goraxfast(env, "stats")
    assert done.returncode == 2
    assert "QUEUE_MAX_MESSAGES='50'" in done.stderr
    assert "QUEUE_ENABLED='maybe'" in done.stderr
    assert "Traceback" not in done.stderr


def test_publish_without_queue_url_exits_2_naming_the_variable(sqs_endpoint: str) -> None:
    done = goraxfast(cli_env(sqs_endpoint), "publish", "--count", "1")
    assert done.returncode == 2
    assert "AWS_SQS_QUEUE_URL" in done.stderr


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
