"""One config object, built from the environment in one function and validated in one pass.

The variable names and defaults are gorax's (the README's "Configuration"), so an existing
deployment's environment starts goraxfast unchanged. Unlike gorax, a bad value is never silently replaced:
:meth:`Config.from_env` collects every problem and raises them together in one
:class:`~goraxfast.errors.ConfigError`, one :class:`~goraxfast.errors.ConfigProblem` per bad
variable (name, value, what is allowed).

Every number is finite and bounded (``1e309`` is infinity: refused like ``inf``); a value is
checked on its own first (:data:`SETTINGS`), then against the others and against what can be
known without the network (:func:`environment_problems`: credentials set in halves, a DLQ that is
the main queue, an ``AWS_PROFILE`` that no AWS config file defines).

``GORAXFAST_LOG_LEVEL`` and ``GORAXFAST_LOG_FORMAT`` are read here so that their mistakes are
reported with all the others, but only the ``goraxfast`` command acts on them: an application
that embeds the engine keeps its own logging set-up.

The parts live beside this module, one job each: :mod:`.parse` (one value's parsers),
:mod:`.settings` (the table of variables) and :mod:`.environment` (the checks across them);
everything is importable from ``goraxfast.config`` as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from goraxfast.config.cpus import default_worker_processes
from goraxfast.config.environment import environment_problems, profile_problem
from goraxfast.config.parse import QUEUE_NAME, QUEUE_NAME_RULE, integer, number
from goraxfast.config.settings import (
    FIFO_GROUP_KEYS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_POLLERS,
    SECRET_MASK,
    SETTINGS,
    SQS_CLIENTS,
    Setting,
    credential_like,
)
from goraxfast.errors import ConfigError, ConfigProblem

__all__ = [
    "FIFO_GROUP_KEYS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_POLLERS",
    "MISSING_QUEUE",
    "QUEUE_NAME",
    "QUEUE_NAME_RULE",
    "SECRET_MASK",
    "SETTINGS",
    "SQS_CLIENTS",
    "Config",
    "Setting",
    "credential_like",
    "environment_problems",
    "integer",
    "number",
    "profile_problem",
]


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
    #: one per CPU this process may use: its affinity and cgroup CPU quota, not the machine's
    worker_processes: int = field(default_factory=default_worker_processes)
    pollers: int = 0  # 0: automatic; else the most receives in flight (or exactly, if fixed)
    prefetch: int | None = None  # None: automatic; else the most held beyond the running ones
    pipeline: str = "auto"  # "fixed": QUEUE_POLLERS and QUEUE_PREFETCH are kept as they are
    ack_flush_ms: int = 20
    shutdown_grace_s: float = 30.0
    worker_max_messages: int = 0  # 0: never recycle a worker after so many messages
    worker_max_memory_mb: int = 0  # 0: never recycle a worker for its resident memory
    tenant_limits: Mapping[str, int] = field(default_factory=dict)
    retry_base_s: float = 30.0
    retry_max_s: float = 300.0
    throttle_max_wait_s: float = 60.0
    throttle_release_delay_s: int = 5
    metrics_interval_s: float = 30.0
    max_queue_depth: int = 0
    ring_bytes: int = 4 * 1024 * 1024
    sqs_client: str = "fast"
    fifo_group_by: str = "workflow_id"
    fair_queue: bool = True
    log_level: str = ""  # "": the command's own (info for run, warning for the others)
    log_format: str = "text"

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
                shown = SECRET_MASK if setting.secret else raw
                problems.append(ConfigProblem(setting.env, shown, str(exc) or setting.allowed))
        problems += environment_problems(env)
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
            raise ConfigError([MISSING_QUEUE])

    def tenant_cap(self, tenant_id: str) -> int:
        return self.tenant_limits.get(tenant_id, self.max_concurrency_per_tenant)

    def describe(self) -> dict[str, Any]:
        """Settings for logs and bench reports, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("aws_secret_access_key", "aws_session_token") and value:
                value = SECRET_MASK
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def effective_settings(self) -> dict[str, Any]:
        """Every setting under its variable's name, as in effect (the engine's start line):
        what an operator compares with the environment they meant to give. Anything
        credential-like is :data:`SECRET_MASK` when set, ``""`` when not."""
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.attr)
            if credential_like(setting):
                value = SECRET_MASK if value else ""
            elif isinstance(value, Mapping):
                value = dict(value)
            out[setting.env] = value
        return out


MISSING_QUEUE = ConfigProblem("AWS_SQS_QUEUE_URL", "", "required to consume or publish")
