"""sd_notify(3) for ``Type=notify`` units: readiness, stopping, the watchdog.

The decisions (which socket, how often) are :mod:`goraxfast.core.service_manager`; this sends
the datagrams. A send that fails (systemd gone, a full socket buffer) is logged once and never
stops the engine: notifications help systemd, they are not the engine's work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

from goraxfast.core.service_manager import NotifyTarget, notify_message, notify_target

__all__ = ["Notifier", "watchdog"]

log = logging.getLogger("goraxfast.engine")


class Notifier:
    """Sends to ``NOTIFY_SOCKET``; does nothing where it is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.target: NotifyTarget | None = notify_target(env, os.getpid() if pid is None else pid)
        self._sock: socket.socket | None = None
        self._failed = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.target is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        return self.target.watchdog_interval_s if self.target is not None else None

    def ready(self, status: str) -> None:
        self._send(notify_message(ready=True, status=status))

    def stopping(self, status: str) -> None:
        self._send(notify_message(stopping=True, status=status))

    def status(self, status: str) -> None:
        self._send(notify_message(status=status))

    def ping(self) -> None:
        self._send(b"WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, data: bytes) -> None:
        target = self.target
        if target is None or not data:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, target.address)
            self.sent += 1
            self._failed = False
        except OSError as exc:
            if not self._failed:  # once per run of failures, never a line per ping
                log.warning("sd_notify to %r failed: %s", target.address, exc)
            self._failed = True


async def watchdog(notifier: Notifier, alive: Callable[[], tuple[bool, str]]) -> None:
    """Ping at half ``WATCHDOG_USEC`` while ``alive()`` says so; when it does not, stay silent
    so that systemd restarts the service (and say why once, in STATUS=)."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    silent = False
    while True:
        ok, why = alive()
        if ok:
            notifier.ping()
            silent = False
        elif not silent:
            log.error("not alive (%s): the systemd watchdog is no longer fed", why)
            notifier.status(f"not alive: {why}")
            silent = True
        await asyncio.sleep(interval)
