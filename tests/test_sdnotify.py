"""systemd's Type=notify: READY=1 once receiving, STOPPING=1 on a stop, the watchdog fed only
while the engine is alive. The real process, a real datagram socket, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from test_engine_signals import start_engine

from goraxfast.core.service_manager import NotifyTarget, notify_message, notify_target
from goraxfast.ops.sdnotify import Notifier, watchdog

# --- what the environment asks (sans I/O) -------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "target"),
    [
        pytest.param({}, None, id="not under Type=notify"),
        pytest.param({"NOTIFY_SOCKET": ""}, None, id="empty"),
        pytest.param(
            {"NOTIFY_SOCKET": "/run/systemd/notify"},
            NotifyTarget("/run/systemd/notify", None),
            id="a path",
        ),
        pytest.param({"NOTIFY_SOCKET": "@sd-abc"}, NotifyTarget(b"\0sd-abc", None), id="abstract"),
        pytest.param({"NOTIFY_SOCKET": "vsock:2:1234"}, None, id="vsock: not for a worker"),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000"},
            NotifyTarget("/n", 15.0),
            id="watchdog: ping at half the timeout",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"},
            NotifyTarget("/n", 15.0),
            id="watchdog meant for this pid",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"},
            NotifyTarget("/n", None),
            id="watchdog meant for another process",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"},
            NotifyTarget("/n", None),
            id="bad usec",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, NotifyTarget("/n", None), id="0"
        ),
    ],
)
def test_notify_target(environ: dict[str, str], target: NotifyTarget | None) -> None:
    assert notify_target(environ, pid=42) == target


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ready": True, "status": "receiving"}, b"READY=1\nSTATUS=receiving"),
        ({"stopping": True}, b"STOPPING=1"),
        ({"status": "two\nlines"}, b"STATUS=two lines"),
        ({}, b""),
    ],
)
def test_notify_message(kwargs: dict[str, object], message: bytes) -> None:
    assert notify_message(**kwargs) == message  # type: ignore[arg-type]


# --- a socket as systemd listens on it ----------------------------------------------------


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET, as systemd binds it."""

    def __init__(self, path: Path | bytes) -> None:
        """``path``: a file system path, or an abstract name (bytes, its leading NUL included)."""
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if isinstance(path, bytes) else str(path))
        self.got: list[bytes] = []

    def wait_for(self, wanted: bytes, timeout_s: float = 30.0) -> bytes:
        """The first datagram (seen or still to come) containing ``wanted``."""
        deadline = time.monotonic() + timeout_s
        for data in self.got:
            if wanted in data:
                return data
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} from the engine; got {self.got}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append(data)
            if wanted in data:
                return data

    def close(self) -> None:
        self.sock.close()


def test_a_notifier_without_notify_socket_sends_nothing() -> None:
    notifier = Notifier({})
    notifier.ready("x")
    notifier.ping()
    assert (notifier.enabled, notifier.sent) == (False, 0)


def test_the_watchdog_goes_silent_once_the_engine_is_not_alive(tmp_path: Path) -> None:
    systemd = FakeSystemd(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "20000"})
    answers = iter([(True, "alive")] * 3 + [(False, "the worker zygote has gone away")] * 50)

    async def main() -> None:
        task = asyncio.ensure_future(watchdog(notifier, lambda: next(answers)))
        await asyncio.get_running_loop().run_in_executor(
            None, systemd.wait_for, b"STATUS=not alive"
        )
        await asyncio.sleep(0.1)  # ten intervals more: nothing else comes
        task.cancel()

    try:
        asyncio.run(main())
        systemd.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            systemd.got.append(systemd.sock.recv(4096))
    finally:
        systemd.close()
    assert systemd.got.count(b"WATCHDOG=1") == 3
    assert systemd.got[-1] == b"STATUS=not alive: the worker zygote has gone away"


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_goraxfast_run_under_type_notify_says_ready_feeds_the_watchdog_and_says_stopping(
    config, tmp_path: Path, abstract: bool
) -> None:
    name = f"goraxfast-test-{os.getpid()}"
    systemd = FakeSystemd(b"\0" + name.encode() if abstract else tmp_path / "notify")
    address = "@" + name if abstract else str(tmp_path / "notify")
    proc = start_engine(
        config, tmp_path / "trace", NOTIFY_SOCKET=address, WATCHDOG_USEC="200000"
    )  # WATCHDOG_USEC: a ping every 0.1 s
    try:
        ready = systemd.wait_for(b"READY=1")
        assert b"STATUS=receiving from " in ready
        for _ in range(3):
            systemd.got.clear()
            systemd.wait_for(b"WATCHDOG=1", timeout_s=5)
        os.killpg(proc.pid, signal.SIGTERM)
        assert systemd.wait_for(b"STOPPING=1").startswith(b"STOPPING=1")
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        systemd.close()
    assert proc.returncode == 0, out
    assert "sd_notify" not in out  # no failed send
