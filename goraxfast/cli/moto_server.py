"""Start and stop a local SQS-compatible server on loopback (moto's server), no Docker needed.

The test suite and ``make run``'s fallback use moto's server: it is ready in well under a second
and answers the AWS JSON protocol faithfully, but it slows with queue depth (every send scans the
queue), so it is for functional work on small queues. LocalStack lives in :mod:`goraxfast.cli.localstack`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType

from goraxfast.errors import GoraxfastError

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free now (tiny race, acceptable for local servers and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http_ready(
    url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers any HTTP status; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise GoraxfastError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered: that is all "ready" means here
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise GoraxfastError(f"{url} not ready after {timeout_s:g} s ({last})")


@dataclass
class MotoServer:
    """moto's standalone server in a child process, bound to 127.0.0.1 on a free port."""

    port: int = 0
    host: str = LOOPBACK
    ready_timeout_s: float = 30.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        if self.port == 0:
            self.port = free_port(self.host)
        env = dict(os.environ)
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            wait_http_ready(f"{self.endpoint}/moto-api/", self.ready_timeout_s, self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def reset(self) -> None:
        """Forget every queue (moto's reset API): a clean server without a restart."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=5.0):
            pass

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
