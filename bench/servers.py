"""The SQS servers a bench runs against, started and stopped by the bench itself.

LocalStack is the default because users ask for figures against it, but it tops out near
1-2 k msg/s on two cores (see the README's Benchmarks), so the bench also runs fauxqs, a Node server
that spends ~0.4-1.3 ms per request and leaves the client as the bottleneck. Every server
reports the process ids whose CPU the report shows, so a reader sees who was the limit.

Loopback only: fauxqs's own CLI binds 0.0.0.0, so it is started from a few lines of JS that
call ``buildApp().listen({host: "127.0.0.1"})``, and every started server's listeners are
checked through /proc before use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goraxfast.cli.localstack import LocalStack, listeners_of, non_loopback, state_dir
from goraxfast.cli.moto_server import LOOPBACK, MotoServer, free_port, wait_http_ready

BENCH_DIR = Path(__file__).resolve().parent
FAUXQS_VERSION = "1.9.2"  # the version the README's figures were measured with
FAUXQS_START_JS = """\
import { buildApp } from "fauxqs";
const app = buildApp({ logger: false });
await app.listen({ host: "127.0.0.1", port: Number(process.argv[2]) });
console.log("listening");
"""


class ServerError(RuntimeError):
    """A bench server could not be installed or started; the message says what to do."""


def _check_loopback(port: int, what: str) -> None:
    exposed = non_loopback(listeners_of(port))
    if exposed:
        raise ServerError(f"{what} listens on {exposed}, not only on loopback: refusing to use it")


def _stop_group(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """Stop a server we started in its own session: the whole group, TERM then KILL."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Fauxqs:
    """fauxqs from npm in ``bench/.fauxqs`` (git-ignored), on a free loopback port."""

    directory: Path = BENCH_DIR / ".fauxqs"
    port: int = 0
    name: str = "fauxqs"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ensure_installed(self) -> None:
        stamp = self.directory / ".installed"
        if stamp.exists() and stamp.read_text() == FAUXQS_VERSION:
            return
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise ServerError("fauxqs needs Node.js and npm on PATH (Node 20 works)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "package.json").write_text('{"private": true, "type": "module"}\n')
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"fauxqs@{FAUXQS_VERSION}",
            ],
            cwd=self.directory,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ServerError(f"npm install fauxqs@{FAUXQS_VERSION} failed:\n{done.stderr[-2000:]}")
        stamp.write_text(FAUXQS_VERSION)

    def start(self) -> Fauxqs:
        self.ensure_installed()
        script = self.directory / "start.mjs"
        script.write_text(FAUXQS_START_JS)
        if self.port == 0:
            self.port = free_port()
        self._proc = subprocess.Popen(
            ["node", str(script), str(self.port)],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_http_ready(f"{self.endpoint}/", 30.0, self._proc)
            _check_loopback(self.port, "fauxqs")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop_group(self._proc)
        self._proc = None

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None else []

    def describe(self) -> dict[str, Any]:
        return {"server": "fauxqs", "version": FAUXQS_VERSION, "endpoint": self.endpoint}


@dataclass
class LocalStackServer:
    """LocalStack through :mod:`goraxfast.cli.localstack`, on a port of its own.

    Its own port and state directory keep the bench away from a LocalStack someone else runs
    (``make localstack``); the Python 3.13 venv is shared with that one (installed once, ~80 s).
    """

    port: int = 0
    name: str = "localstack"
    _stack: LocalStack | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> LocalStackServer:
        shared = LocalStack(directory=state_dir())
        shared.ensure_installed()
        run_dir = BENCH_DIR / ".localstack-run"
        run_dir.mkdir(exist_ok=True)
        venv_link = run_dir / "venv"
        if not venv_link.exists():
            venv_link.symlink_to(shared.directory.resolve() / "venv")
        if self.port == 0:
            self.port = free_port()
        self._stack = LocalStack(port=self.port, directory=run_dir).start()
        return self

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None

    @property
    def log_path(self) -> Path:
        """LocalStack's own log (the suite keeps a copy next to the results)."""
        return BENCH_DIR / ".localstack-run" / "localstack.log"

    def pids(self) -> list[int]:
        if self._stack is None:
            return []
        pid = self._stack.running_pid()
        return [pid] if pid else []

    def describe(self) -> dict[str, Any]:
        return {
            "server": "LocalStack",
            "version": "localstack-core 2026.3.0 (Python 3.13)",
            "gateway": "hypercorn (loopback-only; ~35-40 % slower than twisted, SERVERS.md)",
            "endpoint": self.endpoint,
        }


@dataclass
class Moto:
    """moto's server: slow with depth, for the smoke test only."""

    name: str = "moto"
    _server: MotoServer | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return self._server.endpoint if self._server else ""

    def start(self) -> Moto:
        self._server = MotoServer().start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def pids(self) -> list[int]:
        proc = self._server._proc if self._server is not None else None
        return [proc.pid] if proc is not None else []

    def describe(self) -> dict[str, Any]:
        return {"server": "moto", "endpoint": self.endpoint}


@dataclass
class External:
    """Any endpoint given with ``--endpoint`` (AWS included): its CPU cannot be seen."""

    endpoint: str
    name: str = "endpoint"
    pid: int = 0

    def start(self) -> External:
        return self

    def stop(self) -> None:
        pass

    def pids(self) -> list[int]:
        return [self.pid] if self.pid else []

    def describe(self) -> dict[str, Any]:
        return {"server": "external", "endpoint": self.endpoint, "server_pid": self.pid or None}


BenchServer = Fauxqs | LocalStackServer | Moto | External


def make_server(name: str) -> BenchServer:
    servers: dict[str, type[Fauxqs] | type[LocalStackServer] | type[Moto]] = {
        "fauxqs": Fauxqs,
        "localstack": LocalStackServer,
        "moto": Moto,
    }
    if name not in servers:
        raise ServerError(f"unknown server {name!r}: one of {', '.join(servers)}")
    return servers[name]()


def start_with_timing(server: BenchServer) -> float:
    started = time.monotonic()
    server.start()
    return time.monotonic() - started


if __name__ == "__main__":  # python -m bench.servers fauxqs: start one and wait (debugging)
    srv = make_server(sys.argv[1] if len(sys.argv) > 1 else "fauxqs")
    srv.start()
    print(srv.endpoint, flush=True)
    try:
        signal.pause()
    finally:
        srv.stop()
