"""The bench's delay proxy (bench/delayproxy.py): it really adds the delay, per request.

Against a tiny HTTP/1.1 server on loopback started here (one thread per connection; a request
can ask it to take its time, and it echoes what it got), through the proxy run as the bench runs
it: a process of its own. Every request's round trip is at least the delay; requests on separate
connections overlap (twenty 100 ms requests at once take about one delay, not twenty); answers
on one connection keep the order of its (pipelined) requests even when the server finishes them
in another order; bodies and headers pass untouched (a SigV4 signature covers them); a server
that closes after each answer (moto does) still leaves the client a kept-alive connection.
Upper bounds on time are generous: the machine may be busy.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.delayproxy import (
    UNTIL_CLOSE,
    BadMessage,
    DelayProxyProcess,
    chunked_end,
    parse_request,
    parse_response,
    reframe,
)

DELAY_MS = 100.0
DELAY_S = DELAY_MS / 1000


class _Upstream(BaseHTTPRequestHandler):
    """POST /<id>?sleep_ms=N&close=1: waits N ms, answers JSON echoing the request."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        time.sleep(float(params.get("sleep_ms", "0")) / 1000)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        answer = json.dumps(
            {
                "id": path.lstrip("/"),
                "body": body.decode(),
                "target": self.headers.get("X-Amz-Target"),
                "host": self.headers.get("Host"),
                "expect": self.headers.get("Expect"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(answer)))
        if params.get("close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def proxy(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DelayProxyProcess]:
    log = tmp_path_factory.mktemp("delayproxy") / "proxy.log"
    with DelayProxyProcess(upstream, DELAY_MS, log_path=log) as p:
        yield p


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _post(
    conn: http.client.HTTPConnection, path: str, body: bytes = b"{}", **headers: str
) -> tuple[float, dict[str, str], http.client.HTTPResponse]:
    t0 = time.monotonic()
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    data = json.loads(resp.read())
    return time.monotonic() - t0, data, resp


def test_every_round_trip_is_at_least_the_delay(proxy: DelayProxyProcess, upstream: str) -> None:
    direct = http.client.HTTPConnection("127.0.0.1", _port(upstream), timeout=10)
    conn = http.client.HTTPConnection("127.0.0.1", _port(proxy.endpoint), timeout=10)
    try:
        base = min(_post(direct, "/warm")[0] for _ in range(3))
        rtts = [_post(conn, f"/{i}")[0] for i in range(5)]  # one keep-alive connection
    finally:
        conn.close()
        direct.close()
    assert min(rtts) >= DELAY_S, rtts
    assert base < DELAY_S / 2  # the server alone is fast: the delay is the proxy's
    assert max(rtts) < DELAY_S + 1.0  # generous: a busy machine


def test_requests_on_separate_connections_overlap(proxy: DelayProxyProcess) -> None:
    n = 20
    start = threading.Barrier(n + 1)
    rtts: list[float] = []
    errors: list[BaseException] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", _port(proxy.endpoint), timeout=10)
        try:
            conn.connect()
            start.wait()
            rtts.append(_post(conn, "/concurrent")[0])
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - t0
    assert not errors
    assert len(rtts) == n and min(rtts) >= DELAY_S
    assert elapsed < 1.5, f"{n} concurrent {DELAY_MS:g} ms requests took {elapsed:.2f} s"


def _read_answers(sock: socket.socket, count: int, timeout_s: float = 10.0) -> list[bytes]:
    """``count`` Content-Length answers off a raw socket, in the order they arrive."""
    sock.settimeout(timeout_s)
    buf = b""
    out: list[bytes] = []
    while len(out) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buf[:head_end].lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15 :].split(b"\r\n", 1)[0])
            if len(buf) >= head_end + 4 + length:
                out.append(buf[head_end + 4 : head_end + 4 + length])
                buf = buf[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return out


def test_pipelined_answers_keep_request_order(proxy: DelayProxyProcess) -> None:
    """The first request takes the server longest: its answer still comes first."""
    sleeps = {"a": 300, "b": 0, "c": 100}
    requests = b"".join(
        f"POST /{rid}?sleep_ms={ms} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        for rid, ms in sleeps.items()
    )
    with socket.create_connection(("127.0.0.1", _port(proxy.endpoint)), timeout=10) as sock:
        t0 = time.monotonic()
        sock.sendall(requests)  # one write: pipelined
        answers = _read_answers(sock, len(sleeps))
        elapsed = time.monotonic() - t0
    assert [json.loads(a)["id"] for a in answers] == list(sleeps)
    # forwarded concurrently, each delayed on its own: the slowest plus one delay, not the sum
    assert 0.3 + DELAY_S <= elapsed < 0.3 + 0.1 + 3 * DELAY_S + 1.0


def test_bodies_and_headers_pass_untouched(proxy: DelayProxyProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", _port(proxy.endpoint), timeout=10)
    json_body = b'{"QueueUrl":"http://127.0.0.1:1/000000000000/q","MaxNumberOfMessages":10}'
    query_body = b"Action=DeleteMessage&QueueUrl=http%3A%2F%2Fx%2Fq&ReceiptHandle=abc%2B%3D"
    try:
        _, got, _ = _post(conn, "/json", json_body, **{"X-Amz-Target": "AmazonSQS.ReceiveMessage"})
        _, got_q, _ = _post(
            conn, "/query", query_body, **{"Content-Type": "application/x-www-form-urlencoded"}
        )
        big = b"x" * 300_000  # a SendMessageBatch near SQS's cap arrives in many reads
        _, got_big, _ = _post(conn, "/big", big)
    finally:
        conn.close()
    assert got["body"] == json_body.decode() and got["target"] == "AmazonSQS.ReceiveMessage"
    assert got["host"] == f"127.0.0.1:{_port(proxy.endpoint)}"  # as the client signed it
    assert got_q["body"] == query_body.decode()
    assert got_big["body"] == big.decode()


def test_expect_continue_is_answered_by_the_proxy(proxy: DelayProxyProcess) -> None:
    head = b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", _port(proxy.endpoint)), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer)["expect"] is None  # not passed on: the server must not wait


def test_a_server_that_closes_leaves_the_client_connection_alive(
    proxy: DelayProxyProcess,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", _port(proxy.endpoint), timeout=10)
    try:
        _, first, resp1 = _post(conn, "/one?close=1")
        assert resp1.getheader("Connection") == "keep-alive"
        sock = conn.sock
        _, second, _ = _post(conn, "/two?close=1")
        assert conn.sock is sock  # the same client connection carried both
    finally:
        conn.close()
    assert (first["id"], second["id"]) == ("one", "two")


def test_it_stops_on_sigterm_and_reports_what_it_did(upstream: str, tmp_path: Path) -> None:
    log = tmp_path / "proxy.log"
    proxy = DelayProxyProcess(upstream, 5, log_path=log).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", _port(proxy.endpoint), timeout=10)
        for i in range(3):
            _post(conn, f"/{i}")
        conn.close()
    finally:
        proxy.stop()
    report = json.loads(log.read_text().strip().splitlines()[-1])["delayproxy"]
    assert report["requests"] == 3 and report["upstream_errors"] == 0
    assert report["added_p50_ms"] >= 5


# --- framing, without sockets ----------------------------------------------------------------


def test_a_request_is_framed_only_when_its_body_is_whole() -> None:
    req = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_request(req[:-1], False)[0] == 0
    end, parsed, _ = parse_request(req + b"GET /next", False)
    assert end == len(req) and parsed is not None and parsed.data == req and parsed.keep_alive
    end, parsed, _ = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False)
    assert parsed is not None and not parsed.keep_alive


def test_chunked_bodies_and_expect() -> None:
    body = b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"
    assert chunked_end(body, 0) == len(body)
    assert chunked_end(body[:-2], 0) is None
    req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    assert parse_request(req, False)[0] == len(req)
    waiting = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    assert parse_request(waiting, False) == (0, None, True)
    assert parse_request(waiting, True) == (0, None, False)
    end, parsed, _ = parse_request(waiting + b"{}", True)
    assert end == len(waiting) + 2
    assert parsed is not None
    assert parsed.data == b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(BadMessage):
        parse_request(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", False)


def test_answers_interim_close_delimited_and_reframed() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert parse_response(interim + ok, False) == (
        len(interim),
        len(interim) + len(ok),
        True,
        False,
    )
    closing = b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<a/>"
    assert parse_response(closing, False)[1] == UNTIL_CLOSE
    fixed = reframe(closing, keep_alive=True)
    assert fixed.startswith(b"HTTP/1.1 200 OK\r\n") and fixed.endswith(b"\r\n\r\n<a/>")
    assert b"Content-Length: 4\r\n" in fixed and b"Connection: keep-alive\r\n" in fixed
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    chunked += b"2\r\nok\r\n0\r\n\r\n"
    start, end, reusable, rewrite = parse_response(chunked, False)
    assert (start, end, reusable, rewrite) == (0, len(chunked), False, True)
    assert reframe(chunked, keep_alive=False).endswith(b"Connection: close\r\n\r\nok")
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", False)[1] == 27


# --- the latency mode's summaries, on synthetic runs ------------------------------------------


def _run(contender: str, rtt: float, rate: float, cpu_us: float, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "server": "fauxqs",
        "contender": contender,
        "label": contender,
        "workers": 2,
        "handler": "noop",
        "status": "ok",
        "error": "",
        "msgs_per_s": rate,
        "client_us_per_msg": cpu_us,
        "client_cores": 1.0,
        "server_us_per_msg": 20.0,
        "server_cores": 0.3,
        "peak_rss_mb": 100.0,
        "processes": 4,
        "duplicates": 0,
        "latency_ms": [20.0],
        "rtt_ms": rtt,
    }
    row.update(kw)
    return row


def test_each_round_trip_is_its_own_row_with_its_ratio_to_its_own_direct_figure() -> None:
    from bench.report import pipeline_table, rtt_table, summarize

    engine = {
        "engine_stats": {"pollers_max": 40, "prefetch_max": 600, "dwell_p50_s": 0.0004},
        "engine_window": {"pollers_median": 20.0, "prefetch_median": 300.0, "in_flight_max": 90},
    }
    runs = [
        _run("goraxfast-fast", 0, 20_000.0, 30.0, **engine),
        _run("goraxfast-fast", 15, 16_000.0, 33.0, **engine),
        _run("aio-batch", 0, 5_000.0, 160.0),
        _run("aio-batch", 15, 4_000.0, 170.0),
    ]
    rows = {(r["contender"], r["rtt_ms"]): r for r in summarize(runs)}
    assert len(rows) == 4
    assert rows["goraxfast-fast", 15]["x_own_0ms"] == pytest.approx(0.8)
    assert rows["aio-batch", 15]["x_throughput"] == pytest.approx(0.25)  # to the engine at 15 ms
    fast15 = rows["goraxfast-fast", 15]
    assert (fast15["pollers_window"], fast15["pollers_max"]) == (20.0, 40.0)
    assert fast15["dwell_p50_ms"] == pytest.approx(0.4)
    assert fast15["dwell_p99_ms"] != fast15["dwell_p99_ms"]  # absent: NaN, printed n/a
    table = rtt_table(list(rows.values()))
    assert "16,000 (×0.80)" in table and "4,000 (×0.80)" in table
    engine_rows = pipeline_table(list(rows.values()))
    assert "| 20 / 40 |" in engine_rows and "0.4 / n/a" in engine_rows
    assert "aio-batch" not in engine_rows


def test_older_results_without_a_round_trip_are_direct_runs() -> None:
    from bench.report import summarize

    run = _run("goraxfast-fast", 0, 100.0, 10.0)
    del run["rtt_ms"]
    (row,) = summarize([run])
    assert row["rtt_ms"] == 0.0 and row["x_own_0ms"] == 1.0 and not row["engine"]


def test_the_engine_window_takes_the_samples_inside_it() -> None:
    from bench.runner import window_summary

    samples = [
        {"t": 1.0, "pollers": 2, "prefetch": 0, "in_flight": 0},
        {"t": 2.0, "pollers": 8, "prefetch": 100, "in_flight": 40},
        {"t": 2.5, "pollers": 16, "prefetch": 300, "in_flight": 120},
        {"t": 3.0, "pollers": 16, "prefetch": 200, "in_flight": 60},
        {"t": 9.0, "pollers": 64, "prefetch": 999, "in_flight": 0},
    ]
    got = window_summary(samples, 1.5, 3.0)
    assert got["samples"] == 3
    assert (got["pollers_median"], got["pollers_max"]) == (16.0, 16.0)
    assert (got["prefetch_median"], got["in_flight_max"]) == (200.0, 120.0)
    assert window_summary(samples, 5.0, 6.0) == {"samples": 0}


def test_rtt_list_parses_and_refuses() -> None:
    from bench.suite import rtt_list

    assert rtt_list("0,15,40") == [0.0, 15.0, 40.0]
    assert rtt_list("15, 15,0") == [15.0, 0.0]
    for bad in ("", "-1", "abc", "nan"):
        with pytest.raises(ValueError):
            rtt_list(bad)
