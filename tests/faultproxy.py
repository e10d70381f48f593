"""A fault-injecting HTTP/1.1 proxy on loopback, between an SQS client and a real SQS server.

Usage (sync, so a pytest fixture or an async test can hold it)::

    with FaultProxy(sqs_endpoint) as proxy:
        config = config.with_(aws_endpoint=proxy.endpoint)
        outage = proxy.add(Rule.error("DeleteMessageBatch", 500, "InternalError"))
        ...
        proxy.remove(outage)                       # the outage ends
        assert proxy.count("ReceiveMessage", "forward") == ...

It runs its own asyncio loop in its own thread. Each client connection is served by one task:
requests are read in order (keep-alive and pipelining both work), each is classified by its SQS
operation (``X-Amz-Target: AmazonSQS.<Op>`` for the JSON protocol, ``Action=<Op>`` for the query
protocol), then the rules decide what happens to it:

- rules are tried in the order they were added; a ``delay`` rule adds its delay and the search
  goes on, the first other matching rule decides: ``drop_response`` (forward, let it take effect,
  then close the client connection without answering), ``error`` (answer an AWS error without
  forwarding), ``reset`` (abort the connection before forwarding: nothing happened),
  ``blackhole`` (hold the request, unanswered and not forwarded, until the rule is removed; then
  it is forwarded, unless the client has gone by then);
- no deciding rule: the request is forwarded and the answer relayed.

Forwarding keeps the request's Host header as the client wrote it (the proxy's address), so a
SigV4 signature stays valid for any server that checks it. moto does not check signatures (it
accepts a request signed for another host, verified here) and builds the queue URLs it returns
(CreateQueue, GetQueueUrl) from the Host header, so those point at the proxy and keep later calls
going through it; queue URLs taken from moto directly work too, as moto finds a queue by the last
part of the URL's path. moto answers every request with ``Connection: close``; the proxy keeps its
client connections alive anyway and opens an upstream connection when the previous one was
closed.

Counts: :meth:`FaultProxy.count` gives requests per operation and actions per operation. A
request counts once in ``count(op)``; its actions are events (``delay`` and a released
``blackhole`` also count the ``forward`` that follows), so action counts do not add up to the
request count.

Bounds: at most ``max_connections`` client connections (more are refused by closing them), heads
of at most 64 KiB, bodies of at most ``max_body_bytes``, an upstream exchange of at most
``upstream_timeout_s``, idle client connections closed after ``idle_timeout_s``. On exit every
connection is closed and the thread joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

__all__ = ["FORWARD", "UNKNOWN", "Event", "FaultProxy", "Rule"]

Action = Literal["drop_response", "error", "reset", "delay", "blackhole"]
#: The action counted for a request relayed to the server and its answer back.
FORWARD = "forward"
#: The action counted when the server could not be reached (the client gets a 502).
UPSTREAM_ERROR = "upstream_error"
#: The operation of a request that names none (not SQS: moto's own API, say).
UNKNOWN = "-"

MAX_HEAD_BYTES = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"expect",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


#: The operations a rule matches: one name, several, or ``None`` for any.
Ops = str | Iterable[str] | None


@dataclass(eq=False)
class Rule:
    """What to do with the requests it matches. Build one with the class methods.

    ``operations``: the SQS operations it matches (``None``: any). ``times``: only the first N
    matching requests (``None``: all). ``probability``: the fraction of matching requests it
    takes, drawn from its own ``random.Random(seed)``, so a run is reproducible.
    """

    action: Action
    operations: frozenset[str] | None = None
    times: int | None = None
    probability: float = 1.0
    seed: int = 0
    status: int = 500
    code: str = "InternalError"
    message: str = ""
    delay_ms: float = 0.0
    delay_max_ms: float | None = None
    _applied: int = field(default=0, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times}")
        if self.delay_ms < 0 or (
            self.delay_max_ms is not None and self.delay_max_ms < self.delay_ms
        ):
            raise ValueError(f"bad delay: {self.delay_ms} .. {self.delay_max_ms} ms")
        self._rng = random.Random(self.seed)

    # -- constructors (each also takes ``times``, ``probability`` and ``seed``) --------------

    @classmethod
    def drop_response(
        cls,
        operation: Ops = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> Rule:
        """Forward (the call takes effect), then close the client connection unanswered."""
        return cls("drop_response", _ops(operation), times, probability, seed)

    @classmethod
    def error(
        cls,
        operation: Ops = None,
        status: int = 500,
        code: str = "InternalError",
        message: str = "",
        *,
        times: int | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> Rule:
        """Answer ``status`` with an AWS error body of ``code``, without forwarding.

        A query-protocol code (``AWS.SimpleQueueService.NonExistentQueue``) is sent as SQS sends
        it: the JSON ``__type`` its JSON name and the code in ``x-amzn-query-error``, which is
        what botocore reports as the error code.
        """
        return cls(
            "error",
            _ops(operation),
            times,
            probability,
            seed,
            status=status,
            code=code,
            message=message,
        )

    @classmethod
    def reset(
        cls,
        operation: Ops = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> Rule:
        """Abort the client connection (RST) before forwarding: the call never happened."""
        return cls("reset", _ops(operation), times, probability, seed)

    @classmethod
    def delay(
        cls,
        ms: float,
        operation: Ops = None,
        max_ms: float | None = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> Rule:
        """Wait ``ms`` (uniform in ``[ms, max_ms]`` when given) before the request goes on."""
        return cls(
            "delay", _ops(operation), times, probability, seed, delay_ms=ms, delay_max_ms=max_ms
        )

    @classmethod
    def blackhole(
        cls,
        operation: Ops = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> Rule:
        """Hold matching requests unanswered (and unforwarded) until this rule is removed."""
        return cls("blackhole", _ops(operation), times, probability, seed)

    # -- state ------------------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """How many requests this rule has taken so far."""
        return self._applied

    def _take(self, operation: str) -> bool:
        """Whether this rule takes this request (called under the proxy's lock)."""
        if self.operations is not None and operation not in self.operations:
            return False
        if self.times is not None and self._applied >= self.times:
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self._applied += 1
        return True

    def _delay_s(self) -> float:
        if self.delay_max_ms is None:
            return self.delay_ms / 1000.0
        return self._rng.uniform(self.delay_ms, self.delay_max_ms) / 1000.0


def _ops(operation: Ops) -> frozenset[str] | None:
    if operation is None:
        return None
    if isinstance(operation, str):
        return frozenset({operation})
    return frozenset(operation)


@dataclass(frozen=True, slots=True)
class Event:
    """One action taken, in order (``FaultProxy.events``)."""

    seq: int
    at: float  # time.monotonic()
    operation: str
    action: str


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        conn = (self.header(b"connection") or b"").lower()
        if self.version == "HTTP/1.0":
            return b"keep-alive" in conn
        return b"close" not in conn

    @property
    def query_protocol(self) -> bool:
        return self.header(b"x-amz-target") is None


def operation_of(req: _Request) -> str:
    """The SQS operation a request calls: its ``X-Amz-Target``, else its ``Action`` field."""
    target = req.header(b"x-amz-target")
    if target is not None:
        return target.decode("latin-1").rsplit(".", 1)[-1]
    fields = parse_qs(urlsplit(req.target).query)
    ctype = (req.header(b"content-type") or b"").lower()
    if b"application/x-www-form-urlencoded" in ctype:
        fields.update(parse_qs(req.body.decode("latin-1")))
    actions = fields.get("Action")
    return actions[0] if actions else UNKNOWN


class _BadRequest(Exception):
    pass


class _Inbound(asyncio.Protocol):
    """One client connection: a byte buffer the serving task reads requests from."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self.gone = False  # the client closed its end (or the connection was lost)
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._proxy._admit(self):
            transport.abort()
            return
        self.task = asyncio.get_running_loop().create_task(self._proxy._serve(self))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self._proxy.max_body_bytes + MAX_HEAD_BYTES:
            self.abort()  # more than one request may ever be: not a client we serve
        self._wake()

    def eof_received(self) -> bool:
        self.gone = True
        self._wake()
        self._proxy._notify()
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._wake()
        self._proxy._forget(self)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _more(self, timeout_s: float) -> None:
        if self.gone:
            raise EOFError
        self._waiter = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout_s):
            await self._waiter

    async def read_until(self, sep: bytes, limit: int, timeout_s: float) -> bytes:
        while True:
            i = self._buf.find(sep)
            if i >= 0:
                out = bytes(self._buf[: i + len(sep)])
                del self._buf[: i + len(sep)]
                return out
            if len(self._buf) > limit:
                raise _BadRequest("head too long")
            await self._more(timeout_s)

    async def read_exactly(self, n: int, timeout_s: float) -> bytes:
        while len(self._buf) < n:
            await self._more(timeout_s)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Upstream:
    """The upstream connection of one client connection, reopened when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, req: _Request) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """Status line, headers and body of the server's answer to ``req``."""
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, limit=MAX_HEAD_BYTES
            )
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [f"{req.method} {req.target} HTTP/1.1\r\n".encode("latin-1")]
        lines += [k + b": " + v + b"\r\n" for k, v in req.headers if k.lower() not in _HOP_BY_HOP]
        lines.append(b"Content-Length: %d\r\n\r\n" % len(req.body))
        writer.write(b"".join(lines) + req.body)
        await writer.drain()
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, headers = _parse_head(head)
            parts = status_line.split(b" ", 2)
            status = int(parts[1])
            if not 100 <= status < 200:
                break
        values = {k.lower(): v for k, v in headers}
        reusable = (
            parts[0] == b"HTTP/1.1" and b"close" not in values.get(b"connection", b"").lower()
        )
        if req.method == "HEAD" or status in (204, 304):
            body = b""
        elif b"chunked" in values.get(b"transfer-encoding", b"").lower():
            body = await _read_chunked_stream(reader)
        elif b"content-length" in values:
            body = await reader.readexactly(int(values[b"content-length"]))
        else:
            body = await reader.read()  # delimited by the end of the connection
            reusable = False
        if not reusable:
            self.close()
        return status_line, headers, body

    def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()


def _parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


async def _read_chunked_stream(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


class FaultProxy:
    """A loopback HTTP/1.1 proxy to ``upstream`` (``http://host:port``) applying :class:`Rule` s."""

    def __init__(
        self,
        upstream: str,
        *,
        max_connections: int = 256,
        max_body_bytes: int = 16 << 20,
        upstream_timeout_s: float = 60.0,
        idle_timeout_s: float = 120.0,
        log_size: int = 100_000,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream
        self._up_host, self._up_port = parts.hostname, parts.port or 80
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout_s = upstream_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.port = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._requests: Counter[str] = Counter()
        self._actions: Counter[tuple[str, str]] = Counter()
        self._events: deque[Event] = deque(maxlen=log_size)
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._conns: set[_Inbound] = set()
        self._peak_connections = 0
        self._closing = False
        #: Exceptions that ended a connection's task (a bug here, not an injected fault).
        self.errors: list[BaseException] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL to give a client as its endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        if self._thread is not None or self._ready.is_set():
            raise RuntimeError("a FaultProxy starts once")
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("FaultProxy did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError("FaultProxy could not start") from self._start_error
        return self

    def stop(self) -> None:
        """Close every connection (held requests included) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopping = self._stopping
        if stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(10.0)
        if thread.is_alive():
            raise RuntimeError("FaultProxy's thread did not stop within 10 s")
        self._thread = self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rules --------------------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        """Append ``rule`` (tried after the ones already there); returns it, for ``remove``."""
        with self._lock:
            self._rules.append(rule)
        self._notify_threadsafe()
        return rule

    def remove(self, rule: Rule) -> None:
        """Take ``rule`` out; requests it holds (``blackhole``) go on. Absent: nothing happens."""
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]
        self._notify_threadsafe()

    def clear(self) -> None:
        with self._lock:
            self._rules = []
        self._notify_threadsafe()

    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @contextlib.contextmanager
    def applying(self, *rules: Rule) -> Iterator[tuple[Rule, ...]]:
        """The rules apply inside the ``with`` block only: an outage with a start and an end."""
        for rule in rules:
            self.add(rule)
        try:
            yield rules
        finally:
            for rule in rules:
                self.remove(rule)

    # -- observation --------------------------------------------------------------------------

    def count(self, operation: str | None = None, action: str | None = None) -> int:
        """Requests of ``operation`` (any: ``None``) or, with ``action``, times it was taken."""
        with self._lock:
            if action is None:
                if operation is None:
                    return sum(self._requests.values())
                return self._requests[operation]
            if operation is None:
                return sum(n for (_, a), n in self._actions.items() if a == action)
            return self._actions[operation, action]

    def counts(self) -> dict[tuple[str, str], int]:
        """Every ``(operation, action)`` count so far."""
        with self._lock:
            return dict(self._actions)

    def operations(self) -> dict[str, int]:
        """Requests per operation so far."""
        with self._lock:
            return dict(self._requests)

    def events(self) -> list[Event]:
        """The actions taken, oldest first (the last ``log_size``)."""
        with self._lock:
            return list(self._events)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def peak_connections(self) -> int:
        """The most client connections open at once so far."""
        with self._lock:
            return self._peak_connections

    def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = ""
    ) -> None:
        """Block until ``predicate()`` holds: re-checked whenever the proxy counts something or a
        connection opens or closes, so a predicate on anything else needs a poll of its own."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
                self._cond.wait(left)

    def wait_count(
        self,
        operation: str | None,
        action: str | None = None,
        at_least: int = 1,
        timeout_s: float = 30.0,
    ) -> int:
        """Block until ``count(operation, action) >= at_least``; returns the count."""
        self.wait_for(
            lambda: self.count(operation, action) >= at_least,
            timeout_s,
            f"{at_least} x {operation or 'any'} {action or 'request'}",
        )
        return self.count(operation, action)

    # -- the loop's side ----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # reported to start() if it failed before being ready
            self._start_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        server = await loop.create_server(lambda: _Inbound(self), "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._closing = True  # from now on every new connection is refused
            server.close()
            await self._close_everything()
            await server.wait_closed()

    async def _close_everything(self) -> None:
        """Abort every connection and end every task of this loop (bounded: a connection
        accepted just before the close can still reach ``connection_made`` once)."""
        current = asyncio.current_task()
        for _ in range(10):
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                conn.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            if not conns and not tasks:
                return
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # let the aborted transports call connection_lost

    def _admit(self, conn: _Inbound) -> bool:
        with self._lock:
            if self._closing or len(self._conns) >= self.max_connections:
                return False
            self._conns.add(conn)
            self._peak_connections = max(self._peak_connections, len(self._conns))
            self._cond.notify_all()
            return True

    def _forget(self, conn: _Inbound) -> None:
        with self._cond:
            self._conns.discard(conn)
            self._cond.notify_all()
        self._notify()

    def _notify(self) -> None:
        """On the loop: wake every held request to look at the rules (and its client) again."""
        changed = self._changed
        if changed is not None:
            self._changed = asyncio.Event()
            changed.set()

    def _notify_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is held
                loop.call_soon_threadsafe(self._notify)

    def _record(self, operation: str, action: str | None) -> None:
        with self._cond:
            if action is None:
                self._requests[operation] += 1
            else:
                self._actions[operation, action] += 1
                self._events.append(Event(next(self._seq), time.monotonic(), operation, action))
            self._cond.notify_all()

    def _decide(self, operation: str) -> tuple[float, Rule | None]:
        """The total delay and the deciding rule (``None``: forward) for one request."""
        delay_s = 0.0
        with self._lock:
            for rule in self._rules:
                if not rule._take(operation):
                    continue
                if rule.action == "delay":
                    delay_s += rule._delay_s()
                    self._record(operation, "delay")
                    continue
                return delay_s, rule
        return delay_s, None

    async def _serve(self, conn: _Inbound) -> None:
        upstream = _Upstream(self._up_host, self._up_port)
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except (EOFError, TimeoutError):
                    return
                except (_BadRequest, ValueError):
                    conn.write(_plain(400, b"bad request"))
                    return
                if not await self._handle(conn, upstream, req):
                    return
        except Exception as exc:  # a bug of the proxy's own: kept for the tests to see
            with self._lock:
                self.errors.append(exc)
        finally:
            upstream.close()
            conn.close()

    async def _read_request(self, conn: _Inbound) -> _Request:
        head = await conn.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, self.idle_timeout_s)
        line, headers = _parse_head(head)
        method, target, version = line.decode("latin-1").split(" ", 2)
        req = _Request(method, target, version, headers, b"")
        if (req.header(b"expect") or b"").lower() == b"100-continue":
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        timeout = self.upstream_timeout_s
        if b"chunked" in (req.header(b"transfer-encoding") or b"").lower():
            chunks: list[bytes] = []
            while True:
                size_line = await conn.read_until(b"\r\n", MAX_HEAD_BYTES, timeout)
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await conn.read_until(b"\r\n", MAX_HEAD_BYTES, timeout) != b"\r\n":
                        pass
                    break
                chunks.append(await conn.read_exactly(size, timeout))
                await conn.read_exactly(2, timeout)
            req.body = b"".join(chunks)
        else:
            length = int(req.header(b"content-length") or b"0")
            if length < 0 or length > self.max_body_bytes:
                raise _BadRequest(f"body of {length} bytes")
            req.body = await conn.read_exactly(length, timeout)
        return req

    async def _handle(self, conn: _Inbound, upstream: _Upstream, req: _Request) -> bool:
        """Serve one request; whether the connection stays open for the next."""
        op = operation_of(req)
        self._record(op, None)
        delay_s, rule = self._decide(op)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        action = rule.action if rule is not None else None
        if rule is not None and action != "drop_response":
            self._record(op, rule.action)
        if rule is not None and action == "reset":
            conn.abort()
            return False
        if rule is not None and action == "error":
            conn.write(_error_response(rule, req, op))
            return req.keep_alive
        if rule is not None and action == "blackhole" and not await self._hold(conn, rule):
            return False
        try:
            async with asyncio.timeout(self.upstream_timeout_s):
                status_line, headers, body = await upstream.exchange(req)
        except Exception as exc:  # unreachable, timed out, or not HTTP: the client gets a 502
            upstream.close()
            self._record(op, UPSTREAM_ERROR)
            conn.write(_plain(502, f"faultproxy: upstream failed: {exc!r}".encode()))
            return req.keep_alive
        if rule is not None and action == "drop_response":
            self._record(op, "drop_response")  # counted once the call has taken effect
            conn.close()
            return False
        self._record(op, FORWARD)
        keep = req.keep_alive
        out = [status_line.replace(b"HTTP/1.0", b"HTTP/1.1", 1) + b"\r\n"]
        out += [k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in _HOP_BY_HOP]
        out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
        conn.write(b"".join(out) + body)
        return keep

    async def _hold(self, conn: _Inbound, rule: Rule) -> bool:
        """Hold a blackholed request until its rule is gone (True) or its client is (False)."""
        assert self._stopping is not None
        while True:
            changed = self._changed
            assert changed is not None
            if conn.gone or self._stopping.is_set():
                return False
            with self._lock:
                if all(r is not rule for r in self._rules):
                    return True
            await changed.wait()


def _plain(status: int, text: bytes) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n"
    ).encode() + text


def _error_response(rule: Rule, req: _Request, op: str) -> bytes:
    """An AWS error as SQS writes it: JSON for the JSON protocol, XML for the query protocol."""
    fault = "Sender" if rule.status < 500 else "Receiver"
    request_id = f"faultproxy-{op}-{rule.applied}"
    message = rule.message or f"injected by faultproxy: {rule.code}"
    headers = [f"x-amzn-RequestId: {request_id}"]
    if req.query_protocol:
        body = (
            f"<ErrorResponse><Error><Type>{fault}</Type><Code>{escape(rule.code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append("Content-Type: text/xml")
    else:
        json_code = rule.code
        if rule.code.startswith("AWS.SimpleQueueService."):
            json_code = _JSON_NAMES.get(rule.code, rule.code.rsplit(".", 1)[-1])
            headers.append(f"x-amzn-query-error: {rule.code};{fault}")
        body = json.dumps({"__type": f"com.amazonaws.sqs#{json_code}", "message": message}).encode()
        headers.append("Content-Type: application/x-amz-json-1.0")
    connection = "keep-alive" if req.keep_alive else "close"
    head = f"HTTP/1.1 {rule.status} {http.HTTPStatus(rule.status).phrase}\r\n"
    head += "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    return head.encode() + body


#: SQS's JSON-protocol names of the query-protocol codes that differ by more than the prefix.
_JSON_NAMES = {
    "AWS.SimpleQueueService.NonExistentQueue": "QueueDoesNotExist",
    "AWS.SimpleQueueService.QueueDeletedRecently": "QueueDeletedRecently",
}
