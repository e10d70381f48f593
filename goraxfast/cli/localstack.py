"""LocalStack on the host, no Docker: its own Python 3.13 venv, SQS only, bound to 127.0.0.1.

``localstack-core`` 2026.3.0 is the last release that runs without an account token, and it fails
on Python 3.11/3.12, so it gets a venv of its own under ``.localstack/`` with the pins it was
measured with. Its default (twisted) gateway ignores the host in ``GATEWAY_LISTEN`` and listens
on every interface; loopback-only is a must here, so we run it with ``GATEWAY_SERVER=hypercorn``,
which binds loopback correctly at the price of ~35-40 % throughput, and we verify the bound
address after every start rather than trusting the setting.

``python -m goraxfast.cli.localstack start|stop|status``; exit code 3 (:data:`EXIT_NO_PYTHON`) means
Python 3.13 is missing, so ``make run`` can fall back to moto.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from goraxfast.errors import GoraxfastError

PINS = (
    "localstack-core[runtime]==2026.3.0",
    "cbor2<6",
    "pyopenssl<25",
    "cryptography<45",
    "service_identity",
)
DEFAULT_PORT = 4566
HOST = "127.0.0.1"
EXIT_OK, EXIT_FAILED, EXIT_NO_PYTHON = 0, 1, 3
_READY_STATES = ("running", "available")
# Interpreter variables of our own venv must not leak into LocalStack's 3.13 venv.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class LocalStackError(GoraxfastError):
    """LocalStack could not be installed, started, verified or stopped; carries the facts."""


class PythonMissingError(LocalStackError):
    """No working Python 3.13: the caller may fall back to another server (exit code 3)."""


def state_dir() -> Path:
    """Where the venv, log, pid file and volume live.

    The project root when running from a checkout (so ``make`` targets and ``stop`` from any
    directory agree), else the current directory; ``GORAXFAST_LOCALSTACK_DIR`` overrides both.
    """
    override = os.environ.get("GORAXFAST_LOCALSTACK_DIR")
    if override:
        return Path(override)
    root = Path(__file__).resolve().parent.parent
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / ".localstack"


def find_python313(path: str | None = None, pyenv_roots: list[Path] | None = None) -> str | None:
    """A Python 3.13 interpreter that actually runs, or None.

    Each candidate is executed: a pyenv shim named ``python3.13`` sits on PATH on these machines
    and fails with "command not found" when 3.13 is not the selected pyenv version.
    """
    candidates: list[str] = []
    on_path = shutil.which("python3.13", path=path)
    if on_path:
        candidates.append(on_path)
    if pyenv_roots is None:
        pyenv_roots = [Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()]
    for root in pyenv_roots:
        candidates += [str(p) for p in sorted(root.glob("versions/3.13*/bin/python3.13"))[::-1]]
    for candidate in candidates:
        if _is_python313(candidate):
            return candidate
    return None


def _is_python313(executable: str) -> bool:
    probe = "import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)"
    try:
        done = subprocess.run([executable, "-c", probe], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def runtime_env(port: int, volume_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The environment LocalStack's runtime needs: SQS only, loopback only, nothing persisted."""
    env = {k: v for k, v in base.items() if k not in _DROPPED_ENV}
    env.update(
        GATEWAY_LISTEN=f"{HOST}:{port}",
        LOCALSTACK_HOST=f"{HOST}:{port}",
        GATEWAY_SERVER="hypercorn",  # twisted listens on 0.0.0.0 whatever GATEWAY_LISTEN says
        SERVICES="sqs",
        EAGER_SERVICE_LOADING="1",
        DNS_ADDRESS="0",  # else it opens a DNS server on port 53
        DISABLE_EVENTS="1",
        SKIP_SSL_CERT_DOWNLOAD="1",
        SQS_ENDPOINT_STRATEGY="path",
        PERSISTENCE="0",
        LOCALSTACK_VOLUME_DIR=str(volume_dir),
    )
    return env


def parse_proc_net_tcp(text: str) -> list[tuple[str, int]]:
    """Listening (state 0A) sockets in a /proc/net/tcp or tcp6 table, as (address, port).

    The kernel prints each 32-bit word of the address in host byte order, hence the native
    ``struct`` round trip.
    """
    out: list[tuple[str, int]] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        addr_hex, _, port_hex = parts[1].partition(":")
        words = [int(addr_hex[i : i + 8], 16) for i in range(0, len(addr_hex), 8)]
        packed = b"".join(struct.pack("=I", w) for w in words)
        out.append((str(ipaddress.ip_address(packed)), int(port_hex, 16)))
    return out


def listeners_of(port: int) -> list[tuple[str, int]]:
    """Every TCP listener on ``port``, IPv4 and IPv6, from /proc (no ``ss`` needed)."""
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            found += [x for x in parse_proc_net_tcp(Path(table).read_text()) if x[1] == port]
    return found


def non_loopback(listeners: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The listeners reachable from outside the machine (0.0.0.0, ::, a real interface)."""
    exposed = []
    for addr, port in listeners:
        ip = ipaddress.ip_address(addr)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            exposed.append((addr, port))
    return exposed


@dataclass
class LocalStack:
    """One LocalStack runtime on ``127.0.0.1:port``, managed through files in :func:`state_dir`."""

    port: int = DEFAULT_PORT
    directory: Path = field(default_factory=state_dir)
    ready_timeout_s: float = 90.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def venv_python(self) -> Path:
        return self.directory / "venv" / "bin" / "python"

    @property
    def log_path(self) -> Path:
        return self.directory / "localstack.log"

    @property
    def pid_path(self) -> Path:
        return self.directory / "localstack.pid"

    def command(self) -> list[str]:
        """Start the runtime directly, as LocalStack's Docker image does (no CLI, no token)."""
        return [str(self.venv_python), "-m", "localstack.runtime.main"]

    def health(self) -> dict[str, object] | None:
        """LocalStack's own health document, or None when nothing answers on the port."""
        url = f"{self.endpoint}/_localstack/health"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                doc = json.loads(resp.read())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def sqs_ready(self) -> bool:
        doc = self.health()
        services = doc.get("services") if doc else None
        return isinstance(services, dict) and services.get("sqs") in _READY_STATES

    def ensure_installed(self) -> None:
        """Create ``.localstack/venv`` with the pins once; a stamp makes later starts instant."""
        stamp = self.directory / "venv" / ".goraxfast-pins"
        wanted = "\n".join(PINS)
        if self.venv_python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return
        python = find_python313()
        if python is None:
            raise PythonMissingError(
                "LocalStack needs Python 3.13: none found as python3.13 on PATH or under "
                "~/.pyenv/versions/3.13*/bin/ (install one, e.g. `pyenv install 3.13`)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        venv = self.directory / "venv"
        print(f"installing LocalStack into {venv} with {python} (~80 s once)", file=sys.stderr)
        started = time.monotonic()
        for argv in (
            [python, "-m", "venv", "--clear", str(venv)],
            [str(self.venv_python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(self.venv_python), "-m", "pip", "install", "--quiet", *PINS],
        ):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise LocalStackError(
                    f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
                )
        stamp.write_text(wanted)
        print(f"LocalStack installed in {time.monotonic() - started:.0f} s", file=sys.stderr)

    def start(self) -> LocalStack:
        """Install if needed, start in its own session, wait for SQS, verify loopback binding."""
        if self.sqs_ready():  # already up (ours from an earlier `start`, or the user's):
            self.verify_loopback()  # not ours to stop, but not ours to use if it is exposed
            return self
        self.ensure_installed()
        if listeners_of(self.port):
            raise LocalStackError(f"port {self.port} is already in use by another server")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "volume").mkdir(exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=runtime_env(self.port, self.directory / "volume", os.environ),
                cwd=self.directory,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready()
            self.verify_loopback()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while not self.sqs_ready():
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with code {self._proc.returncode} before SQS was ready "
                    f"on {self.endpoint}; log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"SQS not ready on {self.endpoint} after {self.ready_timeout_s:g} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def verify_loopback(self) -> None:
        """Refuse a server reachable from the network: every listener on the port is loopback."""
        listeners = listeners_of(self.port)
        exposed = non_loopback(listeners)
        if exposed:
            addrs = ", ".join(f"{a}:{p}" for a, p in exposed)
            raise LocalStackError(f"LocalStack listens on {addrs}, not only on {HOST}:{self.port}")
        if not listeners:
            raise LocalStackError(f"nothing listens on port {self.port} although SQS answered")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def running_pid(self) -> int | None:
        """The pid in the pid file if that process still is a LocalStack runtime (not a reused pid)."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"localstack.runtime.main" in cmdline else None

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Terminate the whole process group (the runtime forks helpers); True if one was running."""
        pid = self._proc.pid if self._proc is not None else self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if self._wait_gone(pid, timeout_s):
                break
        self._proc = None
        self.pid_path.unlink(missing_ok=True)
        return True

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()  # reap our own child: a zombie still counts in its group
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False


def _port_from_env() -> int:
    raw = os.environ.get("GORAXFAST_LOCALSTACK_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise LocalStackError(f"GORAXFAST_LOCALSTACK_PORT={raw!r}: an integer from 1 to 65535")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goraxfast.cli.localstack", description=__doc__)
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    try:
        stack = LocalStack(port=_port_from_env())
        if args.action == "start":
            was_up = stack.sqs_ready()
            started = time.monotonic()
            stack.start()
            how = "already running" if was_up else f"ready in {time.monotonic() - started:.1f} s"
            print(f"LocalStack SQS on {stack.endpoint} ({how}, loopback only)", file=sys.stderr)
            print(f"export AWS_ENDPOINT={stack.endpoint}")
        elif args.action == "stop":
            stopped = stack.stop()
            print("LocalStack stopped" if stopped else "LocalStack was not running (by us)")
        else:
            doc = stack.health() or {}
            services = doc.get("services")
            sqs = services.get("sqs", "?") if isinstance(services, dict) else "not running"
            print(f"endpoint {stack.endpoint}  sqs: {sqs}  version: {doc.get('version', '-')}")
            return EXIT_OK if stack.sqs_ready() else EXIT_FAILED
    except PythonMissingError as exc:
        print(f"goraxfast.cli.localstack: {exc}", file=sys.stderr)
        return EXIT_NO_PYTHON
    except LocalStackError as exc:
        print(f"goraxfast.cli.localstack: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
