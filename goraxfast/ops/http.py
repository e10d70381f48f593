"""The health/metrics HTTP endpoint on plain ``asyncio.start_server``.

Four GET routes, scraped by Prometheus and probed by orchestrators, do not justify a web framework
in the engine's process. The parser is deliberately small and strict: one request per connection
(``Connection: close``), the head bounded in size and in time, so a slow or hostile client costs
one task and a few KiB and can never stall the event loop that also drives SQS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from goraxfast.core.health import HealthStatus
from goraxfast.errors import ConfigError, ConfigProblem
from goraxfast.ops.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_REQUEST_LINE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/1\.[0-9]$")
_HEADER_LINE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~\x80-\xff]*$")

Response = tuple[int, str, bytes, dict[str, str]]


class HealthBindError(ConfigError):
    """The endpoint cannot listen where WORKER_HEALTH_HOST and WORKER_HEALTH_PORT say.

    A configuration mistake (another engine on this host holds the fixed port 8081, an address
    of another machine), so a :class:`~goraxfast.errors.ConfigError`: one problem, naming the
    variable to change, with the operating system's reason.
    """

    def __init__(self, host: str, port: int, error: OSError) -> None:
        self.host = host
        self.port = port
        self.os_error = error
        code = error.errno
        reason = os.strerror(code) if isinstance(code, int) and code > 0 else error.strerror
        where = f"cannot listen on {_host_port(host, port)}: {reason or error}"
        if code in (errno.EADDRINUSE, errno.EACCES):
            fix = (
                "another process holds it (a second engine on this host?): "
                "choose a free port, or 0 for any"
                if code == errno.EADDRINUSE
                else "ports below 1024 need privileges: choose a port from 1024, or 0 for any"
            )
            problem = ConfigProblem("WORKER_HEALTH_PORT", str(port), f"{where}; {fix}")
        else:
            fix = "an address of this machine (127.0.0.1, 0.0.0.0, ::)"
            problem = ConfigProblem("WORKER_HEALTH_HOST", host, f"{where}; {fix}")
        super().__init__([problem])


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class HealthServer:
    """Serves ``/metrics``, ``/health``, ``/health/live`` and ``/health/ready``.

    The callables are evaluated per request, so every answer is as fresh as the engine's state;
    they run on the event loop and must be quick and non-blocking.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics_text: Callable[[], str],
        health: Callable[[], HealthStatus],
        ready: Callable[[], tuple[bool, str]],
        live: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
        read_timeout_s: float = 5.0,
        max_request_bytes: int = 8192,
    ) -> None:
        self.host = host
        self._port = port
        self._metrics_text = metrics_text
        self._health = health
        self._ready = ready
        self._live = live
        self.read_timeout_s = read_timeout_s
        self.max_request_bytes = max_request_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()
        self._routes: dict[str, Callable[[], Response]] = {
            "/metrics": self._get_metrics,
            "/health": self._get_health,
            "/health/live": self._get_live,
            "/health/ready": self._get_ready,
        }

    @property
    def port(self) -> int:
        """The bound port (the OS's choice when constructed with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.host, self.port)}"

    async def start(self) -> None:
        """Listen; raises :class:`HealthBindError` (a ConfigError) when the address cannot be
        had, never a bare OSError."""
        if self._server is None:
            try:
                self._server = await asyncio.start_server(
                    self._serve, self.host, self._port, limit=self.max_request_bytes
                )
            except (OSError, socket.gaierror) as exc:
                raise HealthBindError(self.host, self._port, exc) from exc
            log.info("health/metrics endpoint on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and end open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    method, path = await self._read_head(reader)
                status, ctype, body, extra = self._respond(method, path)
            except _BadRequest as exc:
                method, (status, ctype, body, extra) = "GET", _plain(exc.status, str(exc))
            except TimeoutError:
                method, (status, ctype, body, extra) = "GET", _plain(408, "request head too slow")
            except (ConnectionError, asyncio.IncompleteReadError):
                return  # the client went away before finishing its request
            await self._write(
                writer, status, ctype, b"" if method == "HEAD" else body, len(body), extra
            )
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        """The request line and headers (bodies are never needed: GET and HEAD only)."""
        lines: list[str] = []
        size = 0
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _BadRequest(
                    431, f"request head over {self.max_request_bytes} bytes"
                ) from None
            size += len(raw)
            if size > self.max_request_bytes:
                raise _BadRequest(431, f"request head over {self.max_request_bytes} bytes")
            line = raw.rstrip(b"\r\n").decode("latin-1")
            if not line:
                if not lines:
                    continue  # RFC 9112 §2.2: ignore empty lines before the request line
                break
            lines.append(line)
        match = _REQUEST_LINE.match(lines[0])
        if match is None:
            raise _BadRequest(400, f"malformed request line {lines[0][:100]!r}")
        for header in lines[1:]:
            if not _HEADER_LINE.match(header):
                raise _BadRequest(400, f"malformed header line {header[:100]!r}")
        method, target = match.groups()
        path = urlsplit(target).path if target.startswith(("http://", "https://")) else target
        return method, path.partition("?")[0]

    def _respond(self, method: str, path: str) -> Response:
        route = self._routes.get(path)
        if route is None:
            return _plain(404, f"no route {path[:100]!r}; try /metrics, /health")
        if method not in ("GET", "HEAD"):
            status, ctype, body, _ = _plain(405, f"{method} not allowed; use GET or HEAD")
            return status, ctype, body, {"Allow": "GET, HEAD"}
        try:
            return route()
        except Exception as exc:
            log.exception("health endpoint %s failed", path)
            return _plain(500, f"{type(exc).__name__}: {exc}")

    def _get_metrics(self) -> Response:
        return 200, METRICS_CONTENT_TYPE, self._metrics_text().encode(), {}

    def _get_health(self) -> Response:
        status = self._health()
        body = json.dumps(status.to_dict()).encode()
        return (200 if status.healthy else 503), _JSON, body, {}

    def _get_live(self) -> Response:
        alive, reason = self._live()
        return _plain(200 if alive else 503, reason or ("ok" if alive else "not alive"))

    def _get_ready(self) -> Response:
        ready, reason = self._ready()
        return _plain(200 if ready else 503, reason or ("ready" if ready else "not ready"))

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        ctype: str,
        body: bytes,
        length: int,
        extra: dict[str, str],
    ) -> None:
        headers = {
            "Content-Type": ctype,
            "Content-Length": str(length),
            "Cache-Control": "no-store",
            "Connection": "close",
            **extra,
        }
        head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(self.read_timeout_s):
                await writer.drain()


def _plain(status: int, text: str) -> Response:
    return status, _TEXT, (text + "\n").encode(), {}
