"""The fault-injecting proxy itself, against the real moto server, with real clients.

boto3 clients here make one attempt per call (``total_max_attempts=1``) so that each fault is
seen as it is injected; the queue is always inspected through a second boto3 client that talks
to moto directly (``boto_sqs``), never through the proxy.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from engine_support import append, publish, queue_counts, trace_lines, wait_until
from faultproxy import FORWARD, FaultProxy, Rule

from goraxfast.config import Config
from goraxfast.core.sqs_model import SendEntry
from goraxfast.engine.engine import Engine
from goraxfast.errors import SQSError
from goraxfast.sqs.choice import open_data_plane


@pytest.fixture
def proxy(sqs_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(sqs_endpoint) as p:
        yield p
        assert p.errors == []


def client_via(proxy: FaultProxy, **config: Any) -> Any:
    """A boto3 SQS client that talks through the proxy, one attempt per call."""
    return boto3.client(
        "sqs",
        endpoint_url=proxy.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, **config),
    )


@pytest.fixture
def via(proxy: FaultProxy) -> Any:
    return client_via(proxy)


@pytest.fixture
def queue_url(queue_pair: tuple[str, str]) -> str:
    return queue_pair[0]


# --- raw HTTP, for what a client library would hide ---------------------------------------------


#: moto routes a request by its credential scope and never checks the signature itself.
FAKE_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def raw_request(port: int, target: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: AmazonSQS.{target}\r\n"
        f"Authorization: {FAKE_AUTH}\r\n"
        f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock`` (``buf`` keeps what was read past it); EOFError at the end."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        rest += chunk
    buf[:] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- forwarding ---------------------------------------------------------------------------------


def test_forwards_every_call_on_one_kept_alive_connection_though_moto_closes_each(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    for i in range(5):
        via.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    got = via.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    assert len(got["Messages"]) >= 1
    assert queue_counts(boto_sqs, queue_url)[0] + len(got["Messages"]) == 5
    assert proxy.operations() == {"SendMessage": 5, "ReceiveMessage": 1}
    assert proxy.counts() == {("SendMessage", FORWARD): 5, ("ReceiveMessage", FORWARD): 1}
    assert proxy.peak_connections == 1  # botocore reused its one connection for all six


def test_queue_urls_returned_through_the_proxy_point_at_it(proxy: FaultProxy, via) -> None:
    url = via.create_queue(QueueName=f"fp-{time.monotonic_ns()}")["QueueUrl"]
    assert url.startswith(proxy.endpoint + "/")  # moto builds it from the Host header we keep
    via.send_message(QueueUrl=url, MessageBody="x")
    assert (
        via.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "1"
    )
    via.delete_queue(QueueUrl=url)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    proxy: FaultProxy, queue_url: str
) -> None:
    name = queue_url.rsplit("/", 1)[-1]
    requests = [
        raw_request(proxy.port, "GetQueueUrl", {"QueueName": name}),
        raw_request(
            proxy.port, "GetQueueAttributes", {"QueueUrl": queue_url, "AttributeNames": ["All"]}
        ),
        raw_request(proxy.port, "GetQueueUrl", {"QueueName": "no-such-queue"}),
    ]
    with connect(proxy) as sock:
        sock.sendall(b"".join(requests))  # all three before reading any answer
        buf = bytearray()
        answers = [read_response(sock, buf) for _ in requests]
    assert [status for status, _, _ in answers] == [200, 200, 400]
    assert json.loads(answers[0][2])["QueueUrl"].endswith("/" + name)
    assert "Attributes" in json.loads(answers[1][2])
    assert all(h["connection"] == "keep-alive" for _, h, _ in answers)
    assert proxy.peak_connections == 1


def test_identifies_the_operation_from_the_json_target_and_the_query_action(
    proxy: FaultProxy,
) -> None:
    form = b"Action=ListQueues&Version=2012-11-05"
    query = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        f"Content-Length: {len(form)}\r\n\r\n"
    ).encode() + form
    in_url = (
        f"GET /?Action=GetQueueUrl&QueueName=x HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n"
    )
    with connect(proxy) as sock:
        sock.sendall(raw_request(proxy.port, "SendMessageBatch", {}) + query + in_url.encode())
        buf = bytearray()
        for _ in range(3):
            read_response(sock, buf)
    assert proxy.operations() == {"SendMessageBatch": 1, "ListQueues": 1, "GetQueueUrl": 1}


# --- error --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "botocore_code"),
    [
        (500, "InternalError", "InternalError"),
        (503, "ServiceUnavailable", "ServiceUnavailable"),
        (400, "ThrottlingException", "ThrottlingException"),
        (400, "AWS.SimpleQueueService.NonExistentQueue", "AWS.SimpleQueueService.NonExistentQueue"),
        (403, "AccessDenied", "AccessDenied"),
    ],
)
def test_error_answers_the_aws_error_without_forwarding(
    proxy: FaultProxy, via, boto_sqs, queue_url: str, status: int, code: str, botocore_code: str
) -> None:
    proxy.add(Rule.error("SendMessage", status, code, "injected"))
    with pytest.raises(ClientError) as raised:
        via.send_message(QueueUrl=queue_url, MessageBody="never sent")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Code"] == botocore_code
    assert error["Error"]["Message"] == "injected"
    assert queue_counts(boto_sqs, queue_url) == (0, 0)  # SQS never saw it
    assert proxy.counts() == {("SendMessage", "error"): 1}
    # the connection stays usable, and other operations are untouched
    via.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    assert proxy.peak_connections == 1


def test_a_nonexistent_queue_error_is_the_one_botocore_models(proxy: FaultProxy, via) -> None:
    proxy.add(Rule.error("ReceiveMessage", 400, "AWS.SimpleQueueService.NonExistentQueue"))
    with pytest.raises(via.exceptions.QueueDoesNotExist):
        via.receive_message(QueueUrl="http://127.0.0.1:1/123456789012/q")


def test_times_limits_a_rule_to_the_first_n_matching_requests(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    rule = proxy.add(Rule.error("SendMessage", 500, "InternalError", times=2))
    outcomes = []
    for i in range(4):
        via.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])  # not matched
        try:
            via.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
            outcomes.append("ok")
        except ClientError:
            outcomes.append("error")
    assert outcomes == ["error", "error", "ok", "ok"]
    assert rule.applied == 2
    assert queue_counts(boto_sqs, queue_url) == (2, 0)


def test_probability_takes_a_seeded_reproducible_fraction(
    proxy: FaultProxy, via, queue_url: str
) -> None:
    rule = proxy.add(Rule.error("GetQueueAttributes", 500, probability=0.5, seed=7))
    outcomes = []
    for _ in range(40):
        try:
            via.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            outcomes.append(False)
        except ClientError:
            outcomes.append(True)
    draws = random.Random(7)
    assert outcomes == [draws.random() < 0.5 for _ in range(40)]
    assert 0 < rule.applied < 40


# --- drop_response, reset -----------------------------------------------------------------------


def test_drop_response_lets_the_call_take_effect_and_loses_the_answer(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    proxy.add(Rule.drop_response("SendMessage", times=1))
    with pytest.raises(ConnectionClosedError):
        via.send_message(QueueUrl=queue_url, MessageBody="sent, answer lost")
    assert queue_counts(boto_sqs, queue_url) == (1, 0)
    assert proxy.counts() == {("SendMessage", "drop_response"): 1}
    via.send_message(QueueUrl=queue_url, MessageBody="second")  # a new connection works
    assert queue_counts(boto_sqs, queue_url) == (2, 0)


def test_drop_response_of_a_delete_deletes(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    boto_sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    (msg,) = boto_sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]
    proxy.add(Rule.drop_response("DeleteMessage"))
    with pytest.raises(ConnectionClosedError):
        via.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
    assert queue_counts(boto_sqs, queue_url) == (0, 0)  # gone, not merely in flight


def test_reset_closes_the_connection_before_forwarding(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    proxy.add(Rule.reset("SendMessage", times=1))
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        via.send_message(QueueUrl=queue_url, MessageBody="never sent")
    assert queue_counts(boto_sqs, queue_url) == (0, 0)
    assert proxy.counts() == {("SendMessage", "reset"): 1}


def test_reset_is_a_tcp_reset_seen_by_a_raw_client(proxy: FaultProxy, queue_url: str) -> None:
    proxy.add(Rule.reset("GetQueueAttributes"))
    with connect(proxy) as sock:
        sock.sendall(raw_request(proxy.port, "GetQueueAttributes", {"QueueUrl": queue_url}))
        with pytest.raises((ConnectionResetError, EOFError)):
            read_response(sock, bytearray())


# --- delay --------------------------------------------------------------------------------------


def test_delay_holds_only_its_operation_and_lets_the_next_rule_decide(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    proxy.add(Rule.delay(300, "SendMessage", times=2))
    proxy.add(Rule.error("SendMessage", 500, times=1))
    started = time.monotonic()
    with pytest.raises(ClientError):
        via.send_message(QueueUrl=queue_url, MessageBody="delayed, then refused")
    assert time.monotonic() - started >= 0.3  # a lower bound: the delay cannot be shorter
    started = time.monotonic()
    via.send_message(QueueUrl=queue_url, MessageBody="delayed, then sent")
    assert time.monotonic() - started >= 0.3
    via.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    assert proxy.counts() == {
        ("SendMessage", "delay"): 2,
        ("SendMessage", "error"): 1,
        ("SendMessage", FORWARD): 1,
        ("GetQueueAttributes", FORWARD): 1,
    }
    assert queue_counts(boto_sqs, queue_url) == (1, 0)


def test_a_delay_range_draws_each_delay_from_its_seeded_rng(
    proxy: FaultProxy, via, queue_url: str
) -> None:
    proxy.add(Rule.delay(15, max_ms=40, seed=3))
    for _ in range(5):
        started = time.monotonic()
        via.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        assert time.monotonic() - started >= 0.015
    assert proxy.count("GetQueueAttributes", "delay") == 5


# --- blackhole ----------------------------------------------------------------------------------


def test_blackhole_holds_a_call_unforwarded_until_the_rule_is_removed(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    boto_sqs.send_message(QueueUrl=queue_url, MessageBody="waiting")
    rule = proxy.add(Rule.blackhole("ReceiveMessage"))
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(via.receive_message, QueueUrl=queue_url, WaitTimeSeconds=0)
        proxy.wait_count("ReceiveMessage", "blackhole")
        assert not call.done()
        assert queue_counts(boto_sqs, queue_url) == (1, 0)  # held before SQS: still visible
        proxy.remove(rule)
        got = call.result(timeout=30)
    assert [m["Body"] for m in got["Messages"]] == ["waiting"]
    assert proxy.counts() == {("ReceiveMessage", "blackhole"): 1, ("ReceiveMessage", FORWARD): 1}


def test_a_blackholed_call_whose_client_gave_up_is_never_forwarded(
    proxy: FaultProxy, boto_sqs, queue_url: str
) -> None:
    boto_sqs.send_message(QueueUrl=queue_url, MessageBody="must stay visible")
    rule = proxy.add(Rule.blackhole("ReceiveMessage"))
    with connect(proxy) as sock:
        sock.sendall(raw_request(proxy.port, "ReceiveMessage", {"QueueUrl": queue_url}))
        proxy.wait_count("ReceiveMessage", "blackhole")
    proxy.wait_for(lambda: proxy.open_connections == 0, what="the client's close seen")
    proxy.remove(rule)
    # a forward would need a connection to answer on: there is none, and none was made upstream
    assert proxy.count("ReceiveMessage", FORWARD) == 0
    assert queue_counts(boto_sqs, queue_url) == (1, 0)


def test_rules_change_at_run_time_from_other_threads_while_traffic_flows(
    proxy: FaultProxy, queue_url: str
) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def traffic() -> None:
        client = client_via(proxy)
        for _ in range(200):  # bounded, whatever happens
            if stop.is_set():
                return
            try:
                client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            except ClientError:
                pass
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(30):
            with proxy.applying(Rule.error("GetQueueAttributes", 503, "ServiceUnavailable")):
                proxy.add(Rule.delay(1))
            proxy.clear()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    requests = proxy.count("GetQueueAttributes")
    assert requests > 0
    outcomes = proxy.count("GetQueueAttributes", FORWARD) + proxy.count(
        "GetQueueAttributes", "error"
    )
    assert outcomes == requests  # every request answered exactly one way
    assert proxy.rules() == []


def test_an_outage_with_a_start_and_an_end_and_the_counts_that_prove_it(
    proxy: FaultProxy, via, boto_sqs, queue_url: str
) -> None:
    boto_sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    with proxy.applying(Rule.error("DeleteMessage", 500, "InternalError")):
        (msg,) = via.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]
        receives_at_start = proxy.count("ReceiveMessage")
        for _ in range(3):
            with pytest.raises(ClientError):
                via.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
        assert proxy.count("ReceiveMessage") == receives_at_start  # none while deletes fail
    via.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
    assert [(e.operation, e.action) for e in proxy.events()] == [
        ("ReceiveMessage", FORWARD),
        ("DeleteMessage", "error"),
        ("DeleteMessage", "error"),
        ("DeleteMessage", "error"),
        ("DeleteMessage", FORWARD),
    ]
    assert queue_counts(boto_sqs, queue_url) == (0, 0)


# --- bounds and stopping ------------------------------------------------------------------------


def test_exit_closes_every_connection_held_or_idle_and_stops_listening(
    sqs_endpoint: str, queue_url: str
) -> None:
    with FaultProxy(sqs_endpoint) as proxy:
        port = proxy.port
        proxy.add(Rule.blackhole("ReceiveMessage"))
        held, idle = connect(proxy), connect(proxy)
        held.sendall(raw_request(port, "ReceiveMessage", {"QueueUrl": queue_url}))
        idle.sendall(raw_request(port, "GetQueueAttributes", {"QueueUrl": queue_url}))
        assert read_response(idle, bytearray())[0] == 200
        proxy.wait_count("ReceiveMessage", "blackhole")
        assert proxy.open_connections == 2
    with held, idle:
        assert closed_by_peer(held) and closed_by_peer(idle)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert proxy.count("ReceiveMessage", FORWARD) == 0


def test_connections_past_the_bound_are_refused(sqs_endpoint: str) -> None:
    with FaultProxy(sqs_endpoint, max_connections=2) as proxy:
        first, second = connect(proxy), connect(proxy)
        proxy.wait_for(lambda: proxy.open_connections == 2, what="two connections")
        with first, second, connect(proxy) as third:
            assert closed_by_peer(third)
            assert proxy.open_connections == 2


def test_binds_loopback_only_on_an_ephemeral_port(sqs_endpoint: str) -> None:
    with FaultProxy(sqs_endpoint) as one, FaultProxy(sqs_endpoint) as two:
        assert one.port != two.port and one.port > 0
        assert one.endpoint == f"http://127.0.0.1:{one.port}"
        sock = socket.create_connection(("127.0.0.1", one.port))
        assert sock.getpeername()[0] == "127.0.0.1"
        sock.close()


# --- the project's fast client ------------------------------------------------------------------


async def test_the_fast_client_keeps_several_connections_and_sees_each_fault(
    proxy: FaultProxy, config: Config, boto_sqs, queue_url: str
) -> None:
    cfg = config.with_(aws_endpoint=proxy.endpoint, sqs_client="fast")
    dp = await open_data_plane(cfg)
    try:
        assert type(dp).__name__ == "FastSQSClient"
        entries = [SendEntry(str(i), f"body-{i}") for i in range(10)]
        sent = await dp.send_batch(queue_url, entries)
        assert len(sent.successful) == 10 and not sent.failed

        # four receives at once, each held by the blackhole on a connection of its own
        hold = proxy.add(Rule.blackhole("ReceiveMessage"))
        receives = [asyncio.ensure_future(dp.receive(3, 0, 30)) for _ in range(4)]
        await asyncio.to_thread(proxy.wait_count, "ReceiveMessage", "blackhole", 4)
        assert proxy.open_connections >= 4
        assert not any(r.done() for r in receives)
        proxy.remove(hold)
        got = [m for batch in await asyncio.gather(*receives) for m in batch]
        assert len(got) == 10 and len({m.message_id for m in got}) == 10

        # a lost answer to a delete: the delete happened; the pool sends it again once on a
        # fresh connection, as for any keep-alive connection the server closed under it
        proxy.add(Rule.drop_response("DeleteMessageBatch", times=1))
        first = [(str(i), m.receipt_handle) for i, m in enumerate(got[:5])]
        assert len((await dp.delete_batch(first)).successful) == 5
        # a 500 is not retried inside the client (acks make one attempt: the acker retries
        # them and must see each failure); the same delete then goes through
        proxy.add(Rule.error("DeleteMessageBatch", 500, "InternalError", times=1))
        rest = [(str(i), m.receipt_handle) for i, m in enumerate(got[5:])]
        with pytest.raises(SQSError, match="InternalError"):
            await dp.delete_batch(rest)
        assert len((await dp.delete_batch(rest)).successful) == 5
        # two 503s on a receive: the client's own retries get through
        proxy.add(Rule.error("ReceiveMessage", 503, "ServiceUnavailable", times=2))
        assert await dp.receive(10, 0, 30) == []
    finally:
        await dp.close()
    assert proxy.count("DeleteMessageBatch", "drop_response") == 1
    assert proxy.count("DeleteMessageBatch", "error") == 1
    assert proxy.count("DeleteMessageBatch", FORWARD) == 2  # the replay and the last one
    assert proxy.count("ReceiveMessage", "error") == 2
    assert queue_counts(boto_sqs, queue_url) == (0, 0)


# --- the engine through the proxy ---------------------------------------------------------------


@pytest.mark.parametrize("client", ["botocore", "fast"])
async def test_the_engine_drains_through_the_proxy_with_real_round_trips_and_a_lost_delete(
    proxy: FaultProxy, config: Config, boto_sqs, queue_url: str, tmp_path, client: str
) -> None:
    trace = tmp_path / "trace"
    ids = publish(boto_sqs, queue_url, 20)
    proxy.add(Rule.delay(15, max_ms=40, seed=1))  # every call: a round trip as to real SQS
    proxy.add(Rule.drop_response("DeleteMessageBatch", times=1))

    def handler(msg):
        append(trace, msg.execution_id)

    cfg = config.with_(
        aws_endpoint=proxy.endpoint,
        sqs_client=client,
        pollers=1,
        health_port=0,
        worker_processes=1,
        wait_time_s=1,
        poll_interval_s=0.05,
        shutdown_grace_s=10,
    )
    async with Engine(cfg, handler) as engine:
        await wait_until(
            lambda: queue_counts(boto_sqs, queue_url) == (0, 0) and engine.stats().deleted >= 20,
            what="20 deleted through the proxy",
        )
        assert engine.fatal_error is None
    assert sorted({line[0] for line in trace_lines(trace)}) == sorted(ids)
    assert proxy.count("DeleteMessageBatch", "drop_response") == 1
    assert proxy.count("ReceiveMessage", FORWARD) >= 2
    assert proxy.count(None, "delay") == proxy.count()  # every request was delayed
    assert proxy.count("GetQueueAttributes") >= 1  # the control plane goes through it too
