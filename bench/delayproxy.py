"""A delay proxy for loopback: every HTTP/1.1 request's round trip made ``--delay-ms`` longer.

    python -m bench.delayproxy --upstream http://127.0.0.1:PORT --delay-ms 15 [--port 0]

prints the URL it listens on (``http://127.0.0.1:PORT``) as the first line of stdout, then
serves until SIGTERM or SIGINT, and writes one JSON line of counters to stderr on the way out.
It runs as a process of its own, so its CPU is neither the client's nor the server's, and the
bench reads it from /proc like theirs. It is how the bench puts an SQS server "in a region"
(issue 13: a ReceiveMessage round trip costs ~0.1 ms on loopback, 10-30 ms in AWS).

What it does to a request: the request is read whole (``Content-Length`` or chunked body, as
SQS clients send them; JSON and query protocol alike, the bytes are relayed untouched, so a
SigV4 signature stays valid), forwarded at once on an upstream connection of its own, and the
answer is held for ``delay_ms`` after it came back, then relayed. So every request's round trip
is the server's plus the delay, whatever else is in flight: each request has its own timer
(``loop.call_later``), no request waits behind another's delay, and hundreds of connections
with one request each in flight (what SQS clients do) all see ``upstream + delay``. HTTP/1.1
keeps the answers on one connection in request order: pipelined requests are forwarded
concurrently (each on an upstream connection of its own) and each answer waits for its own
delay and for the answers before it. Where the delay goes (all on the way back, none on the way
in) changes what a client measures only in when a call takes effect on the server: a delete
lands ``delay`` earlier than it would half-way through a real network, which no figure of the
bench depends on.

The delay is never shorter than asked: uvloop's timers count whole milliseconds, so a timer is
armed a millisecond long and re-armed if it still fires early; answers go out ~0.3-1 ms after
they are due (see ``bench/results/`` and the latency report for measured figures).

Lean on purpose (the bench needs ~5,000 requests/s through it on two cores without it being the
limit): protocol callbacks, no streams, no per-request task; the request and the answer are
relayed as the bytes that came in, and a head is parsed only as far as framing needs (length,
chunked, ``Connection``, ``Expect``). Rewritten only when it must be: an upstream that closes
after each answer (moto) or ends a body by closing is answered on a connection the client keeps,
with ``Content-Length``; ``Expect: 100-continue`` is answered here and dropped from the request.
Upstream connections are pooled (idle ones reused, last in first out); one that the server
closed while idle is noticed when a request sent on it gets nothing back, and that request is
sent again on a new connection (once: nothing reached the server).

Standard library only (uvloop if it can be imported): the bench's package is imported by the
peers' environment too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 << 20
#: uvloop's timers have millisecond resolution (libuv's clock is cached in whole ms): arming
#: them this much longer keeps an answer from going out before it is due.
UVLOOP_TIMER_SLACK_S = 0.001
#: How late answers went out, in 0.1 ms bins (the last one: 100 ms or more).
LATE_BINS = 1000
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"content-length", b"transfer-encoding", b"te", b"trailer")
)


class BadMessage(Exception):
    """A request or answer this proxy cannot frame; the connection is closed."""


# --- framing -------------------------------------------------------------------------------


def _header_value(lower_head: bytes, name: bytes) -> bytes | None:
    """The (lowercased, stripped) value of header ``name`` in a lowercased head, or None.

    ``lower_head`` starts with the start line and ends with the last header's CRLF; ``name``
    is lowercase with its colon (``b"content-length:"``).
    """
    i = lower_head.find(b"\r\n" + name)
    if i < 0:
        return None
    i += 2 + len(name)
    return lower_head[i : lower_head.find(b"\r\n", i)].strip()


def chunked_end(buf: bytes, pos: int) -> int | None:
    """Where a chunked body starting at ``pos`` ends (after its trailers), None if incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > MAX_HEAD_BYTES:
                raise BadMessage("chunk size line too long")
            return None
        try:
            size = int(buf[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadMessage(f"bad chunk size {buf[pos:eol][:40]!r}") from exc
        pos = eol + 2
        if size == 0:
            while True:  # trailers, then the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return pos + 2
                pos = eol + 2
        pos += size + 2
        if pos > len(buf):
            return None


def dechunk(body: bytes) -> bytes:
    """The payload of a complete chunked body (trailers dropped)."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        size = int(body[pos:eol].split(b";", 1)[0].strip(), 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2 : eol + 2 + size])
        pos = eol + 4 + size


class Request:
    """One framed request: the bytes to forward and what the answer's framing depends on."""

    __slots__ = ("data", "head_only", "keep_alive")

    def __init__(self, data: bytes, head_only: bool, keep_alive: bool) -> None:
        self.data = data
        self.head_only = head_only  # a HEAD request: its answer has no body
        self.keep_alive = keep_alive


def parse_request(buf: bytes, continued: bool) -> tuple[int, Request | None, bool]:
    """Frame the first request in ``buf``: ``(end, request, wants_continue)``.

    ``end`` is 0 while the request is incomplete; ``wants_continue`` says the client sent
    ``Expect: 100-continue`` and waits for it before its body (``continued``: it was sent).
    """
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise BadMessage("request head too long")
        return 0, None, False
    lower = buf[: head_end + 2].lower()
    line_end = lower.find(b"\r\n")
    start = lower[:line_end]
    method, _, rest = start.partition(b" ")
    version = rest.rpartition(b" ")[2]
    body_start = head_end + 4
    expect = _header_value(lower, b"expect:")
    if (_header_value(lower, b"transfer-encoding:") or b"").endswith(b"chunked"):
        end = chunked_end(buf, body_start)
    else:
        length_text = _header_value(lower, b"content-length:")
        try:
            length = int(length_text) if length_text else 0
        except ValueError as exc:
            raise BadMessage(f"bad Content-Length {length_text!r}") from exc
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadMessage(f"body of {length} bytes")
        end = body_start + length if len(buf) >= body_start + length else None
    if end is None:
        return 0, None, expect == b"100-continue" and not continued
    connection = _header_value(lower, b"connection:") or b""
    if version == b"http/1.0":
        keep_alive = b"keep-alive" in connection
    else:
        keep_alive = b"close" not in connection
    data = buf if end == len(buf) else buf[:end]
    if expect is not None:  # answered here (or never needed): the server must not wait for it
        lines = buf[: head_end + 2].split(b"\r\n")
        kept = [ln for ln in lines if not ln.lower().startswith(b"expect:")]
        data = b"\r\n".join(kept) + buf[head_end + 2 : end]  # kept ends with b"": a CRLF
    return end, Request(data, method == b"head", keep_alive), False


#: ``parse_response``'s ``end`` for an answer whose body ends when the server closes.
UNTIL_CLOSE = -1


def parse_response(buf: bytes, head_only: bool) -> tuple[int, int, bool, bool]:
    """Frame the first final answer in ``buf``: ``(start, end, reusable, rewrite)``.

    ``start`` skips interim (1xx) answers; ``end`` is 0 while incomplete, ``UNTIL_CLOSE`` for a
    body delimited by the end of the connection. ``reusable``: the server keeps the
    connection. ``rewrite``: the answer must be re-framed before the client gets it (the
    server closes, or ends the body by closing).
    """
    start = 0
    while True:
        head_end = buf.find(b"\r\n\r\n", start)
        if head_end < 0:
            if len(buf) - start > MAX_HEAD_BYTES:
                raise BadMessage("answer head too long")
            return start, 0, False, False
        lower = buf[start : head_end + 2].lower()
        line_end = lower.find(b"\r\n")
        parts = lower[:line_end].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError) as exc:
            raise BadMessage(f"bad status line {buf[start:line_end][:60]!r}") from exc
        if 100 <= status < 200 and status != 101:
            start = head_end + 4
            continue
        break
    connection = _header_value(lower, b"connection:") or b""
    if parts[0] == b"http/1.0":
        reusable = b"keep-alive" in connection
    else:
        reusable = b"close" not in connection
    body_start = head_end + 4
    if head_only or status in (204, 304):
        return start, body_start, reusable, not reusable
    if (_header_value(lower, b"transfer-encoding:") or b"").endswith(b"chunked"):
        end = chunked_end(buf, body_start)
        return start, end or 0, reusable, not reusable
    length_text = _header_value(lower, b"content-length:")
    if length_text is None:
        return start, UNTIL_CLOSE, False, True
    try:
        length = int(length_text)
    except ValueError as exc:
        raise BadMessage(f"bad Content-Length {length_text!r}") from exc
    end = body_start + length
    return start, end if len(buf) >= end else 0, reusable, not reusable


def reframe(answer: bytes, keep_alive: bool) -> bytes:
    """``answer`` with a ``Content-Length`` body and this proxy's ``Connection`` header."""
    head_end = answer.find(b"\r\n\r\n")
    lines = answer[:head_end].split(b"\r\n")
    body = answer[head_end + 4 :]
    headers = []
    chunked = False
    for line in lines[1:]:
        name = line.partition(b":")[0].strip().lower()
        if name == b"transfer-encoding" and line.lower().rstrip().endswith(b"chunked"):
            chunked = True
        if name not in _HOP_BY_HOP:
            headers.append(line)
    if chunked:
        body = dechunk(body)
    status = lines[0].replace(b"HTTP/1.0", b"HTTP/1.1", 1)
    headers.append(b"Content-Length: %d" % len(body))
    headers.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
    return b"\r\n".join([status, *headers]) + b"\r\n\r\n" + body


def plain_answer(status: int, reason: str, text: str, keep_alive: bool) -> bytes:
    body = text.encode()
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    ).encode() + body


# --- the proxy -----------------------------------------------------------------------------


class Exchange:
    """One request of a client connection, from the time it is read to its answer's relay."""

    __slots__ = ("answer", "client", "due", "ready", "request", "retried")

    def __init__(self, client: ClientSide, request: Request) -> None:
        self.client = client
        self.request = request
        self.answer = b""
        self.ready = False
        self.due = 0.0
        self.retried = False


class ClientSide(asyncio.Protocol):
    """A client's connection: requests framed in order, answers relayed in the same order."""

    def __init__(self, proxy: DelayProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pending: deque[Exchange] = deque()
        self.closing = False  # the last request said Connection: close, or the framing failed
        self.continued = False  # 100 Continue sent for the request being read
        self.gone = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.proxy.clients.add(self)
        self.proxy.counters["connections"] += 1
        peak = len(self.proxy.clients)
        if peak > self.proxy.counters["peak_connections"]:
            self.proxy.counters["peak_connections"] = peak

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self.buf + data if self.buf else data
        proxy = self.proxy
        try:
            while buf:
                end, request, wants_continue = parse_request(buf, self.continued)
                if request is None:
                    if wants_continue and self.transport is not None:
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        self.continued = True
                    break
                self.continued = False
                buf = buf[end:] if end < len(buf) else b""
                exchange = Exchange(self, request)
                self.pending.append(exchange)
                proxy.requests += 1
                proxy.forward(exchange)
                if not request.keep_alive:
                    self.closing = True
                    break
        except BadMessage as exc:
            self.closing = True
            buf = b""
            bad = Exchange(self, Request(b"", False, False))
            bad.answer = plain_answer(400, "Bad Request", f"delayproxy: {exc}", False)
            bad.ready = True
            self.pending.append(bad)
            proxy.counters["bad_requests"] += 1
            self.flush()
        self.buf = buf

    def flush(self) -> None:
        """Relay every answer that is ready, in request order."""
        pending = self.pending
        transport = self.transport
        while pending and pending[0].ready:
            exchange = pending.popleft()
            if transport is None or self.gone:
                return
            transport.write(exchange.answer)
            if not exchange.request.keep_alive:
                transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.proxy.clients.discard(self)
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UpstreamSide(asyncio.Protocol):
    """One connection to the server, carrying one exchange at a time."""

    def __init__(self, proxy: DelayProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.buf = b""
        self.reused = False
        self.until_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.proxy.upstreams.add(self)

    def send(self, exchange: Exchange) -> None:
        assert self.transport is not None
        self.exchange = exchange
        self.buf = b""
        self.until_close = False
        self.transport.write(exchange.request.data)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # nothing asked: not HTTP as we know it
            if self.transport is not None:
                self.transport.close()
            return
        buf = self.buf + data if self.buf else data
        if self.until_close:
            self.buf = buf
            return
        try:
            start, end, reusable, rewrite = parse_response(buf, exchange.request.head_only)
        except BadMessage as exc:
            self.exchange = None
            self.buf = b""
            self.proxy.answered(exchange, self._bad_gateway(exchange, str(exc)))
            if self.transport is not None:
                self.transport.close()
            return
        if end == UNTIL_CLOSE:
            self.until_close = True
            self.buf = buf
            return
        if end == 0:
            self.buf = buf
            return
        answer = buf[start:end] if (start or end < len(buf)) else buf
        if end < len(buf):  # bytes nobody asked for: do not reuse this connection
            reusable = False
        if rewrite:
            answer = reframe(answer, exchange.request.keep_alive)
        self.exchange = None
        self.buf = b""
        if reusable and exchange.request.keep_alive:
            self.proxy.idle.append(self)
        elif self.transport is not None:
            self.transport.close()
        self.proxy.answered(exchange, answer)

    def connection_lost(self, exc: Exception | None) -> None:
        proxy = self.proxy
        proxy.upstreams.discard(self)
        with contextlib.suppress(ValueError):
            proxy.idle.remove(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        if self.until_close:
            proxy.answered(exchange, reframe(self.buf, exchange.request.keep_alive))
        elif self.reused and not self.buf and not exchange.retried:
            # The server closed this idle connection as the request went out: nothing reached
            # it, so the request goes again on a new connection.
            exchange.retried = True
            proxy.counters["stale_retries"] += 1
            proxy.connect_and_send(exchange)
        else:
            why = f"upstream closed the connection ({exc!r})" if exc else "upstream closed"
            proxy.answered(exchange, self._bad_gateway(exchange, why))

    def _bad_gateway(self, exchange: Exchange, why: str) -> bytes:
        self.proxy.counters["upstream_errors"] += 1
        return plain_answer(502, "Bad Gateway", f"delayproxy: {why}", exchange.request.keep_alive)


class DelayProxy:
    """The listening side and the upstream pool, on one event loop."""

    def __init__(
        self,
        upstream: str,
        delay_ms: float,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timer_slack_s: float = 0.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        self.up_host = parts.hostname
        self.up_port = parts.port or 80
        self.delay_s = delay_ms / 1000.0
        self.host = host
        self.port = port
        self.timer_slack_s = timer_slack_s
        self.clients: set[ClientSide] = set()
        self.upstreams: set[UpstreamSide] = set()
        self.idle: list[UpstreamSide] = []
        self.requests = 0
        self.cpu_at_start = 0.0
        self.late_bins = [0] * LATE_BINS
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "connections",
                "peak_connections",
                "upstream_connects",
                "upstream_errors",
                "stale_retries",
                "bad_requests",
                "early_timers",
            ),
            0,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> DelayProxy:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: ClientSide(self), self.host, self.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.cpu_at_start = time.process_time()
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.close()
        for up in list(self.upstreams):
            if up.transport is not None:
                up.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

    # --- requests --------------------------------------------------------------------------

    def forward(self, exchange: Exchange) -> None:
        idle = self.idle
        while idle:
            up = idle.pop()
            if up.transport is not None and not up.transport.is_closing():
                up.reused = True
                up.send(exchange)
                return
        self.connect_and_send(exchange)

    def connect_and_send(self, exchange: Exchange) -> None:
        assert self._loop is not None
        self._loop.create_task(self._connect(exchange))

    async def _connect(self, exchange: Exchange) -> None:
        assert self._loop is not None
        self.counters["upstream_connects"] += 1
        try:
            _, up = await self._loop.create_connection(
                lambda: UpstreamSide(self), self.up_host, self.up_port
            )
        except OSError as exc:
            self.counters["upstream_errors"] += 1
            why = f"delayproxy: cannot reach {self.up_host}:{self.up_port}: {exc}"
            self.answered(exchange, plain_answer(502, "Bad Gateway", why, True))
            return
        up.send(exchange)

    def answered(self, exchange: Exchange, answer: bytes) -> None:
        """The server's answer is here: relay it ``delay`` from now (and after earlier ones)."""
        exchange.answer = answer
        if exchange.client.gone:
            return
        assert self._loop is not None
        if self.delay_s <= 0:
            exchange.ready = True
            exchange.client.flush()
            return
        exchange.due = time.monotonic() + self.delay_s
        self._loop.call_later(self.delay_s + self.timer_slack_s, self._release, exchange)

    def _release(self, exchange: Exchange) -> None:
        left = exchange.due - time.monotonic()
        if left > 0:  # a coarse timer fired early: once more for what is left
            self.counters["early_timers"] += 1
            assert self._loop is not None
            self._loop.call_later(left + self.timer_slack_s, self._release, exchange)
            return
        late = int(-left * 1e4)  # 0.1 ms bins of lateness
        self.late_bins[late if late < LATE_BINS else LATE_BINS - 1] += 1
        exchange.ready = True
        exchange.client.flush()

    def added_ms(self, q: float) -> float:
        """The ``q``-quantile (0-1) of the delay actually added (to 0.1 ms), NaN before any."""
        total = sum(self.late_bins)
        if not total:
            return math.nan
        want = q * total
        seen = 0
        for i, n in enumerate(self.late_bins):
            seen += n
            if seen >= want and n:
                return self.delay_s * 1e3 + (i + 1) / 10
        return math.nan

    def report(self) -> dict[str, Any]:
        p50, p99 = self.added_ms(0.5), self.added_ms(0.99)
        return {
            "requests": self.requests,
            "delay_ms": self.delay_s * 1000,
            # what a client got on top of the server's own round trip (upper edges of 0.1 ms
            # bins; the proxy's own relaying, ~0.1 ms on loopback, is not in it)
            "added_p50_ms": None if math.isnan(p50) else round(p50, 1),
            "added_p99_ms": None if math.isnan(p99) else round(p99, 1),
            **self.counters,
            "cpu_s": round(time.process_time() - self.cpu_at_start, 3),  # since listening
        }


# --- running it ----------------------------------------------------------------------------


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        return uvloop.new_event_loop(), "uvloop"
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"


async def _serve(proxy: DelayProxy, on_ready: Callable[[DelayProxy], None]) -> None:
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready(proxy)
    await stop.wait()
    await proxy.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.delayproxy", description=__doc__)
    p.add_argument("--upstream", required=True, help="http://host:port of the server")
    p.add_argument("--delay-ms", type=float, required=True, help="added to each round trip")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    args = p.parse_args(argv)
    loop, kind = _new_loop()
    slack = UVLOOP_TIMER_SLACK_S if kind == "uvloop" else 0.0
    proxy = DelayProxy(
        args.upstream, args.delay_ms, host=args.host, port=args.port, timer_slack_s=slack
    )

    def ready(p: DelayProxy) -> None:
        print(p.endpoint, flush=True)
        print(
            f"delayproxy: {p.endpoint} -> {args.upstream}, +{args.delay_ms:g} ms per request "
            f"({kind})",
            file=sys.stderr,
            flush=True,
        )

    import gc

    gc.freeze()  # what was imported stays out of the collector's way
    try:
        loop.run_until_complete(_serve(proxy, ready))
    finally:
        loop.close()
    print(json.dumps({"delayproxy": proxy.report(), "loop": kind}), file=sys.stderr, flush=True)
    return 0


# --- the proxy as a child process (the harness's and the tests' way to run it) -------------


class DelayProxyProcess:
    """``python -m bench.delayproxy`` started in a session of its own; its pid for /proc."""

    def __init__(
        self,
        upstream: str,
        delay_ms: float,
        *,
        python: str = sys.executable,
        log_path: Path | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.python = python
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.endpoint = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> DelayProxyProcess:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        log = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "bench.delayproxy",
                    "--upstream",
                    self.upstream,
                    "--delay-ms",
                    f"{self.delay_ms:g}",
                ],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            if self.log_path is not None and not isinstance(log, int):
                log.close()
        assert self.proc.stdout is not None
        line = _read_line(self.proc, self.start_timeout_s)
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"delayproxy did not start (first line {line!r})")
        self.endpoint = line
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> DelayProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The child's first stdout line, waiting at most ``timeout_s`` (or until it exits)."""
    import selectors

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
    return out.split(b"\n", 1)[0].decode(errors="replace").strip()


if __name__ == "__main__":
    sys.exit(main())
