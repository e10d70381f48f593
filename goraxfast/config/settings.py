"""The table of every environment variable goraxfast reads (:data:`SETTINGS`): each one's name,
the :class:`~goraxfast.config.Config` field it sets, its parser and what it is for. One table, so
that reading the environment, the engine's start line (secrets masked) and the README's
"Configuration" table all come from the same facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from goraxfast.config.parse import (
    auto_or,
    bind_host,
    boolean,
    choice,
    credential,
    endpoint_url,
    integer,
    number,
    queue_url,
    region,
    tenant_limits,
)
from goraxfast.core.pipeline import DEFAULT_LIMITS
from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S

SQS_CLIENTS = ("botocore", "fast")
#: What the publisher takes a FIFO queue's MessageGroupId from: a field of the message, or
#: ``caller``: the value each publish call passes (refused when it passes none).
FIFO_GROUP_KEYS = ("workflow_id", "tenant_id", "execution_id", "caller")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
SECRET_MASK = "***"
#: Names of settings whose values are never logged, whatever a future setting is called: the
#: start line shows them as SECRET_MASK (an access key id is half a credential too).
_CREDENTIAL_LIKE = re.compile(
    r"SECRET|TOKEN|PASSW(OR)?D|CREDENTIAL|ACCESS_KEY|PRIVATE|API_?KEY", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    attr: str
    parse: Callable[[str], Any]
    doc: str
    allowed: str = ""
    empty_is_unset: bool = True
    secret: bool = False  # never shown in a problem


def credential_like(setting: Setting) -> bool:
    """Never shown in a log line: a secret, or a setting whose name says it is a credential."""
    return setting.secret or _CREDENTIAL_LIKE.search(setting.env) is not None


_12H = SQS_MAX_VISIBILITY_S  # SQS holds a received message at most 12 hours: no wait goes beyond
MAX_POLLERS = DEFAULT_LIMITS.max_pollers

#: Every environment variable goraxfast reads. The README's table is generated from the same facts.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "QUEUE_ENABLED", "enabled", boolean, "queue mode on/off for apps that embed the engine"
    ),
    Setting("AWS_REGION", "aws_region", region, "AWS region"),
    Setting("AWS_ACCESS_KEY_ID", "aws_access_key_id", credential, "static key (with the secret)"),
    Setting(
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        credential,
        "static secret (with the key)",
        secret=True,
    ),
    Setting(
        "AWS_SESSION_TOKEN",
        "aws_session_token",
        credential,
        "session token for static keys",
        secret=True,
    ),
    Setting(
        "AWS_ENDPOINT", "aws_endpoint", endpoint_url, "custom endpoint (LocalStack, moto, fauxqs)"
    ),
    Setting("AWS_SQS_QUEUE_URL", "queue_url", queue_url, "main queue URL (to consume/publish)"),
    Setting("AWS_SQS_DLQ_URL", "dlq_url", queue_url, "dead-letter queue URL"),
    Setting("QUEUE_MAX_MESSAGES", "max_messages", integer(1, 10), "messages per receive"),
    Setting("QUEUE_WAIT_TIME_SECONDS", "wait_time_s", integer(0, 20), "long-poll wait"),
    Setting(
        "QUEUE_VISIBILITY_TIMEOUT",
        "visibility_timeout_s",
        integer(0, SQS_MAX_VISIBILITY_S),
        "visibility timeout on receive and for lease extensions",
    ),
    Setting("QUEUE_MAX_RETRIES", "max_retries", integer(1, 1000), "attempts before dead-lettering"),
    Setting(
        "QUEUE_PROCESS_TIMEOUT",
        "process_timeout_s",
        number(0, _12H, lo_open=True),
        "handler time limit (s)",
    ),
    Setting(
        "QUEUE_POLL_INTERVAL",
        "poll_interval_s",
        number(0, 3600),
        "back-off after an empty/failed receive (s)",
    ),
    Setting(
        "QUEUE_CONCURRENT_WORKERS",
        "concurrent_workers",
        integer(1, 10_000),
        "handlers running at once",
    ),
    Setting("QUEUE_DELETE_AFTER_PROCESS", "delete_after_process", boolean, "delete after success"),
    Setting(
        "WORKER_MAX_CONCURRENCY_PER_TENANT",
        "max_concurrency_per_tenant",
        integer(1),
        "per-tenant cap on handlers at once",
    ),
    Setting(
        "WORKER_HEALTH_PORT",
        "health_port",
        integer(0, 65535),
        "health/metrics HTTP port (0: any free)",
    ),
    Setting(
        "WORKER_HEALTH_HOST",
        "health_host",
        bind_host,
        "health/metrics bind address (0.0.0.0 in containers)",
    ),
    Setting("WORKER_PROCESSES", "worker_processes", integer(1, 1024), "forked worker processes"),
    Setting(
        "QUEUE_POLLERS",
        "pollers",
        integer(0, MAX_POLLERS),
        "most ReceiveMessage calls in flight (0: automatic, up to 128)",
    ),
    Setting(
        "QUEUE_PREFETCH",
        "prefetch",
        auto_or(integer(0, 10_000)),
        "most messages held beyond the running ones (auto: sized by the round trip)",
    ),
    Setting(
        "QUEUE_PIPELINE",
        "pipeline",
        choice("auto", "fixed"),
        "auto: sized by round trip and handler rate, the two above as caps; fixed: kept as set",
    ),
    Setting(
        "QUEUE_ACK_FLUSH_MS",
        "ack_flush_ms",
        integer(0, 10_000),
        "oldest age of a partial ack batch",
    ),
    Setting(
        "WORKER_SHUTDOWN_GRACE_SECONDS",
        "shutdown_grace_s",
        number(0, _12H),
        "drain time on shutdown",
    ),
    Setting(
        "WORKER_MAX_MESSAGES",
        "worker_max_messages",
        integer(0, 1_000_000_000),
        "messages a worker runs before a fresh one replaces it (0: never)",
    ),
    Setting(
        "WORKER_MAX_MEMORY_MB",
        "worker_max_memory_mb",
        integer(0, 1 << 30),
        "resident MiB past which a worker is replaced once it finishes what it holds (0: never)",
    ),
    Setting("WORKER_TENANT_LIMITS", "tenant_limits", tenant_limits, "per-tenant caps: a=2,b=5"),
    Setting(
        "QUEUE_RETRY_BASE_SECONDS",
        "retry_base_s",
        number(0, _12H),
        "failure backoff base: base*2^n",
    ),
    Setting("QUEUE_RETRY_MAX_SECONDS", "retry_max_s", number(0, _12H), "backoff cap"),
    Setting(
        "WORKER_THROTTLE_MAX_WAIT_SECONDS",
        "throttle_max_wait_s",
        number(0, _12H),
        "longest a throttled message is held before release",
    ),
    Setting(
        "WORKER_THROTTLE_RELEASE_DELAY_SECONDS",
        "throttle_release_delay_s",
        integer(0, 900),
        "visibility delay of a released throttled message",
    ),
    Setting(
        "QUEUE_METRICS_INTERVAL",
        "metrics_interval_s",
        number(0.1, 86_400),
        "queue metrics period (s)",
    ),
    Setting(
        "QUEUE_MAX_DEPTH", "max_queue_depth", integer(0), "health threshold on depth (0: none)"
    ),
    Setting(
        "WORKER_RING_BYTES",
        "ring_bytes",
        integer(2 * 1024 * 1024, 1 << 30),
        "ring size each way per worker",
    ),
    Setting("GORAXFAST_SQS_CLIENT", "sqs_client", choice(*SQS_CLIENTS), "data-plane client"),
    Setting(
        "QUEUE_FIFO_GROUP_BY",
        "fifo_group_by",
        choice(*FIFO_GROUP_KEYS),
        "what a FIFO queue's MessageGroupId is taken from when publishing",
    ),
    Setting(
        "QUEUE_FAIR_QUEUE",
        "fair_queue",
        boolean,
        "publish to a standard queue with MessageGroupId = tenant_id (SQS fair queues)",
    ),
    Setting(
        "GORAXFAST_LOG_LEVEL",
        "log_level",
        choice(*LOG_LEVELS),
        "the goraxfast command's log level (unset: info for run, warning for the others)",
    ),
    Setting(
        "GORAXFAST_LOG_FORMAT",
        "log_format",
        choice(*LOG_FORMATS),
        "the goraxfast command's log lines: text, or json (one object per line)",
    ),
)
