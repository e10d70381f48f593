"""The engine's SQS clients: which ones it opens, which one carries the hot calls, and closing
only what it opened.

The control plane (queue attributes for metrics and the DLQ size) stays on aiobotocore; the hot
calls (receive, delete, change visibility, send) go to the client GORAXFAST_SQS_CLIENT names, or
to a data plane injected by tests and custom transports, which is not the engine's to close.
Each client is recorded as soon as it is open, so a start that fails half-way still closes it.
"""

from __future__ import annotations

from goraxfast.config import Config
from goraxfast.core.dataplane import ClosableDataPlane, DataPlane
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.choice import open_data_plane

__all__ = ["Clients"]


class Clients:
    """The control-plane client (None with an injected data plane) and the data plane."""

    def __init__(self, injected: DataPlane | None) -> None:
        self.injected = injected
        self.client: SQSClient | None = None
        self.owned_dp: ClosableDataPlane | None = None
        self.dp: DataPlane | None = None

    async def open(self, config: Config) -> None:
        if self.injected is not None:
            self.dp = self.injected  # injected (tests, custom transports): not ours to close
            return
        self.client = await SQSClient(config).start()
        if config.sqs_client == "botocore":
            self.dp = self.client
        else:
            self.owned_dp = await open_data_plane(config)
            self.dp = self.owned_dp

    def in_use(self) -> str:
        """The data plane actually used: ``fast`` falls back to ``botocore`` behind a proxy."""
        if self.injected is not None:
            return f"injected ({type(self.injected).__name__})"
        if self.owned_dp is None or isinstance(self.owned_dp, SQSClient):
            return "botocore"
        return "fast"

    async def close(self) -> None:
        """Close what was opened here: the data plane, then the control-plane client."""
        if self.owned_dp is not None:
            await self.owned_dp.close()
        if self.client is not None:
            await self.client.close()
