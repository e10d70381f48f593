"""Config from the environment: gorax's names and defaults, validated in one pass.

A deployment's existing gorax environment must start goraxfast unchanged; a bad value is never
replaced silently: every bad variable is reported at once, with its name, value and allowed range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goraxfast.config import SETTINGS, Config, Setting
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError

SETTINGS_BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}

#: gorax's settings (the README's "Configuration" table), row by row: variable, Config
#: attribute, default when unset.
SPEC_DEFAULTS: list[tuple[str, str, Any]] = [
    ("QUEUE_ENABLED", "enabled", False),
    ("AWS_REGION", "aws_region", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id", ""),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", ""),
    ("AWS_ENDPOINT", "aws_endpoint", ""),
    ("AWS_SQS_QUEUE_URL", "queue_url", ""),
    ("AWS_SQS_DLQ_URL", "dlq_url", ""),
    ("QUEUE_MAX_MESSAGES", "max_messages", 10),
    ("QUEUE_WAIT_TIME_SECONDS", "wait_time_s", 20),
    ("QUEUE_VISIBILITY_TIMEOUT", "visibility_timeout_s", 30),
    ("QUEUE_MAX_RETRIES", "max_retries", 3),
    ("QUEUE_PROCESS_TIMEOUT", "process_timeout_s", 300),
    ("QUEUE_POLL_INTERVAL", "poll_interval_s", 1),
    ("QUEUE_CONCURRENT_WORKERS", "concurrent_workers", 10),
    ("QUEUE_DELETE_AFTER_PROCESS", "delete_after_process", True),
    ("WORKER_MAX_CONCURRENCY_PER_TENANT", "max_concurrency_per_tenant", 10),
    ("WORKER_HEALTH_PORT", "health_port", 8081),
]

#: One valid value for every variable goraxfast reads, and what it parses to.
VALID: dict[str, tuple[str, Any]] = {
    "QUEUE_ENABLED": ("true", True),
    "AWS_REGION": ("eu-west-3", "eu-west-3"),
    "AWS_ACCESS_KEY_ID": ("AKIDEXAMPLE", "AKIDEXAMPLE"),
    "AWS_SECRET_ACCESS_KEY": ("s3cr3t/Key+", "s3cr3t/Key+"),
    "AWS_SESSION_TOKEN": ("session-token", "session-token"),
    "AWS_ENDPOINT": ("http://localhost:4566", "http://localhost:4566"),
    "AWS_SQS_QUEUE_URL": (
        "https://sqs.eu-west-3.amazonaws.com/123456789012/main",
        "https://sqs.eu-west-3.amazonaws.com/123456789012/main",
    ),
    "AWS_SQS_DLQ_URL": (
        "https://sqs.eu-west-3.amazonaws.com/123456789012/main-dlq",
        "https://sqs.eu-west-3.amazonaws.com/123456789012/main-dlq",
    ),
    "QUEUE_MAX_MESSAGES": ("5", 5),
    "QUEUE_WAIT_TIME_SECONDS": ("0", 0),
    "QUEUE_VISIBILITY_TIMEOUT": ("900", 900),
    "QUEUE_MAX_RETRIES": ("7", 7),
    "QUEUE_PROCESS_TIMEOUT": ("12.5", 12.5),
    "QUEUE_POLL_INTERVAL": ("0", 0.0),
    "QUEUE_CONCURRENT_WORKERS": ("64", 64),
    "QUEUE_DELETE_AFTER_PROCESS": ("false", False),
    "WORKER_MAX_CONCURRENCY_PER_TENANT": ("2", 2),
    "WORKER_HEALTH_PORT": ("9000", 9000),
    "WORKER_HEALTH_HOST": ("0.0.0.0", "0.0.0.0"),
    "WORKER_PROCESSES": ("4", 4),
    "QUEUE_POLLERS": ("3", 3),
    "QUEUE_PREFETCH": ("0", 0),
    "QUEUE_PIPELINE": ("Fixed", "fixed"),
    "QUEUE_ACK_FLUSH_MS": ("50", 50),
    "WORKER_SHUTDOWN_GRACE_SECONDS": ("12.5", 12.5),
    "WORKER_MAX_MESSAGES": ("1000", 1000),
    "WORKER_MAX_MEMORY_MB": ("2048", 2048),
    "WORKER_TENANT_LIMITS": ("tenant-a=2,tenant-b=5", {"tenant-a": 2, "tenant-b": 5}),
    "QUEUE_RETRY_BASE_SECONDS": ("10", 10.0),
    "QUEUE_RETRY_MAX_SECONDS": ("600", 600.0),
    "WORKER_THROTTLE_MAX_WAIT_SECONDS": ("120", 120.0),
    "WORKER_THROTTLE_RELEASE_DELAY_SECONDS": ("900", 900),
    "QUEUE_METRICS_INTERVAL": ("0.5", 0.5),
    "QUEUE_MAX_DEPTH": ("1000", 1000),
    "WORKER_RING_BYTES": ("8388608", 8 * 1024 * 1024),
    "GORAXFAST_SQS_CLIENT": ("FAST", "fast"),
    "QUEUE_FIFO_GROUP_BY": ("Tenant_ID", "tenant_id"),
    "QUEUE_FAIR_QUEUE": ("false", False),
    "GORAXFAST_LOG_LEVEL": ("Debug", "debug"),
    "GORAXFAST_LOG_FORMAT": ("JSON", "json"),
}

#: The edges of every range are allowed.
BOUNDS: list[tuple[str, str, Any]] = [
    ("QUEUE_MAX_MESSAGES", "1", 1),
    ("QUEUE_MAX_MESSAGES", "10", 10),
    ("QUEUE_WAIT_TIME_SECONDS", "0", 0),
    ("QUEUE_WAIT_TIME_SECONDS", "20", 20),
    ("QUEUE_VISIBILITY_TIMEOUT", "0", 0),
    ("QUEUE_VISIBILITY_TIMEOUT", "43200", 43200),
    ("QUEUE_MAX_RETRIES", "1", 1),
    ("QUEUE_PROCESS_TIMEOUT", "0.001", 0.001),
    ("QUEUE_POLL_INTERVAL", "0", 0.0),
    ("QUEUE_CONCURRENT_WORKERS", "1", 1),
    ("WORKER_MAX_CONCURRENCY_PER_TENANT", "1", 1),
    ("WORKER_HEALTH_PORT", "0", 0),
    ("WORKER_HEALTH_PORT", "65535", 65535),
    ("WORKER_PROCESSES", "1", 1),
    ("WORKER_PROCESSES", "1024", 1024),
    ("QUEUE_POLLERS", "128", 128),
    ("QUEUE_PREFETCH", "10000", 10000),
    ("QUEUE_PREFETCH", "auto", None),
    ("QUEUE_PREFETCH", "AUTO", None),
    ("QUEUE_ACK_FLUSH_MS", "10000", 10000),
    ("QUEUE_RETRY_MAX_SECONDS", "43200", 43200.0),
    ("WORKER_THROTTLE_RELEASE_DELAY_SECONDS", "0", 0),
    ("WORKER_RING_BYTES", "2097152", 2 * 1024 * 1024),
    ("WORKER_RING_BYTES", "1073741824", 1 << 30),
    ("QUEUE_MAX_RETRIES", "1000", 1000),
    ("QUEUE_PROCESS_TIMEOUT", "43200", 43200.0),
    ("QUEUE_POLL_INTERVAL", "3600", 3600.0),
    ("QUEUE_CONCURRENT_WORKERS", "10000", 10000),
    ("WORKER_SHUTDOWN_GRACE_SECONDS", "43200", 43200.0),
    ("QUEUE_RETRY_BASE_SECONDS", "43200", 43200.0),
    ("WORKER_THROTTLE_MAX_WAIT_SECONDS", "43200", 43200.0),
    ("QUEUE_METRICS_INTERVAL", "0.1", 0.1),
    ("QUEUE_METRICS_INTERVAL", "86400", 86400.0),
]

#: Values some setups use that must keep working.
ACCEPTED: list[tuple[str, str, Any]] = [
    ("AWS_REGION", "elasticmq", "elasticmq"),  # ElasticMQ's region name
    ("AWS_REGION", "us-gov-west-1", "us-gov-west-1"),
    ("AWS_ACCESS_KEY_ID", "test", "test"),  # LocalStack's
    ("AWS_ENDPOINT", "HTTPS://sqs.us-east-1.amazonaws.com", "HTTPS://sqs.us-east-1.amazonaws.com"),
    ("AWS_ENDPOINT", "http://[::1]:4566", "http://[::1]:4566"),
    ("AWS_ENDPOINT", "http://localhost:4566/", "http://localhost:4566/"),
    ("AWS_SQS_QUEUE_URL", "http://localhost:9324/queue/jobs", "http://localhost:9324/queue/jobs"),
    ("AWS_SQS_QUEUE_URL", "http://x/q", "http://x/q"),
    ("AWS_SQS_QUEUE_URL", "https://h/1/jobs.fifo", "https://h/1/jobs.fifo"),
    ("AWS_SQS_QUEUE_URL", "https://h/1/" + "q" * 80, "https://h/1/" + "q" * 80),
    ("WORKER_HEALTH_HOST", "localhost", "localhost"),
    ("WORKER_HEALTH_HOST", "LocalHost", "localhost"),
    ("WORKER_HEALTH_HOST", "::", "::"),
    ("WORKER_HEALTH_HOST", "::1", "::1"),
    ("WORKER_HEALTH_HOST", "10.1.2.3", "10.1.2.3"),
    ("WORKER_TENANT_LIMITS", "a=1,b=1,c=1", {"a": 1, "b": 1, "c": 1}),
]

_BOOL = "1 t true yes on / 0 f false no off"
_URL = "http:// or https://"
_QUEUE_URL = "queue URL ending in the queue name"
_IP = "an IP address to listen on (127.0.0.1, 0.0.0.0, ::1, ::) or localhost"
_CREDENTIAL = "printable ASCII without spaces"

#: Bad values: variable, value, a fragment of the allowed range the error must state.
BAD: list[tuple[str, str, str]] = [
    ("QUEUE_ENABLED", "maybe", _BOOL),
    ("QUEUE_ENABLED", "2", _BOOL),
    ("QUEUE_ENABLED", "truee", _BOOL),
    ("QUEUE_DELETE_AFTER_PROCESS", "nope", _BOOL),
    ("AWS_REGION", "US East 1", "a region name like us-east-1"),
    ("AWS_REGION", "us_east_1", "a region name like us-east-1"),
    ("AWS_REGION", "us-east-1.", "a region name like us-east-1"),
    ("AWS_ACCESS_KEY_ID", "AKID EXAMPLE", _CREDENTIAL),
    ("AWS_ACCESS_KEY_ID", "'AKIDEXAMPLE\u2019", _CREDENTIAL),
    ("AWS_SECRET_ACCESS_KEY", "s3cr3t key", _CREDENTIAL),
    ("AWS_SESSION_TOKEN", "token\nmore", _CREDENTIAL),
    ("AWS_ENDPOINT", "localhost:4566", _URL),
    ("AWS_ENDPOINT", "ftp://localhost", _URL),
    ("AWS_ENDPOINT", "http://", "(no host)"),
    ("AWS_ENDPOINT", "http://:4566", "(no host)"),
    ("AWS_ENDPOINT", "http://localhost:99999", "port out of range"),
    ("AWS_ENDPOINT", "http://localhost:port", "port could not be cast"),
    ("AWS_ENDPOINT", "http://localhost:0", "(port 0)"),
    ("AWS_ENDPOINT", "http://[::1:4566", "invalid ipv6 url"),
    ("AWS_ENDPOINT", "http://local host:4566", "(spaces, control or non-ASCII characters)"),
    ("AWS_ENDPOINT", "http://localhost:4566?region=x", "(a query or fragment)"),
    ("AWS_ENDPOINT", "http://key:secret@localhost:4566", "user:password@"),
    ("AWS_SQS_QUEUE_URL", "my-queue", _URL),
    ("AWS_SQS_QUEUE_URL", "http://localhost:4566", "(no queue name after the host)"),
    ("AWS_SQS_QUEUE_URL", "http://localhost:4566/000000000000/", "(no queue name after the host)"),
    ("AWS_SQS_QUEUE_URL", "http://localhost:4566/0/orders!", "the queue name 'orders!' is not"),
    ("AWS_SQS_QUEUE_URL", "http://localhost:4566/0/" + "q" * 81, _QUEUE_URL),
    ("AWS_SQS_QUEUE_URL", "http://localhost:4566/0/q#frag", "(a query or fragment)"),
    ("AWS_SQS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/my queue", "(spaces"),
    ("AWS_SQS_DLQ_URL", "sqs://dlq", _URL),
    ("AWS_SQS_DLQ_URL", "http://localhost:4566/", "(no queue name after the host)"),
    ("QUEUE_MAX_MESSAGES", "ten", "an integer from 1 to 10"),
    ("QUEUE_MAX_MESSAGES", "1.5", "an integer from 1 to 10"),
    ("QUEUE_MAX_MESSAGES", "0", "an integer from 1 to 10"),
    ("QUEUE_MAX_MESSAGES", "11", "an integer from 1 to 10"),
    ("QUEUE_MAX_MESSAGES", "9" * 5000, "an integer from 1 to 10"),
    ("QUEUE_WAIT_TIME_SECONDS", "x", "an integer from 0 to 20"),
    ("QUEUE_WAIT_TIME_SECONDS", "-1", "an integer from 0 to 20"),
    ("QUEUE_WAIT_TIME_SECONDS", "21", "an integer from 0 to 20"),
    ("QUEUE_VISIBILITY_TIMEOUT", "30s", "an integer from 0 to 43200"),
    ("QUEUE_VISIBILITY_TIMEOUT", "-1", "an integer from 0 to 43200"),
    ("QUEUE_VISIBILITY_TIMEOUT", "43201", "an integer from 0 to 43200"),
    ("QUEUE_MAX_RETRIES", "three", "an integer from 1 to 1000"),
    ("QUEUE_MAX_RETRIES", "0", "an integer from 1 to 1000"),
    ("QUEUE_MAX_RETRIES", "1001", "an integer from 1 to 1000"),
    ("QUEUE_PROCESS_TIMEOUT", "5m", "a number > 0"),
    ("QUEUE_PROCESS_TIMEOUT", "0", "a number > 0"),
    ("QUEUE_PROCESS_TIMEOUT", "-1", "a number > 0"),
    ("QUEUE_PROCESS_TIMEOUT", "nan", "a number > 0"),
    ("QUEUE_PROCESS_TIMEOUT", "inf", "a number > 0"),
    ("QUEUE_PROCESS_TIMEOUT", "43200.5", "a number > 0 and <= 43200"),
    ("QUEUE_POLL_INTERVAL", "1s", "a number from 0 to 3600"),
    ("QUEUE_POLL_INTERVAL", "-0.5", "a number from 0 to 3600"),
    ("QUEUE_POLL_INTERVAL", "1e309", "a number from 0 to 3600"),
    ("QUEUE_POLL_INTERVAL", "1e300", "a number from 0 to 3600"),
    ("QUEUE_CONCURRENT_WORKERS", "many", "an integer from 1 to 10000"),
    ("QUEUE_CONCURRENT_WORKERS", "0", "an integer from 1 to 10000"),
    ("QUEUE_CONCURRENT_WORKERS", "10001", "an integer from 1 to 10000"),
    ("WORKER_MAX_CONCURRENCY_PER_TENANT", "x", "an integer >= 1"),
    ("WORKER_MAX_CONCURRENCY_PER_TENANT", "0", "an integer >= 1"),
    ("WORKER_HEALTH_PORT", "http", "an integer from 0 to 65535"),
    ("WORKER_HEALTH_PORT", "-1", "an integer from 0 to 65535"),
    ("WORKER_HEALTH_PORT", "65536", "an integer from 0 to 65535"),
    ("WORKER_HEALTH_HOST", "example.invalid", _IP),
    ("WORKER_HEALTH_HOST", "not a host", _IP),
    ("WORKER_HEALTH_HOST", "[::1]", _IP),
    ("WORKER_HEALTH_HOST", "127.0.0.1:8081", _IP),
    ("WORKER_HEALTH_HOST", "256.0.0.1", _IP),
    ("WORKER_PROCESSES", "auto", "an integer from 1 to 1024"),
    ("WORKER_PROCESSES", "0", "an integer from 1 to 1024"),
    ("WORKER_PROCESSES", "1025", "an integer from 1 to 1024"),
    ("QUEUE_POLLERS", "-1", "an integer from 0 to 128"),
    ("QUEUE_POLLERS", "129", "an integer from 0 to 128"),
    ("QUEUE_PREFETCH", "-1", "auto, or an integer from 0 to 10000"),
    ("QUEUE_PREFETCH", "10001", "auto, or an integer from 0 to 10000"),
    ("QUEUE_PREFETCH", "automatic", "auto, or an integer from 0 to 10000"),
    ("QUEUE_PIPELINE", "adaptive", "one of: auto, fixed"),
    ("QUEUE_ACK_FLUSH_MS", "-1", "an integer from 0 to 10000"),
    ("QUEUE_ACK_FLUSH_MS", "10001", "an integer from 0 to 10000"),
    ("WORKER_SHUTDOWN_GRACE_SECONDS", "soon", "a number from 0 to 43200"),
    ("WORKER_MAX_MESSAGES", "-1", "an integer from 0 to"),
    ("WORKER_MAX_MESSAGES", "1k", "an integer from 0 to"),
    ("WORKER_MAX_MEMORY_MB", "2GB", "an integer from 0 to"),
    ("WORKER_SHUTDOWN_GRACE_SECONDS", "-1", "a number from 0 to 43200"),
    ("WORKER_SHUTDOWN_GRACE_SECONDS", "1e309", "a number from 0 to 43200"),
    ("WORKER_TENANT_LIMITS", "tenant-a", "tenant=cap"),
    ("WORKER_TENANT_LIMITS", "=2", "tenant=cap"),
    ("WORKER_TENANT_LIMITS", "tenant-a=x", "tenant=cap"),
    ("WORKER_TENANT_LIMITS", "tenant-a=1.5", "tenant=cap"),
    ("WORKER_TENANT_LIMITS", "tenant-a=0", "each cap an integer >= 1"),
    ("WORKER_TENANT_LIMITS", "tenant-a=2,tenant-b=-1", "not 'tenant-b=-1'"),
    ("WORKER_TENANT_LIMITS", "tenant-a=1_0", "not 'tenant-a=1_0'"),
    ("WORKER_TENANT_LIMITS", "tenant-a=" + "9" * 5000, "each cap an integer >= 1"),
    ("WORKER_TENANT_LIMITS", "tenant-a=2,tenant-a=3", "'tenant-a' is named twice"),
    ("WORKER_TENANT_LIMITS", "tenant-a=2, tenant-a =2", "'tenant-a' is named twice"),
    ("QUEUE_RETRY_BASE_SECONDS", "-1", "a number from 0 to 43200"),
    ("QUEUE_RETRY_BASE_SECONDS", "1e309", "a number from 0 to 43200"),
    ("QUEUE_RETRY_BASE_SECONDS", "43201", "a number from 0 to 43200"),
    ("QUEUE_RETRY_MAX_SECONDS", "-1", "a number from 0 to 43200"),
    ("QUEUE_RETRY_MAX_SECONDS", "43201", "a number from 0 to 43200"),
    ("WORKER_THROTTLE_MAX_WAIT_SECONDS", "-1", "a number from 0 to 43200"),
    ("WORKER_THROTTLE_MAX_WAIT_SECONDS", "43201", "a number from 0 to 43200"),
    ("WORKER_THROTTLE_RELEASE_DELAY_SECONDS", "-1", "an integer from 0 to 900"),
    ("WORKER_THROTTLE_RELEASE_DELAY_SECONDS", "901", "an integer from 0 to 900"),
    ("QUEUE_METRICS_INTERVAL", "0", "a number from 0.1 to 86400"),
    ("QUEUE_METRICS_INTERVAL", "0.01", "a number from 0.1 to 86400"),
    ("QUEUE_METRICS_INTERVAL", "86401", "a number from 0.1 to 86400"),
    ("QUEUE_MAX_DEPTH", "-1", "an integer >= 0"),
    ("WORKER_RING_BYTES", "4MiB", "an integer from"),
    ("WORKER_RING_BYTES", "1", "an integer from"),
    ("WORKER_RING_BYTES", "1073741825", "an integer from"),
    ("GORAXFAST_SQS_CLIENT", "boto", "one of: botocore, fast"),
    (
        "QUEUE_FIFO_GROUP_BY",
        "tenant",
        "one of: workflow_id, tenant_id, execution_id, caller",
    ),
    ("QUEUE_FIFO_GROUP_BY", "correlation_id", "one of: workflow_id"),
    ("QUEUE_FAIR_QUEUE", "maybe", "a boolean"),
    ("GORAXFAST_LOG_LEVEL", "loud", "one of: debug, info, warning, error"),
    ("GORAXFAST_LOG_LEVEL", "warn", "one of: debug, info, warning, error"),
    ("GORAXFAST_LOG_FORMAT", "xml", "one of: text, json"),
]


#: What a bad value of these needs beside it to be the only problem (credentials come in pairs).
COMPANIONS: dict[str, dict[str, str]] = {
    "AWS_ACCESS_KEY_ID": {"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    "AWS_SECRET_ACCESS_KEY": {"AWS_ACCESS_KEY_ID": "AKID"},
    "AWS_SESSION_TOKEN": {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
}

SECRETS = {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}

FLOAT_SETTINGS = [s for s in SETTINGS if type(getattr(Config(), s.attr)) is float]
NON_FINITE = ["nan", "NaN", "inf", "-inf", "+inf", "Infinity", "1e309", "-1e309", "1" * 400]


def _refuses_something(setting: Setting) -> bool:
    try:
        setting.parse("§ not a value §")
    except ValueError:
        return True
    return False


def _problem_of(env: dict[str, str]) -> ConfigProblem:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert len(info.value.problems) == 1
    return info.value.problems[0]


# --- the tables cover every variable ------------------------------------------------------------


def test_every_spec_variable_is_a_setting() -> None:
    for env, attr, _ in SPEC_DEFAULTS:
        assert SETTINGS_BY_ENV[env].attr == attr


def test_every_setting_has_a_valid_value_in_this_file() -> None:
    assert set(VALID) == set(SETTINGS_BY_ENV)


def test_every_setting_that_can_refuse_a_value_has_bad_values_in_this_file() -> None:
    refusing = {s.env for s in SETTINGS if _refuses_something(s)}

    assert refusing == {env for env, _, _ in BAD}


def test_every_setting_names_a_distinct_variable_and_field() -> None:
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert len({s.attr for s in SETTINGS}) == len(SETTINGS)


# --- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "attr", "default"), SPEC_DEFAULTS, ids=[r[0] for r in SPEC_DEFAULTS]
)
def test_spec_variable_has_gorax_default_when_unset(env: str, attr: str, default: Any) -> None:
    assert getattr(Config.from_env({}), attr) == default


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.env for s in SETTINGS])
def test_every_setting_has_the_config_default_when_unset(setting: Setting) -> None:
    assert getattr(Config.from_env({}), setting.attr) == getattr(Config(), setting.attr)


def test_worker_processes_defaults_to_at_least_one() -> None:
    assert Config.from_env({}).worker_processes >= 1


def test_an_empty_environment_gives_the_default_config() -> None:
    assert Config.from_env({}) == Config()


def test_unrelated_variables_are_ignored() -> None:
    assert Config.from_env({"PATH": "/bin", "QUEUE_SOMETHING_ELSE": "x"}) == Config()


@pytest.mark.parametrize("blank", ["", " ", "\t\n"], ids=["empty", "space", "whitespace"])
@pytest.mark.parametrize("setting", SETTINGS, ids=[s.env for s in SETTINGS])
def test_a_blank_value_counts_as_unset(setting: Setting, blank: str) -> None:
    assert getattr(Config.from_env({setting.env: blank}), setting.attr) == getattr(
        Config(), setting.attr
    )


def test_from_env_reads_the_process_environment_when_given_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUEUE_MAX_MESSAGES", "4")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")

    config = Config.from_env()

    assert (config.max_messages, config.aws_region) == (4, "ap-south-1")


# --- valid values --------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "case"), list(VALID.items()), ids=list(VALID))
def test_a_valid_value_is_parsed(env: str, case: tuple[str, Any]) -> None:
    raw, expected = case

    value = getattr(
        Config.from_env({env: raw, **COMPANIONS.get(env, {})}), SETTINGS_BY_ENV[env].attr
    )

    assert value == expected
    assert type(value) is type(expected)


def test_every_valid_value_at_once() -> None:
    config = Config.from_env({env: raw for env, (raw, _) in VALID.items()})

    for env, (_, expected) in VALID.items():
        assert getattr(config, SETTINGS_BY_ENV[env].attr) == expected, env


@pytest.mark.parametrize(("env", "raw", "expected"), BOUNDS, ids=[f"{e}={r}" for e, r, _ in BOUNDS])
def test_range_bounds_are_inclusive(env: str, raw: str, expected: Any) -> None:
    assert getattr(Config.from_env({env: raw}), SETTINGS_BY_ENV[env].attr) == expected


@pytest.mark.parametrize("raw", [" 5", "5 ", "\t5\n"])
def test_surrounding_whitespace_is_ignored(raw: str) -> None:
    assert Config.from_env({"QUEUE_MAX_MESSAGES": raw}).max_messages == 5


_TRUE = ["1", "t", "true", "yes", "on"]
_FALSE = ["0", "f", "false", "no", "off"]


def _cases(words: list[str]) -> list[str]:
    return sorted({form for w in words for form in (w, w.upper(), w.capitalize())})


@pytest.mark.parametrize("env", ["QUEUE_ENABLED", "QUEUE_DELETE_AFTER_PROCESS", "QUEUE_FAIR_QUEUE"])
@pytest.mark.parametrize("raw", _cases(_TRUE))
def test_booleans_accept_the_usual_true_spellings_in_any_case(env: str, raw: str) -> None:
    assert getattr(Config.from_env({env: raw}), SETTINGS_BY_ENV[env].attr) is True


@pytest.mark.parametrize("env", ["QUEUE_ENABLED", "QUEUE_DELETE_AFTER_PROCESS", "QUEUE_FAIR_QUEUE"])
@pytest.mark.parametrize("raw", _cases(_FALSE))
def test_booleans_accept_the_usual_false_spellings_in_any_case(env: str, raw: str) -> None:
    assert getattr(Config.from_env({env: raw}), SETTINGS_BY_ENV[env].attr) is False


@pytest.mark.parametrize("raw", ["tRuE", "yEs", "oN", "FaLsE", "nO", "oFf"])
def test_booleans_accept_mixed_case(raw: str) -> None:
    assert Config.from_env({"QUEUE_ENABLED": raw}).enabled is (raw.lower() in _TRUE)


def test_tenant_limits_tolerate_spaces_and_empty_entries() -> None:
    config = Config.from_env({"WORKER_TENANT_LIMITS": " tenant-a = 2 ,, tenant-b=5, "})

    assert dict(config.tenant_limits) == {"tenant-a": 2, "tenant-b": 5}


# --- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "raw", "allowed"), BAD, ids=[f"{e}={r[:40]!r}" for e, r, _ in BAD])
def test_a_bad_value_is_refused_with_name_value_and_allowed_range(
    env: str, raw: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({env: raw, **COMPANIONS.get(env, {})})

    (problem,) = info.value.problems
    shown = "***" if env in SECRETS else raw
    assert problem == ConfigProblem(env, shown, problem.allowed)
    assert allowed in problem.allowed
    message = str(info.value)
    assert env in message
    assert repr(shown) in message
    assert allowed in message


@pytest.mark.parametrize(
    ("env", "raw", "expected"), ACCEPTED, ids=[f"{e}={r}" for e, r, _ in ACCEPTED]
)
def test_values_other_setups_use_are_accepted(env: str, raw: str, expected: Any) -> None:
    config = Config.from_env({env: raw, **COMPANIONS.get(env, {})})

    assert getattr(config, SETTINGS_BY_ENV[env].attr) == expected


@pytest.mark.parametrize("raw", NON_FINITE)
@pytest.mark.parametrize("setting", FLOAT_SETTINGS, ids=[s.env for s in FLOAT_SETTINGS])
def test_no_setting_takes_a_number_that_is_not_finite(setting: Setting, raw: str) -> None:
    assert _problem_of({setting.env: raw}).name == setting.env


@pytest.mark.parametrize("env", sorted(SECRETS))
def test_a_bad_secret_is_refused_without_showing_it(env: str) -> None:
    secret = "s3cr3t with a space"
    with pytest.raises(ConfigError) as info:
        Config.from_env({env: secret, **COMPANIONS[env]})

    assert [p.name for p in info.value.problems] == [env]
    assert "with a space" not in str(info.value)


def test_the_problem_keeps_the_value_as_written() -> None:
    assert _problem_of({"QUEUE_MAX_MESSAGES": " 11 "}).value == " 11 "


def test_several_bad_variables_are_reported_together_in_one_error() -> None:
    env = {
        "QUEUE_ENABLED": "maybe",
        "AWS_ENDPOINT": "localhost:4566",
        "QUEUE_MAX_MESSAGES": "11",
        "QUEUE_VISIBILITY_TIMEOUT": "-5",
        "WORKER_TENANT_LIMITS": "tenant-a=0",
        "AWS_REGION": "eu-west-1",  # a good one among them
        "QUEUE_WAIT_TIME_SECONDS": "5",  # a good one among them
    }

    with pytest.raises(ConfigError) as info:
        Config.from_env(env)

    problems = info.value.problems
    assert [p.name for p in problems] == [
        "QUEUE_ENABLED",
        "AWS_ENDPOINT",
        "QUEUE_MAX_MESSAGES",
        "QUEUE_VISIBILITY_TIMEOUT",
        "WORKER_TENANT_LIMITS",
    ]
    assert [p.value for p in problems] == ["maybe", "localhost:4566", "11", "-5", "tenant-a=0"]
    message = str(info.value)
    assert message.startswith("invalid configuration (5 problem(s)):")
    for problem in problems:
        assert f"  - {problem.name}={problem.value!r}: {problem.allowed}" in message
    assert "AWS_REGION" not in message
    assert "QUEUE_WAIT_TIME_SECONDS" not in message


def test_every_bad_variable_at_once_is_one_error_listing_them_all() -> None:
    env = {name: raw for name, raw, _ in BAD}  # the last bad value of each variable (all set:
    # the credentials come in their pairs)

    with pytest.raises(ConfigError) as info:
        Config.from_env(env)

    assert {p.name for p in info.value.problems} == set(env)
    assert len(info.value.problems) == len(env)
    assert f"({len(env)} problem(s))" in str(info.value)


def test_config_error_is_a_goraxfast_error() -> None:
    assert issubclass(ConfigError, GoraxfastError)


def test_the_allowed_range_states_the_exact_bounds() -> None:
    assert "from 2097152 to 1073741824" in _problem_of({"WORKER_RING_BYTES": "1"}).allowed


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("QUEUE_MAX_MESSAGES", "1_0"),
        ("QUEUE_VISIBILITY_TIMEOUT", "\u0663\u0660"),  # Arabic-Indic "30"
        ("QUEUE_PROCESS_TIMEOUT", "3_00"),
        ("WORKER_HEALTH_PORT", "\uff18\uff10\uff18\uff11"),  # full-width "8081"
    ],
    ids=["underscore int", "arabic-indic digits", "underscore float", "full-width digits"],
)
def test_numbers_gorax_could_not_parse_are_refused(env: str, raw: str) -> None:
    assert _problem_of({env: raw}).name == env


# --- credentials, tenant caps, description -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "secret", "static"),
    [("AKID", "s3cr3t", True), ("", "", False), ("  ", "", False)],
    ids=["both", "neither", "blank key"],
)
def test_static_credentials_only_when_both_key_and_secret_are_set(
    key: str, secret: str, static: bool
) -> None:
    config = Config.from_env({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})

    assert config.static_credentials is static


def test_tenant_cap_is_the_per_tenant_default_without_overrides() -> None:
    config = Config.from_env({"WORKER_MAX_CONCURRENCY_PER_TENANT": "4"})

    assert config.tenant_cap("tenant-a") == 4
    assert config.tenant_cap("") == 4


def test_tenant_cap_uses_the_override_of_that_tenant_only() -> None:
    config = Config.from_env(
        {
            "WORKER_MAX_CONCURRENCY_PER_TENANT": "4",
            "WORKER_TENANT_LIMITS": "tenant-a=1,tenant-b=20",
        }
    )

    assert config.tenant_cap("tenant-a") == 1
    assert config.tenant_cap("tenant-b") == 20
    assert config.tenant_cap("tenant-c") == 4


def test_a_tenant_named_twice_is_refused_rather_than_one_cap_chosen() -> None:
    problem = _problem_of({"WORKER_TENANT_LIMITS": "tenant-a=1,tenant-b=2,tenant-a=3"})

    assert "'tenant-a' is named twice" in problem.allowed


def test_describe_masks_secrets() -> None:
    config = Config(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="s3cr3t-value",
        aws_session_token="token-value",
    )

    described = config.describe()

    assert described["aws_secret_access_key"] == "***"
    assert described["aws_session_token"] == "***"
    assert "s3cr3t-value" not in repr(described)
    assert "token-value" not in repr(described)


def test_describe_shows_unset_secrets_as_unset() -> None:
    described = Config().describe()

    assert described["aws_secret_access_key"] == ""
    assert described["aws_session_token"] == ""


def test_describe_lists_every_setting_with_its_value() -> None:
    config = Config.from_env({env: raw for env, (raw, _) in VALID.items()})

    described = config.describe()

    assert set(described) >= {s.attr for s in SETTINGS}
    assert described["max_messages"] == 5
    assert described["tenant_limits"] == {"tenant-a": 2, "tenant-b": 5}
    assert described["aws_access_key_id"] == "AKIDEXAMPLE"


def test_with_returns_a_changed_copy() -> None:
    config = Config.from_env({"QUEUE_MAX_MESSAGES": "5"})

    changed = config.with_(max_messages=3, queue_url="http://localhost/q")

    assert (changed.max_messages, changed.queue_url) == (3, "http://localhost/q")
    assert (config.max_messages, config.queue_url) == (5, "")
    assert changed.wait_time_s == config.wait_time_s


def test_config_is_immutable() -> None:
    with pytest.raises(AttributeError):
        Config().max_messages = 3  # type: ignore[misc]


def test_require_queue_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError) as info:
        Config().require_queue()

    assert [p.name for p in info.value.problems] == ["AWS_SQS_QUEUE_URL"]


def test_require_queue_accepts_a_configured_queue() -> None:
    Config.from_env({"AWS_SQS_QUEUE_URL": VALID["AWS_SQS_QUEUE_URL"][0]}).require_queue()


# --- mistakes no single variable shows -----------------------------------------------------------

_QUEUE = "http://localhost:4566/000000000000/orders"

#: Environments wrong only as a whole: the problems, as (variable, value shown, fragment).
CROSS: list[tuple[str, dict[str, str], list[tuple[str, str, str]]]] = [
    (
        "key without secret",
        {"AWS_ACCESS_KEY_ID": "AKID"},
        [("AWS_SECRET_ACCESS_KEY", "", "required when AWS_ACCESS_KEY_ID is set")],
    ),
    (
        "secret without key",
        {"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
        [("AWS_ACCESS_KEY_ID", "", "required when AWS_SECRET_ACCESS_KEY is set")],
    ),
    (
        "key with a blank secret",
        {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "  "},
        [("AWS_SECRET_ACCESS_KEY", "  ", "required when AWS_ACCESS_KEY_ID is set")],
    ),
    (
        "key and token without secret",
        {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SESSION_TOKEN": "tok"},
        [("AWS_SECRET_ACCESS_KEY", "", "set both for static credentials, or neither")],
    ),
    (
        "session token without keys",
        {"AWS_SESSION_TOKEN": "tok"},
        [
            (
                "AWS_SESSION_TOKEN",
                "***",
                "used only with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        ],
    ),
    (
        "DLQ that is the main queue",
        {"AWS_SQS_QUEUE_URL": _QUEUE, "AWS_SQS_DLQ_URL": f" {_QUEUE}"},
        [("AWS_SQS_DLQ_URL", f" {_QUEUE}", "a queue other than AWS_SQS_QUEUE_URL")],
    ),
    (
        "a bad value and a missing half are both reported",
        {"AWS_ACCESS_KEY_ID": "AKID", "QUEUE_MAX_MESSAGES": "0"},
        [
            ("QUEUE_MAX_MESSAGES", "0", "an integer from 1 to 10"),
            ("AWS_SECRET_ACCESS_KEY", "", "required when AWS_ACCESS_KEY_ID is set"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("env", "expected"), [(e, x) for _, e, x in CROSS], ids=[c[0] for c in CROSS]
)
def test_mistakes_across_variables_are_one_problem_each(
    env: dict[str, str], expected: list[tuple[str, str, str]]
) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)

    problems = info.value.problems
    assert [(p.name, p.value) for p in problems] == [(name, value) for name, value, _ in expected]
    for problem, (_, _, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.allowed


def test_the_secret_is_never_shown_when_the_key_is_missing() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI"})

    assert "wJalrXUtnFEMI" not in str(info.value)


def test_a_dlq_of_its_own_is_accepted() -> None:
    config = Config.from_env({"AWS_SQS_QUEUE_URL": _QUEUE, "AWS_SQS_DLQ_URL": _QUEUE + "-dlq"})

    assert config.dlq_url == _QUEUE + "-dlq"


# --- AWS_PROFILE against the AWS config files (read locally, never the network) -------------------


@pytest.fixture
def aws_files(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n\n[profile dev]\nregion = eu-west-3\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[ci]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n")
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}


@pytest.mark.parametrize("profile", ["dev", "ci", "default", " dev "])
def test_a_profile_defined_in_either_file_is_accepted(
    aws_files: dict[str, str], profile: str
) -> None:
    Config.from_env({**aws_files, "AWS_PROFILE": profile})


def test_an_unknown_profile_is_refused_naming_the_files_and_the_profiles_they_define(
    aws_files: dict[str, str],
) -> None:
    problem = _problem_of({**aws_files, "AWS_PROFILE": "prod"})

    assert (problem.name, problem.value) == ("AWS_PROFILE", "prod")
    assert aws_files["AWS_CONFIG_FILE"] in problem.allowed
    assert aws_files["AWS_SHARED_CREDENTIALS_FILE"] in problem.allowed
    assert "they define: ci, default, dev" in problem.allowed


def test_without_config_files_only_the_default_profile_exists(tmp_path: Path) -> None:
    files = {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none-either"),
    }
    Config.from_env({**files, "AWS_PROFILE": "default"})

    assert "they define none" in _problem_of({**files, "AWS_PROFILE": "dev"}).allowed


def test_aws_default_profile_is_checked_first_as_botocore_reads_it_first(
    aws_files: dict[str, str],
) -> None:
    problem = _problem_of({**aws_files, "AWS_DEFAULT_PROFILE": "prod", "AWS_PROFILE": "dev"})

    assert (problem.name, problem.value) == ("AWS_DEFAULT_PROFILE", "prod")


def test_a_config_file_that_does_not_parse_is_one_problem(
    aws_files: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("[profile dev\nregion = x\n")

    problem = _problem_of({**aws_files, "AWS_CONFIG_FILE": str(broken), "AWS_PROFILE": "dev"})

    assert problem.name == "AWS_PROFILE"
    assert "readable AWS config files" in problem.allowed
