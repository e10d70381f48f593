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
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import SplitResult, urlsplit

from goraxfast.core.pipeline import DEFAULT_LIMITS
from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S
from goraxfast.errors import ConfigError, ConfigProblem

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "f", "false", "no", "off", "n"})
_REGION_TEXT = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
#: SQS queue names: 1-80 of letters, digits, hyphens and underscores, FIFO ones ending ".fifo".
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
QUEUE_NAME_RULE = "1-80 letters, digits, hyphens or underscores (a FIFO queue's ending in .fifo)"

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
    pollers: int = 0  # 0: automatic; else the most receives in flight (or exactly, if fixed)
    prefetch: int | None = None  # None: automatic; else the most held beyond the running ones
    pipeline: str = "auto"  # "fixed": QUEUE_POLLERS and QUEUE_PREFETCH are kept as they are
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


# --- parsers: each raises ValueError with the allowed range as its message -------------------


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("a boolean: 1 t true yes on / 0 f false no off")


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A parser of decimal integers in ``[lo, hi]`` (ASCII digits only, as Go's strconv.Atoi:
    Python's int() would also take "1_0" or "١٠")."""
    allowed = _range_text("an integer", lo, hi)

    def parse(raw: str) -> int:
        if not _INT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        try:
            value = int(raw, 10)
        except ValueError:  # more digits than Python converts (4300)
            raise ValueError(allowed) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(allowed)
        return value

    return parse


def number(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A parser of finite decimal numbers in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).
    Both bounds are required: an unbounded duration (``1e300``) is as wrong as ``inf``."""
    allowed = _range_text("a number", lo, hi, lo_open=lo_open)

    def parse(raw: str) -> float:
        if not _FLOAT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        value = float(raw)  # "1e309" parses to inf: refused below like any out-of-range value
        if not math.isfinite(value) or value > hi or (value <= lo if lo_open else value < lo):
            raise ValueError(allowed)
        return value

    return parse


def _num(value: float) -> str:
    """Exact bounds in errors: 2097152, not 2.09715e+06."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _range_text(kind: str, lo: float | None, hi: float | None, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        if lo_open:
            return f"{kind} > {_num(lo)} and <= {_num(hi)}"
        return f"{kind} from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{kind} <= {_num(hi)}"
    return kind


def _region(raw: str) -> str:
    if not _REGION_TEXT.fullmatch(raw):
        raise ValueError("a region name like us-east-1: lowercase letters, digits and hyphens")
    return raw


def _credential(raw: str) -> str:
    if not _PRINTABLE.fullmatch(raw):
        raise ValueError("printable ASCII without spaces (check for a stray quote or newline)")
    return raw


def _parse_http_url(raw: str, shape: str) -> SplitResult:
    """``raw`` as an http(s) URL with a host and nothing a client could not use; ``shape`` says
    what was expected, in every refusal."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"{shape} ({why})")

    if not raw.lower().startswith(("http://", "https://")):
        raise refuse("it must start with http:// or https://")
    if not _PRINTABLE.fullmatch(raw):
        raise refuse("spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise refuse(str(exc).lower()) from None
    if not parts.hostname:
        raise refuse("no host")
    if port == 0:
        raise refuse("port 0")
    if parts.username is not None:
        raise refuse("user:password@ is not where AWS credentials go")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise refuse("a query or fragment")
    return parts


def _endpoint_url(raw: str) -> str:
    _parse_http_url(
        raw, "an http:// or https:// URL of the SQS endpoint, like http://localhost:4566"
    )
    return raw


def _queue_url(raw: str) -> str:
    shape = (
        "an http:// or https:// queue URL ending in the queue name, "
        "like https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    )
    parts = _parse_http_url(raw, shape)
    name = parts.path.rpartition("/")[2]
    if not name:
        raise ValueError(f"{shape} (no queue name after the host)")
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(f"{shape} (the queue name {name!r} is not {QUEUE_NAME_RULE})")
    return raw


_BIND_HOST_RULE = (
    "an IP address to listen on (127.0.0.1, 0.0.0.0, ::1, ::) or localhost; "
    "host names are not looked up"
)


def _bind_host(raw: str) -> str:
    """An address ``bind()`` takes without a name lookup: a slow or failing DNS answer must not
    hold the engine's start-up (a typo once cost 6.5 s, then a traceback)."""
    if raw.lower() == "localhost":
        return "localhost"
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError(_BIND_HOST_RULE) from None
    return raw


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError("one of: " + ", ".join(options))
        return raw.lower()

    return parse


_cap = integer(1)


def _auto_or(parse: Callable[[str], int]) -> Callable[[str], int | None]:
    """``auto`` (any case) for the automatic value, else what ``parse`` takes."""

    def parse_auto(raw: str) -> int | None:
        if raw.lower() == "auto":
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"auto, or {exc}") from None

    return parse_auto


def _tenant_limits(raw: str) -> dict[str, int]:
    """``tenant-a=2,tenant-b=5``: per-tenant caps that override WORKER_MAX_CONCURRENCY_PER_TENANT."""
    allowed = "comma-separated tenant=cap pairs, each tenant once, each cap an integer >= 1"
    out: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        tenant, sep, cap = (text.strip() for text in part.partition("="))
        try:
            value = _cap(cap)
        except ValueError:
            value = 0
        if not sep or not tenant or value < 1:
            raise ValueError(f"{allowed}; not {part.strip()!r}")
        if tenant in out:
            raise ValueError(f"{allowed}; {tenant!r} is named twice")
        out[tenant] = value
    return out


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
    Setting("QUEUE_ENABLED", "enabled", _bool, "queue mode on/off for apps that embed the engine"),
    Setting("AWS_REGION", "aws_region", _region, "AWS region"),
    Setting("AWS_ACCESS_KEY_ID", "aws_access_key_id", _credential, "static key (with the secret)"),
    Setting(
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        _credential,
        "static secret (with the key)",
        secret=True,
    ),
    Setting(
        "AWS_SESSION_TOKEN",
        "aws_session_token",
        _credential,
        "session token for static keys",
        secret=True,
    ),
    Setting(
        "AWS_ENDPOINT", "aws_endpoint", _endpoint_url, "custom endpoint (LocalStack, moto, fauxqs)"
    ),
    Setting("AWS_SQS_QUEUE_URL", "queue_url", _queue_url, "main queue URL (to consume/publish)"),
    Setting("AWS_SQS_DLQ_URL", "dlq_url", _queue_url, "dead-letter queue URL"),
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
    Setting("QUEUE_DELETE_AFTER_PROCESS", "delete_after_process", _bool, "delete after success"),
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
        _bind_host,
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
        _auto_or(integer(0, 10_000)),
        "most messages held beyond the running ones (auto: sized by the round trip)",
    ),
    Setting(
        "QUEUE_PIPELINE",
        "pipeline",
        _choice("auto", "fixed"),
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
    Setting("WORKER_TENANT_LIMITS", "tenant_limits", _tenant_limits, "per-tenant caps: a=2,b=5"),
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
    Setting("GORAXFAST_SQS_CLIENT", "sqs_client", _choice(*SQS_CLIENTS), "data-plane client"),
    Setting(
        "QUEUE_FIFO_GROUP_BY",
        "fifo_group_by",
        _choice(*FIFO_GROUP_KEYS),
        "what a FIFO queue's MessageGroupId is taken from when publishing",
    ),
    Setting(
        "QUEUE_FAIR_QUEUE",
        "fair_queue",
        _bool,
        "publish to a standard queue with MessageGroupId = tenant_id (SQS fair queues)",
    ),
    Setting(
        "GORAXFAST_LOG_LEVEL",
        "log_level",
        _choice(*LOG_LEVELS),
        "the goraxfast command's log level (unset: info for run, warning for the others)",
    ),
    Setting(
        "GORAXFAST_LOG_FORMAT",
        "log_format",
        _choice(*LOG_FORMATS),
        "the goraxfast command's log lines: text, or json (one object per line)",
    ),
)


# --- checks across variables, and against the AWS config files -------------------------------


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def environment_problems(env: Mapping[str, str]) -> list[ConfigProblem]:
    """What no single variable shows: credentials set in halves, a session token with no keys,
    a DLQ that is the main queue, a profile no AWS config file defines."""
    problems: list[ConfigProblem] = []
    key, secret = _set(env, "AWS_ACCESS_KEY_ID"), _set(env, "AWS_SECRET_ACCESS_KEY")
    if key != secret:
        missing, given = (
            ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            if key
            else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        )
        problems.append(
            ConfigProblem(
                missing,
                env.get(missing, ""),
                f"required when {given} is set: set both for static credentials, "
                "or neither for the default AWS credential chain",
            )
        )
    if _set(env, "AWS_SESSION_TOKEN") and not key and not secret:
        problems.append(
            ConfigProblem(
                "AWS_SESSION_TOKEN",
                SECRET_MASK,
                "used only with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which are unset",
            )
        )
    queue, dlq = env.get("AWS_SQS_QUEUE_URL", "").strip(), env.get("AWS_SQS_DLQ_URL", "").strip()
    if dlq and dlq == queue:
        problems.append(
            ConfigProblem(
                "AWS_SQS_DLQ_URL",
                env["AWS_SQS_DLQ_URL"],
                "a queue other than AWS_SQS_QUEUE_URL (dead letters must leave the main queue)",
            )
        )
    problem = profile_problem(env)
    if problem is not None:
        problems.append(problem)
    return problems


def profile_problem(env: Mapping[str, str]) -> ConfigProblem | None:
    """An ``AWS_PROFILE`` (or ``AWS_DEFAULT_PROFILE``, which botocore reads first) that neither
    the config file nor the credentials file defines: botocore would fail on the first call.

    Reads the two files only (``AWS_CONFIG_FILE``, ``AWS_SHARED_CREDENTIALS_FILE`` or their
    defaults under ``~/.aws``): no network, no credential resolution.
    """
    name = next((n for n in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE") if _set(env, n)), None)
    if name is None:
        return None
    profile = env[name].strip()
    if profile == "default":  # botocore accepts "default" with no file at all
        return None
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    config_file = env.get("AWS_CONFIG_FILE", "").strip() or "~/.aws/config"
    credentials_file = env.get("AWS_SHARED_CREDENTIALS_FILE", "").strip() or "~/.aws/credentials"
    session.set_config_variable("config_file", config_file)
    session.set_config_variable("credentials_file", credentials_file)
    try:
        known = sorted(session.available_profiles)
    except botocore.exceptions.BotoCoreError as exc:  # a file that does not parse
        return ConfigProblem(name, env[name], f"a profile of readable AWS config files ({exc})")
    if profile in known:
        return None
    listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return ConfigProblem(
        name,
        env[name],
        f"a profile defined in {config_file} or {credentials_file}"
        + (f" (they define: {listed})" if known else " (they define none)"),
    )
