"""Opening the engine's data plane: which client, where it sends, and as whom it signs.

``GORAXFAST_SQS_CLIENT`` (``Config.sqs_client``) picks the client: ``botocore`` is
:class:`goraxfast.sqs.SQSClient` (aiobotocore), ``fast`` is
:class:`goraxfast.fastsqs.FastSQSClient`. Both implement :class:`goraxfast.sqs.DataPlane` and
``close()``; the control plane (queue attributes, creating queues) stays on aiobotocore/boto3
whichever is chosen.

The fast client gets its endpoint and credentials here, from the same facts botocore would use:
``AWS_ENDPOINT`` or the regional endpoint, and static keys from the Config or else botocore's
own provider chain (environment, profiles, SSO, IMDS/ECS roles), never a chain of our own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from goraxfast.config import Config
from goraxfast.sqs import DataPlane


class ClosableDataPlane(DataPlane, Protocol):
    """A data plane the engine owns: it closes it on shutdown."""

    async def close(self) -> None: ...


async def open_data_plane(config: Config) -> ClosableDataPlane:
    """A started client for ``config.sqs_client``: ``"botocore"`` (default) or ``"fast"``."""
    if config.sqs_client == "fast":
        from goraxfast.fastsqs import FastSQSClient

        return await FastSQSClient(config).start()
    if config.sqs_client == "botocore":
        from goraxfast.sqs import SQSClient

        return await SQSClient(config).start()
    raise ValueError(f"unknown sqs_client {config.sqs_client!r}: expected 'botocore' or 'fast'")


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
