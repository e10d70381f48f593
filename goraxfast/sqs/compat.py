"""The AWS-compatibility policies both SQS clients follow, taken from botocore.

What is policy rather than speed lives here, so the two clients cannot drift apart
(:mod:`goraxfast.sqs.fast` keeps the mechanism: wire format, signing, HTTP):

- where: ``AWS_ENDPOINT``, else the regional endpoint; through botocore when an environment
  proxy applies (the fast client connects directly);
- whom to trust over TLS: botocore's CA bundle (``AWS_CA_BUNDLE``, the profile's
  ``ca_bundle``, else botocore's default bundle);
- as whom: static keys from the Config, else botocore's own provider chain (environment,
  profiles, SSO, IMDS/ECS roles), never a chain of our own; refreshable credentials are
  refreshed by botocore, in a thread so the event loop keeps serving;
- errors: the JSON error shape parsed as botocore's parser does (``__type``, ``message``, the
  ``x-amzn-query-error`` header) into a botocore ``ClientError``, which
  :func:`goraxfast.sqs.botocore.wrap_error` maps to our typed errors exactly as for the botocore client;
- retries, botocore's standard mode: 3 attempts, backoff ``rand * min(2 ** (n - 1), 20)`` s, a
  retry quota of 500 (5 per retry, 10 per timeout, refilled by 1 per first-try success),
  retrying throttling and transient codes, HTTP 500/502/503/504 and transport errors.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.httpsession import get_cert_path
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker
from botocore.utils import get_environ_proxies

from goraxfast.config import Config
from goraxfast.core.acks import ACK_CALLS_PER_KIND
from goraxfast.core.pipeline import DEFAULT_LIMITS
from goraxfast.core.sqs_model import RETRYABLE_CODES
from goraxfast.errors import ConfigError, ConfigProblem
from goraxfast.sqs.httpclient import Response

#: Connections beyond the receives and acks in flight: queue attributes, DLQ sends, a spare.
SPARE_CONNECTIONS = 8


def connections_for(config: Config) -> int:
    """How many connections a data-plane client may keep open: one per receive in flight (up to
    QUEUE_POLLERS, or the automatic pipeline's most), one per ack call in flight (deletes and
    visibility changes), and a few spare. Connections open only as calls need them, so an idle
    engine keeps few; a pool smaller than the pipeline would queue calls behind each other and
    undo it through a real round trip."""
    receives = config.pollers or DEFAULT_LIMITS.max_pollers
    return receives + 2 * ACK_CALLS_PER_KIND + SPARE_CONNECTIONS


def endpoint_for(config: Config) -> str:
    """Where the data plane's requests go: ``AWS_ENDPOINT`` when set, else the region's."""
    return config.aws_endpoint or regional_endpoint(config.aws_region)


def environ_proxy(endpoint: str) -> str | None:
    """The proxy botocore would send ``endpoint``'s requests through, from the environment."""
    scheme = urlsplit(endpoint).scheme
    proxy: str | None = get_environ_proxies(endpoint).get(scheme)
    return proxy or None


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(
        netloc=f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    ).geturl()


def tls_context() -> ssl.SSLContext:
    """The certificates botocore trusts: ``AWS_CA_BUNDLE`` or the profile's ``ca_bundle`` when
    set, else botocore's own default bundle (certifi's when installed), not the system store, so
    that the two clients accept the same servers."""
    bundle = botocore.session.get_session().get_config_variable("ca_bundle")
    path = bundle or get_cert_path(True)
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        problem = ConfigProblem(
            "AWS_CA_BUNDLE", str(path), f"a readable PEM bundle of CA certificates ({exc})"
        )
        raise ConfigError([problem]) from exc


def regional_endpoint(region: str) -> str:
    """SQS's public endpoint for a region (China's partition has its own domain)."""
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sqs.{region}.{domain}"


class CredentialCache:
    """A frozen snapshot of botocore credentials, looked at again at most once a second.

    botocore refreshes temporary credentials inside ``get_frozen_credentials`` (blocking I/O to
    STS, SSO or the instance metadata service); when a refresh is due that call runs in a thread
    so the event loop keeps serving the other calls.
    """

    def __init__(self, source: Credentials | None, recheck_s: float = 1.0) -> None:
        self._source = source
        self._recheck_s = recheck_s
        self._frozen: ReadOnlyCredentials | None = None
        self._next_check = float("-inf")
        self._refreshing: asyncio.Future[ReadOnlyCredentials] | None = None

    def current(self, now: float) -> ReadOnlyCredentials | None:
        """The snapshot to sign with, or None when :meth:`refresh` must run first."""
        if now < self._next_check and self._frozen is not None:
            return self._frozen
        source = self._source
        if source is None:
            raise NoCredentialsError()
        if source.refresh_needed() if hasattr(source, "refresh_needed") else False:
            return None
        self._frozen = source.get_frozen_credentials()
        self._next_check = now + self._recheck_s
        return self._frozen

    async def refresh(self, now: float) -> ReadOnlyCredentials:
        """Let botocore refresh in a thread; concurrent callers share one refresh."""
        task = self._refreshing
        if task is None:
            assert self._source is not None
            task = asyncio.ensure_future(asyncio.to_thread(self._source.get_frozen_credentials))
            self._refreshing = task
        try:
            frozen = await asyncio.shield(task)
        finally:
            if self._refreshing is task and task.done():
                self._refreshing = None
        self._frozen, self._next_check = frozen, now + self._recheck_s
        return frozen


async def resolve_credentials(config: Config) -> Credentials | None:
    """Static keys from the Config when both are set, else botocore's whole provider chain."""
    if config.static_credentials:
        token = config.aws_session_token or None
        return Credentials(config.aws_access_key_id, config.aws_secret_access_key, token)
    session = botocore.session.get_session()
    creds: Credentials | None = await asyncio.to_thread(session.get_credentials)
    return creds


#: Whole-call retry triggers: botocore standard mode's codes, plus SQS's own retryable ones.
RETRY_CODES = (
    frozenset(
        TransientRetryableChecker._TRANSIENT_ERROR_CODES
        + ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    )
    | RETRYABLE_CODES
)
RETRY_STATUSES = frozenset(TransientRetryableChecker._TRANSIENT_STATUS_CODES)


class RetryQuota:
    """botocore's standard-mode retry budget: retries spend it, first-try successes refill it."""

    INITIAL = 500
    RETRY_COST = 5
    TIMEOUT_COST = 10
    SUCCESS_REFILL = 1

    def __init__(self, capacity: int = INITIAL) -> None:
        self.capacity = self.available = capacity

    def acquire(self, amount: int) -> bool:
        if amount > self.available:
            return False
        self.available -= amount
        return True

    def release(self, amount: int) -> None:
        self.available = min(self.capacity, self.available + amount)


def backoff_delay_s(attempt: int, rand: float, base_s: float = 1.0, cap_s: float = 20.0) -> float:
    """botocore standard mode: full jitter, ``rand * min(base * 2 ** (attempt - 1), cap)``."""
    return rand * min(base_s * 2.0 ** (attempt - 1), cap_s)


def client_error(resp: Response, operation: str) -> ClientError:
    """The ClientError botocore's JSON parser would build from this error response."""
    body = resp.body.strip()
    error: dict[str, str] = {"Message": "", "Code": ""}
    if resp.status >= 500 and (not body or body.startswith(b"<html>")):
        error = {"Code": str(resp.status), "Message": http.client.responses.get(resp.status, "")}
    else:
        parsed: Any = {}
        if resp.body:  # json, as botocore: errors are rare and its quirks are the contract here
            text = resp.body.decode("utf-8", "replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"message": text}
            if not isinstance(parsed, dict):
                parsed = {"message": text}
        error["Message"] = parsed.get("message", parsed.get("Message", ""))
        code = parsed.get("__type", str(resp.status))
        if code is not None:
            code = str(code).split(":", 1)[0].rsplit("#", 1)[-1]
            query = resp.headers.get("x-amzn-query-error")
            parts = query.split(";") if query is not None else []
            if len(parts) == 2 and parts[0]:
                error["QueryErrorCode"], error["Type"], code = code, parts[1], parts[0]
            error["Code"] = code
    meta = {"HTTPStatusCode": resp.status, "HTTPHeaders": resp.headers}
    if "x-amzn-requestid" in resp.headers:
        meta["RequestId"] = resp.headers["x-amzn-requestid"]
    return ClientError({"Error": error, "ResponseMetadata": meta}, operation)
