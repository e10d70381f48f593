"""The health/metrics endpoint, through real HTTP on 127.0.0.1 (urllib in a thread, raw sockets)."""

from __future__ import annotations

import asyncio
import errno
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from goraxfast.core.health import HealthStatus, QueueMetrics, evaluate
from goraxfast.errors import ConfigError
from goraxfast.ops.http import HealthBindError, HealthServer

HOST = "127.0.0.1"
NOW = 1000.0


@dataclass
class State:
    """What the engine would expose; tests flip it between requests."""

    metrics: QueueMetrics | None = field(default_factory=lambda: QueueMetrics(1, 2, 3, 0, NOW))
    ready: tuple[bool, str] = (True, "ready")
    metrics_text: str = "goraxfast_queue_depth 6\n"
    fail_metrics: bool = False

    def health(self) -> HealthStatus:
        return evaluate(self.metrics, now=NOW, interval_s=30, max_depth=0)

    def text(self) -> str:
        if self.fail_metrics:
            raise RuntimeError("counters unavailable")
        return self.metrics_text


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
async def server(state: State) -> AsyncIterator[HealthServer]:
    srv = HealthServer(
        HOST,
        0,
        metrics_text=state.text,
        health=state.health,
        ready=lambda: state.ready,
        read_timeout_s=0.5,
        max_request_bytes=1024,
    )
    await srv.start()
    yield srv
    await srv.stop()


async def fetch(server: HealthServer, path: str, method: str = "GET") -> Reply:
    def call() -> Reply:
        req = urllib.request.Request(server.url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    return await asyncio.to_thread(call)


async def raw(server: HealthServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(data)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply


async def test_metrics_serves_prometheus_text(server: HealthServer, state: State) -> None:
    reply = await fetch(server, "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert reply.body == state.metrics_text.encode()


async def test_health_is_200_with_json_detail_when_healthy(server: HealthServer) -> None:
    reply = await fetch(server, "/health")
    doc = json.loads(reply.body)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert (doc["status"], doc["issues"], doc["metrics"]["total"]) == ("healthy", [], 6)


async def test_health_is_503_with_issues_when_unhealthy(server: HealthServer, state: State) -> None:
    state.metrics = QueueMetrics(0, 0, 0, dlq_depth=2, updated_at=NOW)
    reply = await fetch(server, "/health")
    assert reply.status == 503
    assert json.loads(reply.body)["issues"] == ["DLQ contains 2 messages"]


async def test_live_answers_ok(server: HealthServer) -> None:
    reply = await fetch(server, "/health/live")
    assert (reply.status, reply.body) == (200, b"ok\n")


async def test_ready_is_200_when_ready(server: HealthServer) -> None:
    assert (await fetch(server, "/health/ready")).status == 200


async def test_not_ready_is_503_with_the_reason(server: HealthServer, state: State) -> None:
    state.ready = (False, "draining: 3 handlers still running")
    reply = await fetch(server, "/health/ready")
    assert (reply.status, reply.body) == (503, b"draining: 3 handlers still running\n")


async def test_query_string_is_ignored_for_routing(server: HealthServer) -> None:
    assert (await fetch(server, "/metrics?name[]=x")).status == 200


async def test_unknown_path_is_404(server: HealthServer) -> None:
    assert (await fetch(server, "/nope")).status == 404


async def test_other_methods_are_405_with_allow_header(server: HealthServer) -> None:
    reply = await fetch(server, "/health", method="POST")
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"


async def test_head_sends_headers_without_body(server: HealthServer) -> None:
    reply = await raw(server, b"HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 3" in head
    assert body == b""


async def test_garbage_is_400(server: HealthServer) -> None:
    reply = await raw(server, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request")


async def test_malformed_header_is_400(server: HealthServer) -> None:
    reply = await raw(server, b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_oversized_request_head_is_431(server: HealthServer) -> None:
    reply = await raw(server, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")


async def test_client_that_never_finishes_its_request_gets_408(server: HealthServer) -> None:
    reply = await raw(server, b"GET /metrics HTTP/1.1\r\n")  # no blank line: waits for more
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_client_leaving_early_gets_no_reply_and_server_keeps_serving(
    server: HealthServer,
) -> None:
    _, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET /met")
    writer.close()
    await writer.wait_closed()
    assert (await fetch(server, "/health/live")).status == 200


async def test_failing_callback_is_500_and_server_keeps_serving(
    server: HealthServer, state: State
) -> None:
    state.fail_metrics = True
    reply = await fetch(server, "/metrics")
    assert (reply.status, reply.body) == (500, b"RuntimeError: counters unavailable\n")
    assert (await fetch(server, "/health/live")).status == 200


async def test_port_zero_binds_a_free_port_on_loopback(server: HealthServer) -> None:
    assert server.port != 0
    assert server.url == f"http://{HOST}:{server.port}"


async def test_stop_closes_idle_connections_and_is_idempotent(state: State) -> None:
    srv = HealthServer(
        HOST, 0, metrics_text=state.text, health=state.health, ready=lambda: state.ready
    )
    await srv.start()
    _, writer = await asyncio.open_connection(HOST, srv.port)  # connected, sends nothing
    await srv.stop()
    await srv.stop()
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(HOST, srv.port)
    assert asyncio.all_tasks() == {asyncio.current_task()}


def _server_on(state: State, host: str, port: int) -> HealthServer:
    return HealthServer(
        host, port, metrics_text=state.text, health=state.health, ready=lambda: state.ready
    )


async def test_a_port_in_use_is_a_config_error_naming_the_port_and_the_os_reason(
    server: HealthServer, state: State
) -> None:
    second = _server_on(state, HOST, server.port)  # a second engine on the same host

    with pytest.raises(HealthBindError) as info:
        await second.start()

    (problem,) = info.value.problems
    assert (problem.name, problem.value) == ("WORKER_HEALTH_PORT", str(server.port))
    assert f"cannot listen on {HOST}:{server.port}: Address already in use" in problem.allowed
    assert "0 for any" in problem.allowed
    assert isinstance(info.value, ConfigError)
    assert info.value.os_error.errno == errno.EADDRINUSE
    assert (info.value.host, info.value.port) == (HOST, server.port)


async def test_an_address_of_another_machine_is_a_config_error_naming_the_host(
    state: State,
) -> None:
    foreign = "192.0.2.1"  # TEST-NET-1: never an address of this machine

    with pytest.raises(HealthBindError) as info:
        await _server_on(state, foreign, 0).start()

    (problem,) = info.value.problems
    assert (problem.name, problem.value) == ("WORKER_HEALTH_HOST", foreign)
    assert "Cannot assign requested address" in problem.allowed


async def test_a_server_whose_start_failed_starts_once_the_port_is_free(state: State) -> None:
    blocker = _server_on(state, HOST, 0)
    await blocker.start()
    srv = _server_on(state, HOST, blocker.port)
    with pytest.raises(HealthBindError):
        await srv.start()
    await blocker.stop()

    await srv.start()

    assert (await fetch(srv, "/health/live")).status == 200
    await srv.stop()


async def test_the_url_of_an_ipv6_endpoint_brackets_the_address(state: State) -> None:
    srv = _server_on(state, "::1", 8081)
    assert srv.url == "http://[::1]:8081"


async def test_live_is_503_with_the_reason_once_the_engine_says_it_is_not_alive(
    state: State,
) -> None:
    srv = HealthServer(
        HOST,
        0,
        metrics_text=state.text,
        health=state.health,
        ready=lambda: state.ready,
        live=lambda: (False, "the worker zygote has gone away"),
    )
    await srv.start()
    try:
        reply = await fetch(srv, "/health/live")
    finally:
        await srv.stop()
    assert reply.status == 503 and b"zygote" in reply.body
