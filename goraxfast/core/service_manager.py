"""What a service manager (systemd) asked of this process, read from its environment.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket's path, or an
abstract name starting with ``@``) and waits for ``READY=1`` before it calls the service
started, so ``systemctl start`` returns once the engine receives, not when its process exists,
and units ordered ``After=`` it start then. ``STOPPING=1`` says a stop has begun. With
``WatchdogSec=`` it also passes ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process meant) and
restarts the service when ``WATCHDOG=1`` does not come at least that often: the engine sends
it at half the interval, and only while it is alive by its own liveness rule, so a stalled
event loop or a lost zygote is restarted by systemd as Kubernetes' liveness probe would.

The protocol is sd_notify(3); this module only decides (no socket, no clock).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["NotifyTarget", "notify_message", "notify_target"]


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """Where to send notifications, and how often to ping the watchdog (None: no watchdog)."""

    #: A file system path (str), or an abstract socket's name with its leading NUL (bytes).
    address: str | bytes
    watchdog_interval_s: float | None


def notify_target(environ: Mapping[str, str], pid: int) -> NotifyTarget | None:
    """The target systemd's environment names for process ``pid``, or None when there is none
    (not under ``Type=notify``, or a socket address this cannot use)."""
    socket = environ.get("NOTIFY_SOCKET", "")
    if socket.startswith("@") and len(socket) > 1:
        address: str | bytes = b"\0" + socket[1:].encode()
    elif socket.startswith("/"):
        address = socket
    else:
        return None  # unset, or vsock:/other forms a worker engine has no use for
    return NotifyTarget(address, _watchdog_interval_s(environ, pid))


def _watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    meant = environ.get("WATCHDOG_PID", "")
    if meant and meant != str(pid):
        return None  # for another process (a parent that exec'd us did not hand it on)
    interval = usec / 1e6 / 2  # sd_watchdog_enabled(3): ping at half the timeout
    return interval if math.isfinite(interval) else None


def notify_message(*, ready: bool = False, stopping: bool = False, status: str = "") -> bytes:
    """One datagram of ``KEY=value`` lines; a status line loses its newlines."""
    lines = []
    if ready:
        lines.append("READY=1")
    if stopping:
        lines.append("STOPPING=1")
    if status:
        lines.append("STATUS=" + " ".join(status.split()))
    return "\n".join(lines).encode()
