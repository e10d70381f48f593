"""Which SQS client the engine and publishers get, and opening it.

``GORAXFAST_SQS_CLIENT`` (``Config.sqs_client``) picks the client: ``botocore`` is
:class:`goraxfast.sqs.botocore.SQSClient` (aiobotocore), ``fast`` is
:class:`goraxfast.sqs.fast.FastSQSClient`. Both implement :class:`goraxfast.core.dataplane.DataPlane` and
``close()``; the control plane (queue attributes, creating queues) stays on aiobotocore/boto3
whichever is chosen.

The policies the fast client shares with botocore live in :mod:`goraxfast.sqs.compat`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from goraxfast.config import Config
from goraxfast.core.dataplane import ClosableDataPlane
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.compat import endpoint_for, environ_proxy, without_password

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from goraxfast.sqs.fast import FastSQSClient  # imported where used: fastsqs imports this


async def open_data_plane(config: Config) -> ClosableDataPlane:
    """A started client for ``config.sqs_client`` (see :func:`new_client`)."""
    return await new_client(config).start()


def new_client(config: Config) -> SQSClient | FastSQSClient:
    """An unstarted async client for ``config.sqs_client``: ``"fast"`` (default) or ``"botocore"``;
    the engine's data plane and ``Publisher.from_config`` both take theirs from here.

    The fast client connects straight to the endpoint. Where botocore would go through an HTTP
    proxy instead (``HTTP_PROXY``/``HTTPS_PROXY``, less ``NO_PROXY``), botocore's client is used,
    and that is said once: bypassing a proxy an operator set up is not ours to decide.
    """
    if config.sqs_client not in ("fast", "botocore"):
        raise ValueError(f"unknown sqs_client {config.sqs_client!r}: expected 'botocore' or 'fast'")
    if fast_client_applies(config):
        from goraxfast.sqs.fast import FastSQSClient

        return FastSQSClient(config)
    return SQSClient(config)


_WARNED_PROXIES: set[tuple[str, str]] = set()


def fast_client_applies(config: Config) -> bool:
    """``GORAXFAST_SQS_CLIENT=fast`` and no environment proxy in the way (logged when there is:
    the fast client connects directly, and bypassing a proxy is not ours to decide)."""
    if config.sqs_client != "fast":
        return False
    endpoint = endpoint_for(config)
    proxy = environ_proxy(endpoint)
    if proxy is None:
        return True
    if (endpoint, proxy) in _WARNED_PROXIES:  # an app may open a publisher per request
        return False
    _WARNED_PROXIES.add((endpoint, proxy))
    log.warning(
        "GORAXFAST_SQS_CLIENT=fast does not speak through proxies and %s goes through %s "
        "(HTTP(S)_PROXY, not exempted by NO_PROXY): the botocore client is used instead",
        endpoint,
        without_password(proxy),
    )
    return False
