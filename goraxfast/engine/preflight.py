"""What the engine asks SQS before it takes a message: are the queues there, may it use them,
and how large may a dead letter be.

A mistake no retry can fix (no such queue, access denied, credentials refused or missing) stops
the engine at start with one line per problem and exit 2, instead of a ready engine that logs
forever. A queue that cannot be reached is not such a mistake: the engine starts and backs off.
"""

from __future__ import annotations

import asyncio
import logging

from goraxfast.config import Config
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_LEGACY_MAX_MESSAGE_BYTES,
    UNUSABLE_CODES,
)
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError, SQSError
from goraxfast.sqs.botocore import SQSClient

log = logging.getLogger("goraxfast.engine")

#: How long the start-up check of each queue may take before the engine starts anyway.
PREFLIGHT_TIMEOUT_S = 10.0


def startup_problem(config: Config, variable: str, url: str, exc: SQSError) -> ConfigProblem:
    """The one line that says which setting SQS refused at start, and why."""
    code = exc.code or ""
    if code in ("NoCredentials", "ProfileNotFound"):
        name = "AWS_PROFILE" if code == "ProfileNotFound" else "AWS credentials"
        return ConfigProblem(name, "(botocore's credential chain)", exc.detail)
    if code in ("AccessDenied", "AccessDeniedException"):
        return ConfigProblem(variable, url, f"access denied by SQS ({code}): {exc.detail}")
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return ConfigProblem(variable, url, f"no such queue ({code})")
    who = "AWS_ACCESS_KEY_ID" if config.static_credentials else "AWS credentials"
    shown = config.aws_access_key_id[:4] + "..." if config.static_credentials else "(default chain)"
    return ConfigProblem(who, shown, f"refused by SQS ({code}): {exc.detail}")


async def check_queues(client: SQSClient, config: Config) -> None:
    """Raise :class:`ConfigError` with every problem SQS reports about the configured queues."""
    problems: list[ConfigProblem] = []
    for variable, url in (
        ("AWS_SQS_QUEUE_URL", config.queue_url),
        ("AWS_SQS_DLQ_URL", config.dlq_url),
    ):
        if not url:
            continue
        try:
            await asyncio.wait_for(client.queue_attributes(url), PREFLIGHT_TIMEOUT_S)
        except SQSError as exc:
            if exc.code in UNUSABLE_CODES:
                problem = startup_problem(config, variable, url, exc)
                if problem not in problems:  # refused credentials: one line, not one a queue
                    problems.append(problem)
            else:
                log.warning("cannot check %s at start (%s); starting anyway", url, exc)
        except TimeoutError:
            log.warning(
                "no answer from SQS for %s within %g s at start; starting anyway",
                url,
                PREFLIGHT_TIMEOUT_S,
            )
    if problems:
        raise ConfigError(problems)


async def dlq_max_message_bytes(client: SQSClient | None, config: Config) -> int:
    """The DLQ's own MaximumMessageSize, so that every letter is fitted to it.

    Read, never assumed: SQS's default is 1 MiB since 2025, but a DLQ may have been created
    earlier with 256 KiB, or set smaller than its source queue. When it cannot be read the
    older default is the safe guess: a letter fitted to it fits either.
    """
    if client is None or not config.dlq_url:
        return SQS_DEFAULT_MAX_MESSAGE_BYTES
    try:
        attrs = await client.queue_attributes(config.dlq_url)
    except GoraxfastError as exc:
        fallback = SQS_LEGACY_MAX_MESSAGE_BYTES
        log.warning("cannot read the DLQ's attributes (%s); assuming %d bytes", exc, fallback)
        return fallback
    return attrs.maximum_message_size or SQS_DEFAULT_MAX_MESSAGE_BYTES
