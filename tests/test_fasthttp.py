"""goraxfast.sqs.httpclient against tiny scripted HTTP servers on 127.0.0.1.

Each server is a coroutine that reads requests and writes exactly the bytes the scenario needs
(split writes, chunked bodies, closes at awkward moments, silence), so every rule in the module's
docstring is exercised over real sockets.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
import uvloop

from goraxfast.cli.moto_server import free_port
from goraxfast.sqs.httpclient import (
    ConnectError,
    ConnectionLost,
    HTTPPool,
    ProtocolError,
    ResponseTimeout,
    head_fields,
)

# Both loops are covered by overriding pytest-asyncio's policy fixture, deprecated in favour of a
# conftest hook (pytest_asyncio_loop_factories) that this file cannot add on its own.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request (head, body), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


class Server:
    """Runs ``handler(reader, writer, connection_number)`` for each connection; counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            finally:
                writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def answering(*answers: bytes) -> Handler:
    """A keep-alive server answering each request on a connection with the next answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for answer in answers:
            if await read_request(reader) is None:
                return
            writer.write(answer)
            await writer.drain()
        await reader.read()  # keep the connection open until the client closes it

    return handler


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every scenario on both loops: the engine runs on uvloop, whose transports differ."""
    if request.param == "uvloop":
        return cast(asyncio.AbstractEventLoopPolicy, uvloop.EventLoopPolicy())
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def pools() -> AsyncIterator[list[HTTPPool]]:
    made: list[HTTPPool] = []
    yield made
    for pool in made:
        await pool.close()


async def get(
    pool: HTTPPool, *, timeout_s: float = 5.0, replay_safe: bool = False
) -> tuple[int, bytes]:
    resp = await pool.request(
        "POST", "/", [("X-Test", "1")], b"{}", timeout_s=timeout_s, replay_safe=replay_safe
    )
    return resp.status, resp.body


# --- bodies ------------------------------------------------------------------------------------


async def test_content_length_body_and_headers(pools: list[HTTPPool]) -> None:
    answer = b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhello"
    async with Server(answering(answer)) as server:
        pools.append(pool := HTTPPool(server.origin))
        resp = await pool.request("GET", "/path?q=1", [("X-Test", "yes")], b"", timeout_s=5)
    assert (resp.status, resp.body) == (404, b"hello")
    assert resp.headers["x-a"] == "1, 2" and resp.headers["content-length"] == "5"


async def test_request_carries_host_headers_and_body() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        request = await read_request(reader)
        assert request is not None
        seen.append(request)
        writer.write(OK)

    async with Server(handler) as server:
        pool = HTTPPool(server.origin)
        await pool.request(
            "POST", "/q", [("X-Amz-Target", "AmazonSQS.ReceiveMessage")], b"{}", timeout_s=5
        )
        await pool.close()
    head, body = seen[0]
    assert head.startswith(b"POST /q HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in head
    assert (
        b"X-Amz-Target: AmazonSQS.ReceiveMessage\r\n" in head and b"Content-Length: 2\r\n" in head
    )
    assert body == b"{}"


async def test_chunked_body_in_separate_writes(pools: list[HTTPPool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in (b"5\r\nhello\r\n", b"1\r\n \r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"):
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(chunk)
        await reader.read()

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        assert await get(pool) == (200, b"hello world")


async def test_response_dribbled_one_byte_at_a_time(pools: list[HTTPPool]) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nContent-Length: 11\r\n\r\nhello world"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        for i in range(len(answer)):
            writer.write(answer[i : i + 1])
            await writer.drain()
        await reader.read()

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        assert await get(pool) == (200, b"hello world")


async def test_body_delimited_by_connection_close(pools: list[HTTPPool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        assert await get(pool) == (200, b"until the end")
        assert await get(pool) == (200, b"until the end")
    assert server.connections == 2


async def test_interim_100_continue_is_skipped(pools: list[HTTPPool]) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    async with Server(answering(answer)) as server:
        pools.append(pool := HTTPPool(server.origin))
        assert await get(pool) == (200, b"ok")


async def test_headers_are_those_of_the_final_answer_after_100_continue(
    pools: list[HTTPPool],
) -> None:
    answer = b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n" + (
        b"HTTP/1.1 400 Bad Request\r\nX-Amzn-Query-Error: Bad;Sender\r\nContent-Length: 2\r\n\r\nno"
    )
    async with Server(answering(answer)) as server:
        pools.append(pool := HTTPPool(server.origin))
        resp = await pool.request("POST", "/", [], b"", timeout_s=5)
    assert (resp.status, resp.body) == (400, b"no")
    assert resp.headers == {"x-amzn-query-error": "Bad;Sender", "content-length": "2"}


def test_head_fields_join_folded_lines_and_keep_a_head_cut_short() -> None:
    folded = b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\nX-B:3\r\n\r\nbody: not a header"
    assert head_fields(folded) == [(b"X-Long", b"one two"), (b"X-B", b"3")]
    assert head_fields(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2") == [(b"X-A", b"1"), (b"X-B", b"2")]


# --- keep-alive and the pool -------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(pools: list[HTTPPool]) -> None:
    async with Server(answering(OK, OK, OK)) as server:
        pools.append(pool := HTTPPool(server.origin))
        for _ in range(3):
            assert await get(pool) == (200, b"ok")
    assert server.connections == 1 and pool.open_connections == 1


async def test_connection_close_header_is_honoured(pools: list[HTTPPool]) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with Server(answering(closing)) as server:
        pools.append(pool := HTTPPool(server.origin))
        await get(pool)
        await get(pool)
    assert server.connections == 2


async def test_idle_connections_expire(pools: list[HTTPPool]) -> None:
    async with Server(answering(OK, OK)) as server:
        pools.append(pool := HTTPPool(server.origin, idle_timeout_s=0.0))
        await get(pool)
        await get(pool)
    assert server.connections == 2


async def test_concurrency_is_bounded_by_max_connections(pools: list[HTTPPool]) -> None:
    busy = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal busy, peak
        while await read_request(reader) is not None:
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.02)
            busy -= 1
            writer.write(OK)

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin, max_connections=2))
        results = await asyncio.gather(*(get(pool) for _ in range(6)))
    assert results == [(200, b"ok")] * 6
    assert server.connections == 2 and peak == 2


async def test_server_closing_an_idle_connection_costs_nothing(pools: list[HTTPPool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()  # then hang up while the client holds it idle

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        await get(pool)
        for _ in range(500):  # until the client has seen the hang-up
            if all(conn.closed for conn in pool._idle):
                break
            await asyncio.sleep(0.01)
        assert await get(pool, replay_safe=False) == (200, b"ok")
    assert server.connections == 2


def close_on_second_request() -> Handler:
    """Connection 1 answers once, then reads the next request and hangs up without a word."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(OK)
            await writer.drain()
            await read_request(reader)
            return
        writer.write(OK)
        await reader.read()

    return handler


async def test_stale_connection_retried_once_when_replay_safe(pools: list[HTTPPool]) -> None:
    async with Server(close_on_second_request()) as server:
        pools.append(pool := HTTPPool(server.origin))
        await get(pool)
        assert await get(pool, replay_safe=True) == (200, b"ok")
    assert server.connections == 2


async def test_stale_connection_not_replayed_when_unsafe(pools: list[HTTPPool]) -> None:
    async with Server(close_on_second_request()) as server:
        pools.append(pool := HTTPPool(server.origin))
        await get(pool)
        with pytest.raises(ConnectionLost) as info:
            await get(pool, replay_safe=False)
    assert info.value.sent and not info.value.response_started
    assert server.connections == 1 and pool.open_connections == 0


async def test_connection_lost_mid_response_is_never_replayed(pools: list[HTTPPool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        with pytest.raises(ConnectionLost) as info:
            await get(pool, replay_safe=True)
    assert info.value.response_started and server.connections == 1


# --- deadlines, refusals, garbage ----------------------------------------------------------------


async def never_answering(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> None:
    await read_request(reader)
    await reader.read()  # keep the connection open, answer nothing


async def test_slow_response_times_out_and_drops_its_connection(pools: list[HTTPPool]) -> None:
    async with Server(never_answering) as server:
        pools.append(pool := HTTPPool(server.origin))
        with pytest.raises(ResponseTimeout) as info:
            await get(pool, timeout_s=0.1)
        assert info.value.sent and pool.open_connections == 0


async def test_each_exchange_keeps_its_own_deadline(pools: list[HTTPPool]) -> None:
    """A short deadline started after a long one still fires on time, and only for its own."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:  # the long exchange is answered once the short one has timed out
            await released.wait()
            writer.write(OK)
        await reader.read()

    released = asyncio.Event()
    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        long = asyncio.create_task(get(pool, timeout_s=30))
        while server.connections < 1:
            await asyncio.sleep(0.005)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ResponseTimeout):
            await get(pool, timeout_s=0.1)
        assert loop.time() - started < 10  # not held to the long exchange's 30 s
        released.set()
        assert await long == (200, b"ok")


async def test_a_deadline_after_one_that_expired_still_fires(pools: list[HTTPPool]) -> None:
    """The one timer re-arms for the next deadline after failing the due exchanges."""
    async with Server(never_answering) as server:
        pools.append(pool := HTTPPool(server.origin))
        first = asyncio.create_task(get(pool, timeout_s=0.1))
        second = asyncio.create_task(get(pool, timeout_s=0.3))
        for task in (first, second):
            with pytest.raises(ResponseTimeout):
                await asyncio.wait_for(task, 10)  # liveness bound: a missed deadline hangs
        assert pool.open_connections == 0 and not pool._busy  # no deadline left behind


async def test_cancelled_exchange_drops_its_connection(pools: list[HTTPPool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await reader.read()

    async with Server(handler) as server:
        pools.append(pool := HTTPPool(server.origin))
        task = asyncio.create_task(get(pool))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open_connections == 0 and not pool._busy


async def test_refused_connection_is_a_connect_error(pools: list[HTTPPool]) -> None:
    pools.append(pool := HTTPPool(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ConnectError) as info:
        await get(pool)
    assert not info.value.sent and pool.open_connections == 0


async def test_garbage_is_a_protocol_error(pools: list[HTTPPool]) -> None:
    async with Server(answering(b"SMTP ready\r\n\r\n")) as server:
        pools.append(pool := HTTPPool(server.origin))
        with pytest.raises(ProtocolError):
            await get(pool)


async def test_oversized_body_is_refused(pools: list[HTTPPool]) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    async with Server(answering(big)) as server:
        pools.append(pool := HTTPPool(server.origin, max_body_bytes=50))
        with pytest.raises(ProtocolError, match="over 50 bytes"):
            await get(pool)


async def test_only_http_origins_are_accepted() -> None:
    with pytest.raises(ValueError, match="origin"):
        HTTPPool("ftp://example.com")


async def test_closed_pool_refuses_requests() -> None:
    pool = HTTPPool("http://127.0.0.1:1")
    await pool.close()
    with pytest.raises(ConnectError, match="closed"):
        await get(pool)


# --- TLS ---------------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost (cryptography comes with moto)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_with_a_trusted_certificate(tmp_path: Path, pools: list[HTTPPool]) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        pools.append(pool := HTTPPool(f"https://localhost:{port}", ssl_context=trusted))
        assert await get(pool) == (200, b"ok")
        assert await get(pool) == (200, b"ok")  # kept alive over TLS too
        pools.append(untrusted := HTTPPool(f"https://localhost:{port}"))
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(untrusted)
    finally:
        server.close()
