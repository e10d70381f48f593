"""The command's log settings: flags over the environment, mistakes reported with the others,
and the start line of ``goraxfast run`` with the whole configuration, credentials masked.

The engine embedded as a library leaves the application's logging as it found it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import signal
import subprocess
import sys
from typing import Any

import orjson
import pytest
from test_cli import cli_env, goraxfast

from goraxfast.cli.main import build_parser, log_settings
from goraxfast.config import SETTINGS, Config
from goraxfast.engine.engine import Engine
from goraxfast.testing import InMemoryQueue

NOWHERE = "http://127.0.0.1:9"
QUEUE = f"{NOWHERE}/000000000000/q"
SECRET = "s3cr3t-never-logged"
TOKEN = "token-never-logged"
KEY_ID = "AKIDNEVERLOGGED"


def env_of(**extra: str) -> dict[str, str]:
    return cli_env(NOWHERE, **{"AWS_SQS_QUEUE_URL": QUEUE, **extra})


# --- which level and format ---------------------------------------------------------------------

DEBUG, INFO, WARN, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
RUN = ["run", "--handler", "json:dumps"]

#: flags, environment, (level, format) in effect
SETTINGS_CASES: list[tuple[str, list[str], dict[str, str], tuple[int, str]]] = [
    ("run by default", RUN, {}, (INFO, "text")),
    ("other commands by default", ["stats"], {}, (WARN, "text")),
    ("the environment's level", RUN, {"GORAXFAST_LOG_LEVEL": "error"}, (ERROR, "text")),
    ("the environment's format", ["stats"], {"GORAXFAST_LOG_FORMAT": "json"}, (WARN, "json")),
    (
        "the level flag wins",
        ["--log-level", "debug", *RUN],
        {"GORAXFAST_LOG_LEVEL": "error"},
        (DEBUG, "text"),
    ),
    (
        "the format flag wins",
        ["stats", "--log-format", "text"],
        {"GORAXFAST_LOG_FORMAT": "json"},
        (WARN, "text"),
    ),
    ("the format flag before the command", ["--log-format", "json", *RUN], {}, (INFO, "json")),
    ("-v on run", ["-v", *RUN], {}, (DEBUG, "text")),
    ("-v on other commands", ["stats", "-v"], {}, (INFO, "text")),
    (
        "-v: one step past the environment",
        ["stats", "-v"],
        {"GORAXFAST_LOG_LEVEL": "error"},
        (WARN, "text"),
    ),
    ("-v at debug stays there", ["-v", *RUN], {"GORAXFAST_LOG_LEVEL": "debug"}, (DEBUG, "text")),
    ("--log-level wins over -v", ["-v", "--log-level", "error", *RUN], {}, (ERROR, "text")),
]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [c[1:] for c in SETTINGS_CASES],
    ids=[c[0] for c in SETTINGS_CASES],
)
def test_the_log_level_and_format_in_effect(
    args: list[str], env: dict[str, str], expected: tuple[int, str]
) -> None:
    parsed = build_parser().parse_args(args)

    assert log_settings(parsed, parsed._command, Config.from_env(env)) == expected


# --- mistakes -----------------------------------------------------------------------------------


def test_a_bad_log_format_is_one_line_beside_another_bad_setting_and_exit_2() -> None:
    done = goraxfast(env_of(GORAXFAST_LOG_FORMAT="xml", QUEUE_MAX_MESSAGES="50"), "stats")

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "goraxfast stats: QUEUE_MAX_MESSAGES='50': an integer from 1 to 10",
        "goraxfast stats: GORAXFAST_LOG_FORMAT='xml': one of: text, json",
    ]


def test_bad_log_flags_are_reported_in_declared_order_before_the_environments_mistakes() -> None:
    done = goraxfast(
        env_of(GORAXFAST_LOG_LEVEL="loud"), "--log-format", "yaml", "stats", "--log-level", "lots"
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "goraxfast stats: --log-level='lots': one of: debug, info, warning, error",
        "goraxfast stats: --log-format='yaml': one of: text, json",
        "goraxfast stats: GORAXFAST_LOG_LEVEL='loud': one of: debug, info, warning, error",
    ]


# --- the start line -----------------------------------------------------------------------------


def start_line(env: dict[str, str], *flags: str) -> tuple[str, str]:
    """Run the engine until its start line, then SIGTERM it: (that line, all it wrote)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "goraxfast", *flags, "run", "--handler", "json:dumps"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:  # the start line is an event: the engine is running
            lines.append(line)
            if "engine running:" in line:
                break
        proc.send_signal(signal.SIGTERM)
        lines += proc.stderr.readlines()
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        proc.kill()
        proc.wait()
    [line] = [line for line in lines if "engine running:" in line]
    return line, "".join(lines)


@pytest.fixture
def secret_env(sqs_endpoint: str, queue_pair: tuple[str, str]) -> dict[str, str]:
    return env_of(
        AWS_ENDPOINT=sqs_endpoint,
        AWS_SQS_QUEUE_URL=queue_pair[0],
        AWS_SQS_DLQ_URL=queue_pair[1],
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_SESSION_TOKEN=TOKEN,
        WORKER_HEALTH_PORT="0",
        WORKER_PROCESSES="1",
        QUEUE_WAIT_TIME_SECONDS="1",
        QUEUE_MAX_RETRIES="4",
        QUEUE_RETRY_BASE_SECONDS="2.5",
        WORKER_TENANT_LIMITS="t-a=2,t-b=5",
    )


def test_the_json_start_line_has_every_setting_with_credentials_masked(
    secret_env: dict[str, str], queue_pair: tuple[str, str]
) -> None:
    env = {**secret_env, "GORAXFAST_LOG_FORMAT": "json", "GORAXFAST_SQS_CLIENT": "botocore"}

    line, everything = start_line(env)

    for secret in (SECRET, TOKEN, KEY_ID):
        assert secret not in everything
    doc = orjson.loads(line)
    assert (doc["level"], doc["logger"]) == ("INFO", "goraxfast.engine")
    config = doc["config"]
    assert list(config) == [s.env for s in SETTINGS]
    assert config["AWS_SECRET_ACCESS_KEY"] == config["AWS_SESSION_TOKEN"] == "***"
    assert config["AWS_ACCESS_KEY_ID"] == "***"
    assert config["QUEUE_MAX_RETRIES"] == 4
    assert config["WORKER_TENANT_LIMITS"] == {"t-a": 2, "t-b": 5}
    assert config["GORAXFAST_LOG_FORMAT"] == "json"
    engine = doc["engine"]
    assert engine["version"] == importlib.metadata.version("goraxfast")
    assert engine["client"] == "botocore"
    assert engine["region"] == "us-east-1"
    assert (engine["queue_url"], engine["dlq_url"]) == queue_pair
    assert engine["fifo"] is False
    assert (engine["max_retries"], engine["retry_base_s"], engine["retry_max_s"]) == (4, 2.5, 300)
    assert engine["workers"] == 1 and engine["handler"] == "json:dumps"
    assert f"goraxfast {engine['version']}, " in doc["message"]
    assert f"DLQ {queue_pair[1]}" in doc["message"]


def test_flags_win_over_the_environment_for_the_start_line_in_text(
    secret_env: dict[str, str], queue_pair: tuple[str, str]
) -> None:
    """The environment asks for JSON at ERROR (no start line at all); the flags for text at INFO."""
    env = {**secret_env, "GORAXFAST_LOG_FORMAT": "json", "GORAXFAST_LOG_LEVEL": "error"}

    line, everything = start_line(env, "--log-format", "text", "--log-level", "info")

    for secret in (SECRET, TOKEN, KEY_ID):
        assert secret not in everything
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO goraxfast\.engine: engine running: ", line
    )
    for pair in (
        "AWS_ACCESS_KEY_ID=***",
        "AWS_SECRET_ACCESS_KEY=***",
        "AWS_SESSION_TOKEN=***",
        f"AWS_SQS_DLQ_URL={queue_pair[1]}",
        "QUEUE_MAX_RETRIES=4",
        "QUEUE_RETRY_BASE_SECONDS=2.5",
        'WORKER_TENANT_LIMITS="t-a=2,t-b=5"',
        "GORAXFAST_SQS_CLIENT=fast",
        "GORAXFAST_LOG_FORMAT=json",  # the environment's value, as configured
    ):
        assert f" {pair} " in line or line.rstrip().endswith(f" {pair}"), pair
    assert all(f" {s.env}=" in line for s in SETTINGS)
    assert "fast client, region us-east-1, standard queue " in line
    assert "retries: dead-lettered at receive 4, backoff 2.5-300 s" in line


# --- embedded --------------------------------------------------------------------------------------


async def test_an_embedded_engine_leaves_the_applications_logging_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("goraxfast").handlers[:])
    queue = InMemoryQueue()
    caplog.set_level(logging.INFO, logger="goraxfast.engine")

    async with Engine(queue.config(worker_processes=1), _noop, data_plane=queue, serve_http=False):
        pass

    assert (list(root.handlers), root.level, logging.getLogger("goraxfast").handlers) == before
    [start] = [r for r in caplog.records if r.getMessage().startswith("engine running:")]
    record: Any = start
    assert record.config["AWS_SQS_QUEUE_URL"] == queue.url
    assert record.engine["client"] == "injected (InMemoryQueue)"


def _noop(message: Any) -> None:
    pass
