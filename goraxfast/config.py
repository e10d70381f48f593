"""One config object, built from the environment in one function and validated in one pass.

The variable names and defaults are gorax's (shared/SPEC.md §2), so an existing deployment's
environment starts goraxfast unchanged. Unlike gorax, a bad value is never silently replaced:
:meth:`Config.from_env` collects every problem and raises them together in one
:class:`~goraxfast.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from goraxfast.errors import ConfigError, ConfigProblem

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "f", "false", "no", "off", "n"})

SQS_MAX_VISIBILITY_S = 43_200
SQS_CLIENTS = ("botocore", "fast")


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting goraxfast reads. Build it with :meth:`from_env`, or directly in tests/apps."""

    queue_url: str = ""
    dlq_url: str = ""
    enabled: bool = False
    aws_region: str = "us-east-1"
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    aws_session_token: str = ""
    aws_endpoint: str = ""
    max_messages: int = 10
    wait_time_s: int = 20
    visibility_timeout_s: int = 30
    max_retries: int = 3
    process_timeout_s: float = 300.0
    poll_interval_s: float = 1.0
    concurrent_workers: int = 10
    delete_after_process: bool = True
    max_concurrency_per_tenant: int = 10
    health_port: int = 8081
    health_host: str = "127.0.0.1"
    # goraxfast's own settings (named in gorax's style, validated the same way)
    worker_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    pollers: int = 0
    prefetch: int = 40
    ack_flush_ms: int = 20
    shutdown_grace_s: float = 30.0
    tenant_limits: Mapping[str, int] = field(default_factory=dict)
    retry_base_s: float = 30.0
    retry_max_s: float = 300.0
    throttle_max_wait_s: float = 60.0
    throttle_release_delay_s: int = 5
    metrics_interval_s: float = 30.0
    max_queue_depth: int = 0
    ring_bytes: int = 4 * 1024 * 1024
    sqs_client: str = "fast"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read every variable of :data:`SETTINGS`; raise one ConfigError listing all bad values."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[ConfigProblem] = []
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is None or (raw.strip() == "" and setting.empty_is_unset):
                continue
            try:
                values[setting.attr] = setting.parse(raw.strip())
            except ValueError as exc:
                problems.append(ConfigProblem(setting.env, raw, str(exc) or setting.allowed))
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        """A copy with some fields changed (tests, embedding apps)."""
        return replace(self, **changes)

    @property
    def static_credentials(self) -> bool:
        """gorax's rule: static keys only when both are set, else the default credential chain."""
        return bool(self.aws_access_key_id and self.aws_secret_access_key)

    def require_queue(self) -> None:
        """Raise a ConfigError when no main queue URL is configured (needed to consume/publish)."""
        if not self.queue_url:
            raise ConfigError(
                [ConfigProblem("AWS_SQS_QUEUE_URL", "", "required to consume or publish")]
            )

    def tenant_cap(self, tenant_id: str) -> int:
        return self.tenant_limits.get(tenant_id, self.max_concurrency_per_tenant)

    def describe(self) -> dict[str, Any]:
        """Settings for logs and bench reports, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("aws_secret_access_key", "aws_session_token") and value:
                value = "***"
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out


# --- parsers: each raises ValueError with the allowed range as its message -------------------


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("a boolean: 1 t true yes on / 0 f false no off")


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    allowed = _range_text("an integer", lo, hi)

    def parse(raw: str) -> int:
        # ASCII digits only, as Go's strconv.Atoi: Python's int() would also take "1_0" or "١٠".
        if not _INT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        value = int(raw, 10)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(allowed)
        return value

    return parse


def _float(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[[str], float]:
    allowed = _range_text("a number", lo, hi, lo_open=lo_open)

    def parse(raw: str) -> float:
        if not _FLOAT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        value = float(raw)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise ValueError(allowed)
        if hi is not None and value > hi:
            raise ValueError(allowed)
        return value

    return parse


def _num(value: float) -> str:
    """Exact bounds in errors: 2097152, not 2.09715e+06."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _range_text(kind: str, lo: float | None, hi: float | None, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"{kind} from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{kind} <= {_num(hi)}"
    return kind


def _str(raw: str) -> str:
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("a URL starting with http:// or https://")
    return raw


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError("one of: " + ", ".join(options))
        return raw.lower()

    return parse


def _tenant_limits(raw: str) -> dict[str, int]:
    """``tenant-a=2,tenant-b=5``: per-tenant caps that override WORKER_MAX_CONCURRENCY_PER_TENANT."""
    allowed = "comma-separated tenant=cap pairs, each cap an integer >= 1"
    out: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        tenant, sep, cap = part.partition("=")
        if not sep or not tenant.strip():
            raise ValueError(allowed)
        try:
            value = int(cap.strip(), 10)
        except ValueError:
            raise ValueError(allowed) from None
        if value < 1:
            raise ValueError(allowed)
        out[tenant.strip()] = value
    return out


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    attr: str
    parse: Callable[[str], Any]
    doc: str
    allowed: str = ""
    empty_is_unset: bool = True


#: Every environment variable goraxfast reads. The README's table is generated from the same facts.
SETTINGS: tuple[Setting, ...] = (
    Setting("QUEUE_ENABLED", "enabled", _bool, "queue mode on/off for apps that embed the engine"),
    Setting("AWS_REGION", "aws_region", _str, "AWS region"),
    Setting("AWS_ACCESS_KEY_ID", "aws_access_key_id", _str, "static key (with the secret)"),
    Setting("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", _str, "static secret (with the key)"),
    Setting("AWS_SESSION_TOKEN", "aws_session_token", _str, "session token for static keys"),
    Setting("AWS_ENDPOINT", "aws_endpoint", _url, "custom endpoint (LocalStack, moto, fauxqs)"),
    Setting("AWS_SQS_QUEUE_URL", "queue_url", _url, "main queue URL (required to consume/publish)"),
    Setting("AWS_SQS_DLQ_URL", "dlq_url", _url, "dead-letter queue URL"),
    Setting("QUEUE_MAX_MESSAGES", "max_messages", _int(1, 10), "messages per receive"),
    Setting("QUEUE_WAIT_TIME_SECONDS", "wait_time_s", _int(0, 20), "long-poll wait"),
    Setting(
        "QUEUE_VISIBILITY_TIMEOUT",
        "visibility_timeout_s",
        _int(0, SQS_MAX_VISIBILITY_S),
        "visibility timeout on receive and for lease extensions",
    ),
    Setting("QUEUE_MAX_RETRIES", "max_retries", _int(1), "attempts before dead-lettering"),
    Setting(
        "QUEUE_PROCESS_TIMEOUT",
        "process_timeout_s",
        _float(0, lo_open=True),
        "handler time limit (s)",
    ),
    Setting(
        "QUEUE_POLL_INTERVAL",
        "poll_interval_s",
        _float(0),
        "back-off after an empty/failed receive (s)",
    ),
    Setting("QUEUE_CONCURRENT_WORKERS", "concurrent_workers", _int(1), "handlers running at once"),
    Setting("QUEUE_DELETE_AFTER_PROCESS", "delete_after_process", _bool, "delete after success"),
    Setting(
        "WORKER_MAX_CONCURRENCY_PER_TENANT",
        "max_concurrency_per_tenant",
        _int(1),
        "per-tenant cap on handlers at once",
    ),
    Setting(
        "WORKER_HEALTH_PORT",
        "health_port",
        _int(0, 65535),
        "health/metrics HTTP port (0: any free)",
    ),
    Setting(
        "WORKER_HEALTH_HOST",
        "health_host",
        _str,
        "health/metrics bind address (0.0.0.0 in containers)",
    ),
    Setting("WORKER_PROCESSES", "worker_processes", _int(1, 1024), "forked worker processes"),
    Setting("QUEUE_POLLERS", "pollers", _int(0, 64), "concurrent long polls (0: automatic)"),
    Setting("QUEUE_PREFETCH", "prefetch", _int(0, 10_000), "messages held beyond the running ones"),
    Setting(
        "QUEUE_ACK_FLUSH_MS", "ack_flush_ms", _int(0, 10_000), "oldest age of a partial ack batch"
    ),
    Setting(
        "WORKER_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_s", _float(0), "drain time on shutdown"
    ),
    Setting("WORKER_TENANT_LIMITS", "tenant_limits", _tenant_limits, "per-tenant caps: a=2,b=5"),
    Setting(
        "QUEUE_RETRY_BASE_SECONDS", "retry_base_s", _float(0), "failure backoff base: base*2^n"
    ),
    Setting(
        "QUEUE_RETRY_MAX_SECONDS", "retry_max_s", _float(0, SQS_MAX_VISIBILITY_S), "backoff cap"
    ),
    Setting(
        "WORKER_THROTTLE_MAX_WAIT_SECONDS",
        "throttle_max_wait_s",
        _float(0),
        "longest a throttled message is held before release",
    ),
    Setting(
        "WORKER_THROTTLE_RELEASE_DELAY_SECONDS",
        "throttle_release_delay_s",
        _int(0, 900),
        "visibility delay of a released throttled message",
    ),
    Setting(
        "QUEUE_METRICS_INTERVAL",
        "metrics_interval_s",
        _float(0, lo_open=True),
        "queue metrics period (s)",
    ),
    Setting("QUEUE_MAX_DEPTH", "max_queue_depth", _int(0), "health threshold on depth (0: none)"),
    Setting(
        "WORKER_RING_BYTES",
        "ring_bytes",
        _int(2 * 1024 * 1024, 1 << 30),
        "ring size each way per worker",
    ),
    Setting("GORAXFAST_SQS_CLIENT", "sqs_client", _choice(*SQS_CLIENTS), "data-plane client"),
)
