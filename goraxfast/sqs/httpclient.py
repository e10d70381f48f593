"""A small HTTP/1.1 client for one origin: keep-alive connections on the event loop's transports.

Why not aiohttp: one keep-alive POST to a canned local server costs ~105-120 us of client CPU
through ``aiohttp.ClientSession`` and ~20 us through this pool (``bench/test_dataplane_bench.py``,
``test_http_layer_cpu_per_round_of_posts``); a prototype feeding h11 (pure Python) from the same
kind of ``asyncio.Protocol`` cost ~90-100 us. The parser is therefore httptools (llhttp, in C,
as uvicorn uses) and the rest is kept thin: one ``transport.write`` per request, one future per
response, one timer for all deadlines.

Rules this module keeps (each has a test in ``tests/test_fasthttp.py``):

- Bodies: ``Content-Length`` and chunked are parsed by llhttp; a body delimited by the end of the
  connection is completed when the connection closes.
- Keep-alive: a connection goes back to a LIFO idle list after a whole response, unless the server
  said ``Connection: close``. Idle connections older than ``idle_timeout_s`` are dropped, so we
  rarely race a server closing its end. At most ``max_connections`` are open at once; more callers
  wait for one to be released.
- Stale connections: a request on a reused connection that the server had already closed fails
  before any response byte. It is sent once more on a new connection when that is safe: always
  when nothing was written, and otherwise only if the caller passed ``replay_safe=True`` (the
  caller knows whether its request may be processed twice). No other failure is retried here;
  retrying with backoff is the caller's policy.
- Deadlines: ``timeout_s`` bounds the whole exchange (write to last body byte); a long poll passes
  its wait plus a margin. A timed-out or cancelled exchange closes its connection, whose answer
  may still arrive.
- Errors are :class:`HTTPError` subclasses saying whether the request may have reached the server
  (``sent``), which is what decides if a retry could duplicate a side effect.
"""

from __future__ import annotations

import asyncio
import math
import ssl as ssl_module
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

DEFAULT_PORTS = {"http": 80, "https": 443}


class Response:
    """Status, headers and body of one exchange.

    Headers arrive as the raw bytes of the response's head and become a dict only when asked
    for: a successful SQS call never reads them. Taking each header from llhttp through a Python
    callback cost ~0.3 us per header, ~2 us per call (six or seven headers from SQS servers).
    """

    __slots__ = ("_head", "_headers", "body", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        head: bytes = b"",
    ) -> None:
        self.status = status
        self.body = body
        self._headers = headers
        self._head = head

    @property
    def headers(self) -> dict[str, str]:
        """Lowercase names; a repeated header's values joined with ", " (RFC 9110 §5.3)."""
        if self._headers is None:
            self._headers = join_headers(head_fields(self._head))
        return self._headers

    def __repr__(self) -> str:
        return f"Response(status={self.status}, headers={self.headers!r}, body={self.body!r})"


def head_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of the final response in ``raw`` (bytes from its status line on).

    llhttp has already validated these bytes; this only splits them again when somebody asks.
    Interim (1xx) heads are skipped, obsolete line folding is joined with a space, and a head
    cut short (the connection closed mid-header) gives the fields complete so far.
    """
    pos = 0
    while True:
        end = raw.find(b"\r\n\r\n", pos)
        block = raw[pos:] if end < 0 else raw[pos:end]
        lines = block.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if end >= 0 and len(status) > 1 and status[1][:1] == b"1":
            pos = end + 4  # an interim answer has no body: the next head follows at once
            continue
        fields: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip())
            elif b":" in line:
                name, _, value = line.partition(b":")
                fields.append((name.strip(), value.strip()))
        return fields


def join_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = out.get(key)
        out[key] = text if old is None else f"{old}, {text}"
    return out


class HTTPError(Exception):
    """The exchange failed without a whole response. ``sent``: the server may have the request."""

    sent = True


class ConnectError(HTTPError):
    """No connection could be made (refused, DNS, TLS handshake, connect timeout): nothing sent."""

    sent = False


class ConnectionLost(HTTPError):
    """The connection closed before the whole response arrived."""

    def __init__(self, message: str, *, sent: bool, response_started: bool) -> None:
        super().__init__(message)
        self.sent = sent
        self.response_started = response_started


class ResponseTimeout(HTTPError):
    """No whole response within the exchange's deadline."""


class ProtocolError(HTTPError):
    """The server's bytes are not a valid HTTP/1.1 response (or the body is over the limit)."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and its response parser; one exchange at a time."""

    def __init__(self, max_body_bytes: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_body_bytes = max_body_bytes
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._head: list[bytes] = []  # the chunks read until the head was complete
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._started = False  # any byte of the current response seen
        self._headers_done = False
        self._keep_alive = True
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: this connection's framing can't be trusted
            return
        self._started = True
        if not self._headers_done:
            self._head.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed():
            self.on_message_complete()  # the body ran to the end of the connection
            return
        why = f": {exc}" if exc else ""
        self._fail(
            ConnectionLost(
                f"connection closed before the whole response{why}",
                sent=True,
                response_started=self._started,
            )
        )

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            self._fail(ProtocolError(f"response body over {self._max_body_bytes} bytes"))
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._body, self._body_bytes = [], 0
            self._headers_done = False  # its head stays in _head: head_fields() skips it
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            head = self._head
            waiter.set_result(
                Response(
                    status,
                    None,
                    b"".join(self._body),
                    head=head[0] if len(head) == 1 else b"".join(head),
                )
            )
        self._head, self._body = [], []  # an idle connection holds no old response
        if not self._keep_alive:
            self.close()

    # -- used by the pool ------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive

    def start(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        """Write one request; the future gets its response (or an HTTPError)."""
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionLost("connection already closed", sent=False, response_started=False)
        self._head, self._body, self._body_bytes = [], [], 0
        self._started = self._headers_done = False
        waiter = self._waiter = loop.create_future()
        transport.write(data)
        return waiter

    def expire(self) -> None:
        """The deadline passed: fail the exchange and drop the connection."""
        self._fail(ResponseTimeout("no complete response before the deadline"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _framed(self) -> bool:
        names = {name.lower() for name, _ in head_fields(b"".join(self._head))}
        return b"content-length" in names or b"transfer-encoding" in names

    def _fail(self, exc: HTTPError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HTTPPool:
    """Keep-alive connections to one origin (``scheme://host:port``), shared by many tasks."""

    def __init__(
        self,
        origin: str,
        *,
        max_connections: int = 50,
        connect_timeout_s: float = 5.0,
        idle_timeout_s: float = 15.0,
        max_body_bytes: int = 64 << 20,
        ssl_context: ssl_module.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        default = self.port == DEFAULT_PORTS[self.scheme]
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        #: The Host header value (and what SigV4 signs): the port only when it is not the default.
        self.host_header = bracketed if default else f"{bracketed}:{self.port}"
        self._ssl: ssl_module.SSLContext | None = None
        if self.scheme == "https":
            self._ssl = ssl_context or ssl_module.create_default_context()
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._max_body_bytes = max_body_bytes
        self._idle: deque[_Connection] = deque()
        self._open = 0  # connections in use or idle (counted from connect to close)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        # Deadlines of the exchanges in flight, and the one timer that enforces them.
        self._busy: dict[_Connection, float] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float,
        replay_safe: bool = False,
    ) -> Response:
        """One exchange. ``headers`` must not hold Host or Content-Length: the pool sets them.

        Names and values are written as given (no CR/LF check): they come from this package.
        """
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "".join(lines).encode("latin-1") + body
        conn = self._take_idle()
        if conn is not None:  # the common case, without a coroutine to acquire it
            reused = True
        else:
            conn, reused = await self._acquire(fresh=False)
        try:
            return await self._exchange(conn, data, timeout_s)
        except ConnectionLost as exc:
            stale = reused and not exc.response_started
            if not (stale and (replay_safe or not exc.sent)):
                raise
        conn, _ = await self._acquire(fresh=True)
        return await self._exchange(conn, data, timeout_s)

    async def close(self) -> None:
        """Close idle connections; connections in use close when their exchange ends."""
        self._closed = True
        if self._sweep is not None and not self._busy:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, math.inf
        while self._idle:
            self._idle.pop().close()
            self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectError("the pool is closed"))

    async def _exchange(self, conn: _Connection, data: bytes, timeout_s: float) -> Response:
        loop = asyncio.get_running_loop()
        busy = self._busy
        try:
            waiter = conn.start(data, loop)
            deadline = busy[conn] = loop.time() + timeout_s
            if deadline < self._sweep_at:
                self._schedule_sweep(loop, deadline)
            return await waiter
        except BaseException:
            conn.close()  # mid-exchange (timeout, cancellation, error): the answer can't be used
            raise
        finally:
            busy.pop(conn, None)
            self._release(conn)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """One timer for all deadlines, at the earliest: a timer per request cost ~1.5 us."""
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = when
        self._sweep = loop.call_at(when, self._expire_due)

    def _expire_due(self) -> None:
        """Fail the exchanges past their deadline; sleep again until the next deadline."""
        self._sweep, self._sweep_at = None, math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn, deadline in list(self._busy.items()):
            if deadline <= now:
                del self._busy[conn]
                conn.expire()
        if self._busy:
            self._schedule_sweep(loop, min(self._busy.values()))

    def _take_idle(self) -> _Connection | None:
        """The most recently used live idle connection; dead and stale ones are dropped."""
        if not self._idle:
            return None
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and now - conn.idle_since < self.idle_timeout_s:
                return conn
            conn.close()
            self._open -= 1
        return None

    async def _acquire(self, *, fresh: bool) -> tuple[_Connection, bool]:
        """A connection and whether it was reused; waits while ``max_connections`` are busy."""
        while True:
            if self._closed:
                raise ConnectError("the pool is closed")
            conn = self._take_idle()
            if conn is not None:
                if not fresh:
                    return conn, True
                conn.close()  # the caller needs a new connection: make room for it
                self._open -= 1
            if self._open < self.max_connections:
                return await self._connect(), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _connect(self) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_body_bytes),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except BaseException as exc:
            self._open -= 1
            self._wake_one()
            if isinstance(exc, OSError | TimeoutError):
                where = f"{self.scheme}://{self.host_header}"
                raise ConnectError(f"could not connect to {where}: {exc!r}") from exc
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()
            self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
