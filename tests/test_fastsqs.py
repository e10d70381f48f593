"""FastSQSClient behaves as SQSClient does: same scenarios on moto for both, same parsing as
botocore's for random responses, and botocore's standard-mode retries against a scripted server."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import msgspec
import pytest
import test_publisher_fifo
from botocore import parsers
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import ClientError
from botocore.session import get_session
from hypothesis import given, settings
from hypothesis import strategies as st

from goraxfast.cli.moto_server import free_port
from goraxfast.config import Config
from goraxfast.core.deadletter import DeadLetter, fit_letter
from goraxfast.core.sqs_model import (
    RECEIVE_SYSTEM_ATTRIBUTES,
    SendEntry,
    batch_result,
    received_message,
)
from goraxfast.errors import (
    ConfigError,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
)
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.choice import open_data_plane
from goraxfast.sqs.compat import RetryQuota, backoff_delay_s, client_error
from goraxfast.sqs.fast import (
    FastSQSClient,
    LazyAttributes,
    decode_batch,
    decode_receive,
    fast_batch_result,
    received,
)
from goraxfast.sqs.httpclient import Response

Client = SQSClient | FastSQSClient
ATTRS: dict[str, dict[str, Any]] = {
    "tenant_id": {"DataType": "String", "StringValue": "t-1"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    "n": {"DataType": "Number", "StringValue": "42"},
}


def make(kind: str, config: Config, queue_url: str | None = None) -> Client:
    if kind == "botocore":
        return SQSClient(config, queue_url=queue_url, sdk_attempts=1)
    return FastSQSClient(config, queue_url=queue_url, max_attempts=1)


@pytest.fixture(params=["botocore", "fast"])
async def client(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[Client]:
    async with make(request.param, config) as c:
        yield c


def depth(boto_sqs: Any, url: str) -> tuple[int, int]:
    attrs = boto_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


# --- the same scenarios for both clients, on moto ------------------------------------------------


async def test_round_trip_with_attributes(client: Client, boto_sqs: Any) -> None:
    message_id = await client.send_message('{"a":1}', message_attributes=ATTRS)
    before_ms = int(time.time() * 1000)
    [msg] = await client.receive(10, 1, 30)
    assert (msg.message_id, msg.body, msg.receive_count) == (message_id, b'{"a":1}', 1)
    assert msg.sent_ms > 0 and abs(msg.first_received_ms - before_ms) < 5_000
    assert msg.message_attributes == ATTRS
    deleted = await client.delete_batch([("only", msg.receipt_handle)])
    assert deleted.successful == ("only",) and not deleted.failed
    assert depth(boto_sqs, client.queue_url) == (0, 0)


async def test_send_batch_reports_each_entry(client: Client, boto_sqs: Any) -> None:
    entries = [SendEntry("a", "1", ATTRS), SendEntry("late", "2", delay_s=901), SendEntry("b", "3")]
    result = await client.send_batch(client.queue_url, entries)
    assert result.successful == ("a", "b") and set(result.message_ids) == {"a", "b"}
    [late] = result.failed
    assert (late.id, late.code, late.sender_fault) == ("late", "InvalidParameterValue", True)
    assert depth(boto_sqs, client.queue_url) == (2, 0)


async def test_batches_with_one_invalid_receipt_handle(client: Client, boto_sqs: Any) -> None:
    await client.send_batch(client.queue_url, [SendEntry(f"e{i}", str(i)) for i in range(3)])
    got = await client.receive(10, 1, 30)
    while len(got) < 3:
        got += await client.receive(10, 1, 30)
    vis = await client.change_visibility_batch(
        [("a", got[0].receipt_handle, 0), ("bad", "not-a-handle", 0)]
    )
    assert vis.successful == ("a",)
    assert [(f.id, f.code, f.sender_fault) for f in vis.failed] == [
        ("bad", "ReceiptHandleIsInvalid", True)
    ]
    deleted = await client.delete_batch(
        [("x", got[1].receipt_handle), ("bad", "not-a-handle"), ("y", got[2].receipt_handle)]
    )
    assert deleted.successful == ("x", "y")
    assert [f.code for f in deleted.failed] == ["ReceiptHandleIsInvalid"]
    assert depth(boto_sqs, client.queue_url) == (1, 0)


async def test_receive_count_and_first_receive_time(client: Client) -> None:
    await client.send_message("m")
    first = (await client.receive(1, 1, 0))[0]
    second = (await client.receive(1, 1, 0))[0]
    assert (first.receive_count, second.receive_count) == (1, 2)
    assert second.first_received_ms == first.first_received_ms > 0


async def test_visibility_changes_observed_by_receiving_again(client: Client) -> None:
    await client.send_message("m")
    [msg] = await client.receive(1, 1, 30)
    assert await client.receive(1, 0, 30) == []
    await client.change_visibility(msg.receipt_handle, 0)
    [again] = await client.receive(1, 1, 30)
    assert again.message_id == msg.message_id
    result = await client.change_visibility_batch([("v", again.receipt_handle, 0)])
    assert result.successful == ("v",)
    [third] = await client.receive(1, 1, 30)
    assert third.receive_count == 3


async def test_long_poll_returns_when_a_message_arrives(client: Client) -> None:
    async def publish_soon() -> None:
        await asyncio.sleep(0.3)
        await client.send_message("wake")

    publisher = asyncio.create_task(publish_soon())
    started = time.monotonic()
    msgs = await client.receive(1, 5, 30)
    elapsed = time.monotonic() - started
    await publisher
    assert [m.body for m in msgs] == [b"wake"]
    assert elapsed < 5.0  # returned before the 5 s wait ended


async def test_missing_queue_is_a_typed_error_for_every_call(client: Client) -> None:
    bogus = client.queue_url + "-nope"
    calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "ReceiveMessage": lambda c: c.receive(1, 0, 30),
        "DeleteMessageBatch": lambda c: c.delete_batch([("a", "h")]),
        "ChangeMessageVisibilityBatch": lambda c: c.change_visibility_batch([("a", "h", 0)]),
        "SendMessageBatch": lambda c: c.send_batch(bogus, [SendEntry("a", "x")]),
    }
    async with make(
        "fast" if isinstance(client, FastSQSClient) else "botocore", client._config, bogus
    ) as c:
        for operation, call in calls.items():
            with pytest.raises(QueueDoesNotExistError) as info:
                await call(c)
            err = info.value
            assert (err.operation, err.queue_url) == (operation, bogus)
            assert err.code == "AWS.SimpleQueueService.NonExistentQueue"
            assert isinstance(err.__cause__, ClientError)


async def test_invalid_receipt_handle_is_a_typed_error(client: Client) -> None:
    with pytest.raises(ReceiptHandleInvalidError, match="DeleteMessage") as info:
        await client.delete("not-a-handle")
    assert info.value.code == "ReceiptHandleIsInvalid"
    with pytest.raises(ReceiptHandleInvalidError, match="ChangeMessageVisibility"):
        await client.change_visibility("not-a-handle", 0)


@pytest.mark.parametrize("kind", ["botocore", "fast"])
async def test_unreachable_endpoint_is_an_sqs_error_without_code(kind: str, config: Config) -> None:
    down = config.with_(aws_endpoint=f"http://127.0.0.1:{free_port()}")
    async with make(kind, down) as c:
        with pytest.raises(SQSError, match="ReceiveMessage") as info:
            await c.receive(1, 0, 30)
    assert info.value.code is None and info.value.queue_url == config.queue_url


async def test_both_clients_word_errors_alike(config: Config) -> None:
    bogus = config.queue_url + "-nope"
    seen = []
    for kind in ("botocore", "fast"):
        async with make(kind, config, bogus) as c:
            with pytest.raises(SQSError) as missing:
                await c.delete_batch([("a", "h")])
        async with make(kind, config) as c:
            with pytest.raises(SQSError) as invalid:
                await c.delete("not-a-handle")
        seen.append([(type(e.value), e.value.code, str(e.value)) for e in (missing, invalid)])
    assert seen[0] == seen[1]


async def test_misuse_is_refused_before_any_call(config: Config) -> None:
    c = FastSQSClient(config)
    with pytest.raises(RuntimeError, match="not started"):
        await c.receive(1, 0, 30)
    async with c:
        with pytest.raises(ValueError, match="at most 10"):
            await c.delete_batch([(str(i), "h") for i in range(11)])
        with pytest.raises(ValueError, match="at most 10"):
            await c.send_batch(c.queue_url, [SendEntry(str(i), "x") for i in range(11)])
        assert (await c.delete_batch([])).successful == ()
    async with FastSQSClient(config.with_(queue_url="")) as no_queue:
        with pytest.raises(ConfigError, match="AWS_SQS_QUEUE_URL"):
            await no_queue.receive(1, 0, 30)


@pytest.mark.parametrize(("kind", "cls"), [("botocore", SQSClient), ("fast", FastSQSClient)])
async def test_open_data_plane_starts_the_chosen_client(
    kind: str, cls: type, config: Config
) -> None:
    plane = await open_data_plane(config.with_(sqs_client=kind))
    try:
        assert isinstance(plane, cls)
        assert await plane.receive(1, 0, 30) == []
    finally:
        await plane.close()


async def test_open_data_plane_refuses_unknown_kinds(config: Config) -> None:
    with pytest.raises(ValueError, match="sqs_client"):
        await open_data_plane(config.with_(sqs_client="other"))


def test_endpoint_is_aws_endpoint_or_regional() -> None:
    assert (
        FastSQSClient(Config(aws_region="eu-west-3")).endpoint
        == "https://sqs.eu-west-3.amazonaws.com"
    )
    assert FastSQSClient(Config(aws_region="cn-north-1")).endpoint.endswith(".amazonaws.com.cn")
    local = Config(aws_endpoint="http://127.0.0.1:4566")
    assert FastSQSClient(local).endpoint == "http://127.0.0.1:4566"


# --- parsing equals botocore's parser, for random responses --------------------------------------

SQS_MODEL = get_session().get_service_model("sqs")
JSON_PARSER = parsers.create_parser("json")


def botocore_parse(operation: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    shape = SQS_MODEL.operation_model(operation).output_shape
    return JSON_PARSER.parse({"status_code": status, "headers": headers, "body": body}, shape)


_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Co")), max_size=12)
_attribute = st.one_of(
    st.fixed_dictionaries({"DataType": st.just("String"), "StringValue": _words}),
    st.fixed_dictionaries({"DataType": st.just("Number"), "StringValue": st.integers().map(str)}),
    st.fixed_dictionaries({"DataType": st.just("Binary"), "BinaryValue": st.binary(max_size=16)}),
)
_message = st.fixed_dictionaries(
    {"MessageId": _words, "ReceiptHandle": _words},
    optional={
        "Body": _words,
        "MD5OfBody": _words,
        "Attributes": st.fixed_dictionaries(
            {},
            optional={
                **{
                    k: st.integers(0, 2**45).map(str)
                    for k in (
                        "ApproximateReceiveCount",
                        "SentTimestamp",
                        "ApproximateFirstReceiveTimestamp",
                    )
                },
                "MessageGroupId": _words,
                "SequenceNumber": st.integers(0, 10**20).map(lambda n: f"{n:020d}"),
                "MessageDeduplicationId": _words,  # returned too; neither client keeps it
            },
        ),
        "MessageAttributes": st.dictionaries(_words, _attribute, max_size=3),
    },
)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({}, optional={"Messages": st.lists(_message, max_size=4)}))
def test_receive_parsing_equals_botocore_then_sqs_received(response: dict[str, Any]) -> None:
    body = msgspec.json.encode(response)
    expected = [
        received_message(m)
        for m in botocore_parse("ReceiveMessage", 200, {}, body).get("Messages", [])
    ]
    assert [received(m) for m in decode_receive(body).Messages] == expected


def test_message_attributes_are_decoded_only_when_read_and_keep_binary_values() -> None:
    body = msgspec.json.encode(
        {
            "Messages": [
                {
                    "MessageId": "m",
                    "ReceiptHandle": "r",
                    "Attributes": {"ApproximateReceiveCount": "3"},
                    "MessageAttributes": {
                        "blob": {"DataType": "Binary", "BinaryValue": "AAE="},
                        "tenant_id": {"DataType": "String", "StringValue": "t"},
                    },
                }
            ]
        }
    )
    [m] = [received(w) for w in decode_receive(body).Messages]
    assert m.receive_count == 3
    assert isinstance(m.message_attributes, LazyAttributes)
    assert dict(m.message_attributes) == {
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        "tenant_id": {"DataType": "String", "StringValue": "t"},
    }


def test_message_attributes_of_an_unexpected_shape_are_kept_as_sent() -> None:
    body = b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "MessageAttributes": {"a": {"DataType": 5}}}]}'
    [m] = [received(w) for w in decode_receive(body).Messages]
    assert dict(m.message_attributes) == {"a": {"DataType": 5}}


@pytest.mark.parametrize("value", [b'"x"', b"null", b"[1]", b"7"])
def test_a_dead_letter_leaves_out_attributes_that_are_not_objects(value: bytes) -> None:
    """A broken server's attribute values must not break the acker when it copies them."""
    body = (
        b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "MessageAttributes": '
        b'{"bad": ' + value + b', "good": {"DataType": "String", "StringValue": "v"}}}]}'
    )
    [m] = [received(w) for w in decode_receive(body).Messages]
    letter = DeadLetter("body", m.message_attributes, "why", 1, "m", "q")
    attrs = fit_letter(letter, "0", 262_144).entry.message_attributes
    assert "bad" not in attrs and attrs["good"] == {"DataType": "String", "StringValue": "v"}


def test_message_attributes_do_not_keep_the_whole_response_alive() -> None:
    body = msgspec.json.encode(
        {
            "Messages": [
                {
                    "MessageId": "m",
                    "ReceiptHandle": "r",
                    "Body": "x" * 100_000,
                    "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}},
                }
            ]
        }
    )
    references = sys.getrefcount(body)
    [m] = [received(w) for w in decode_receive(body).Messages]
    assert isinstance(m.message_attributes, LazyAttributes)
    assert sys.getrefcount(body) == references  # its attributes are a copy, not a view of it


def test_a_receive_count_that_is_not_a_number_is_an_unreadable_response() -> None:
    body = b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Attributes": {"ApproximateReceiveCount": "x"}}]}'
    with pytest.raises(msgspec.ValidationError):
        decode_receive(body)


_ok = st.fixed_dictionaries(
    {"Id": _words}, optional={"MessageId": _words, "MD5OfMessageBody": _words}
)
_failed = st.fixed_dictionaries(
    {"Id": _words, "SenderFault": st.booleans(), "Code": _words}, optional={"Message": _words}
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {"Successful": st.lists(_ok, max_size=4), "Failed": st.lists(_failed, max_size=4)}
    )
)
def test_batch_parsing_equals_botocore_then_sqs_batch_result(response: dict[str, Any]) -> None:
    body = msgspec.json.encode(response)
    expected = batch_result(botocore_parse("SendMessageBatch", 200, {}, body))
    assert fast_batch_result(decode_batch(body)) == expected


_type = st.one_of(
    st.sampled_from(
        ["com.amazonaws.sqs#QueueDoesNotExist", "ThrottlingException", "A:http://x", "a#b#C"]
    ),
    _words,
)
_error_body = st.one_of(
    st.builds(
        lambda d: msgspec.json.encode(d),
        st.fixed_dictionaries({}, optional={"__type": _type, "message": _words, "Message": _words}),
    ),
    st.sampled_from(
        [b"", b"   ", b"<html><body>Service Unavailable</body></html>", b"not json", b"[1]"]
    ),
)
_query_header = st.one_of(
    st.none(),
    st.sampled_from(
        ["AWS.SimpleQueueService.NonExistentQueue;Sender", "X;Receiver", ";Sender", "A;B;C", "Solo"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([400, 403, 404, 413, 500, 502, 503]), _error_body, _query_header, st.booleans()
)
def test_error_parsing_equals_botocore(
    status: int, body: bytes, query: str | None, request_id: bool
) -> None:
    headers = {"x-amzn-query-error": query} if query is not None else {}
    if request_id:
        headers["x-amzn-requestid"] = "req-1"
    if body == b"[1]":
        return  # botocore itself crashes on a JSON body that is not an object
    expected = botocore_parse("DeleteMessageBatch", status, dict(headers), body)
    got = client_error(Response(status, headers, body), "DeleteMessageBatch").response
    assert got["Error"] == expected["Error"]
    if "RequestId" in expected["ResponseMetadata"]:  # (kept for generic 5xx answers too)
        assert got["ResponseMetadata"]["RequestId"] == expected["ResponseMetadata"]["RequestId"]


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    assert [backoff_delay_s(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_delay_s(9, 1.0) == 20.0 and backoff_delay_s(3, 0.5) == 2.0
    assert backoff_delay_s(2, 1.0, base_s=0.01) == pytest.approx(0.02)
    assert backoff_delay_s(5, 0.0) == 0.0


# --- retries, signing and credentials against a scripted server ----------------------------------

CLOSE, HANG = b"close", b"hang"
QUEUE_URL = "http://sqs.us-east-1.localhost:9324/000000000000/q"  # fauxqs-style: used as given
FROZEN_NOW = datetime(2026, 5, 1, 12, 0, 0)


def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    raw = msgspec.json.encode(body)
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/x-amz-json-1.0"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(raw)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


OK_BATCH = answer(200, {"Successful": [{"Id": "a"}], "Failed": []})
OK_RECEIVE = answer(200, {"Messages": []})
THROTTLED = answer(400, {"__type": "com.amazonaws.sqs#ThrottlingException", "message": "slow down"})
UNAVAILABLE = answer(503, {"__type": "ServiceUnavailable", "message": "try later"})
MISSING = answer(
    400,
    {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no such queue"},
    {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
)


class ScriptedSQS:
    """Answers each request with the next step of its script: a raw answer, CLOSE or HANG."""

    def __init__(self, *script: bytes) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.origin = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedSQS:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.origin = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode().split("\r\n")
                headers = {"request-line": lines[0]}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((headers, body))
                step = self.script.pop(0) if self.script else OK_BATCH
                if step == CLOSE:
                    return
                if step == HANG:
                    await reader.read()
                    return
                writer.write(step)
                await writer.drain()
        finally:
            writer.close()

    def config(self, **changes: Any) -> Config:
        base = Config(
            queue_url=QUEUE_URL,
            aws_region="us-east-1",
            aws_endpoint=self.origin,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
        )
        return base.with_(**changes)


def fast(server: ScriptedSQS, **kwargs: Any) -> FastSQSClient:
    options: dict[str, Any] = {"backoff_base_s": 0.001, "rng": random.Random(7)}
    return FastSQSClient(server.config(), **{**options, **kwargs})


async def test_request_is_json_1_0_signed_as_botocore_signs_it() -> None:
    async with ScriptedSQS() as server, fast(server, clock=lambda: FROZEN_NOW) as c:
        await c.delete_batch([("a", "handle-1")])
    [(headers, body)] = server.requests
    assert headers["request-line"] == "POST / HTTP/1.1"
    assert headers["x-amz-target"] == "AmazonSQS.DeleteMessageBatch"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert msgspec.json.decode(body) == {
        "QueueUrl": QUEUE_URL,
        "Entries": [{"Id": "a", "ReceiptHandle": "handle-1"}],
    }
    request = AWSRequest("POST", server.origin + "/", data=body)
    request.headers["X-Amz-Target"] = headers["x-amz-target"]
    request.headers["Content-Type"] = headers["content-type"]
    with mock.patch("botocore.auth.get_current_datetime", return_value=FROZEN_NOW):
        SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sqs", "us-east-1").add_auth(request)
    assert headers["authorization"] == request.headers["Authorization"]
    assert headers["x-amz-date"] == "20260501T120000Z" and "x-amz-security-token" not in headers


async def test_session_token_is_sent_and_signed() -> None:
    async with ScriptedSQS() as server:
        c = FastSQSClient(server.config(aws_session_token="the-token"))
        async with c:
            await c.delete_batch([("a", "h")])
    [(headers, _)] = server.requests
    assert headers["x-amz-security-token"] == "the-token"
    assert "x-amz-security-token" in headers["authorization"]


async def test_refreshable_credentials_are_refreshed_by_botocore() -> None:
    refreshed: list[str] = []

    def fetch() -> dict[str, str]:
        refreshed.append("called")
        expiry = datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_key": "ASIANEW",
            "secret_key": "s2",
            "token": "t2",
            "expiry_time": expiry.isoformat(),
        }

    soon = (
        datetime.now(UTC) + timedelta(minutes=5)
    ).isoformat()  # inside botocore's refresh window
    creds = RefreshableCredentials.create_from_metadata(
        {"access_key": "ASIAOLD", "secret_key": "s1", "token": "t1", "expiry_time": soon},
        fetch,
        "test",
    )
    async with ScriptedSQS() as server, fast(server, credentials=creds) as c:
        await asyncio.gather(*(c.delete_batch([("a", "h")]) for _ in range(3)))
        await c.delete_batch([("a", "h")])
    assert refreshed == ["called"]
    assert all("Credential=ASIANEW/" in h["authorization"] for h, _ in server.requests)
    assert all(h["x-amz-security-token"] == "t2" for h, _ in server.requests)


async def test_no_credentials_anywhere_is_an_sqs_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with (
        ScriptedSQS() as server,
        FastSQSClient(server.config(aws_access_key_id="", aws_secret_access_key="")) as c,
    ):
        with pytest.raises(SQSError, match="Unable to locate credentials") as info:
            await c.receive(1, 0, 30)
    assert info.value.code == "NoCredentials" and server.requests == []  # ours: no request made


async def test_server_errors_are_retried_then_succeed() -> None:
    async with ScriptedSQS(UNAVAILABLE, OK_RECEIVE) as server, fast(server) as c:
        assert await c.receive(10, 0, 30) == []
        assert c._quota.available == RetryQuota.INITIAL  # the retry's cost came back
    assert len(server.requests) == 2


async def test_throttling_is_retried_up_to_three_attempts() -> None:
    async with (
        ScriptedSQS(THROTTLED, THROTTLED, THROTTLED, OK_RECEIVE) as server,
        fast(server) as c,
    ):
        with pytest.raises(SQSError) as info:
            await c.receive(10, 0, 30)
    assert info.value.code == "ThrottlingException" and info.value.operation == "ReceiveMessage"
    assert len(server.requests) == 3


@pytest.mark.parametrize("fault", [UNAVAILABLE, THROTTLED, CLOSE])
async def test_acks_make_one_attempt_so_the_acker_sees_each_failure(fault: bytes) -> None:
    """The acker retries deletes itself, for as long as the engine runs, and stops taking
    messages while they fail: a retry loop in the client would hide the outage from it."""
    async with ScriptedSQS(fault, fault, OK_BATCH, OK_BATCH) as server, fast(server) as c:
        with pytest.raises(SQSError):
            await c.delete_batch([("a", "h")])
        with pytest.raises(SQSError):
            await c.change_visibility_batch([("a", "h", 0)])
    assert len(server.requests) == 2


async def test_a_missing_queue_is_not_retried() -> None:
    async with ScriptedSQS(MISSING) as server, fast(server) as c:
        with pytest.raises(QueueDoesNotExistError) as info:
            await c.receive(10, 0, 30)
    assert info.value.queue_url == QUEUE_URL and len(server.requests) == 1


async def test_the_retry_quota_stops_retries_when_spent() -> None:
    async with ScriptedSQS(UNAVAILABLE, UNAVAILABLE, OK_RECEIVE) as server, fast(server) as c:
        c._quota = RetryQuota(capacity=RetryQuota.RETRY_COST)  # room for one retry only
        with pytest.raises(SQSError, match="ServiceUnavailable"):
            await c.receive(10, 0, 30)
    assert len(server.requests) == 2


async def test_lost_receives_are_retried_but_lost_sends_are_not_replayed() -> None:
    async with ScriptedSQS(CLOSE, OK_RECEIVE, CLOSE) as server, fast(server) as c:
        assert await c.receive(10, 0, 30) == []
        with pytest.raises(SQSError, match="SendMessageBatch") as info:
            await c.send_batch(QUEUE_URL, [SendEntry("a", "x")])
    assert info.value.code is None
    assert [h["x-amz-target"] for h, _ in server.requests] == [
        "AmazonSQS.ReceiveMessage",
        "AmazonSQS.ReceiveMessage",
        "AmazonSQS.SendMessageBatch",
    ]


async def test_a_silent_server_times_out_each_attempt() -> None:
    async with ScriptedSQS(HANG, HANG, HANG) as server, fast(server, response_margin_s=0.05) as c:
        with pytest.raises(SQSError, match="ResponseTimeout"):
            await c.receive(10, 0, 30)
        assert c._quota.available == RetryQuota.INITIAL - 2 * RetryQuota.TIMEOUT_COST
    assert len(server.requests) == 3


async def test_an_unreadable_answer_is_an_sqs_error() -> None:
    garbage = answer(200, {"Messages": [{"MessageId": 5}]})
    async with ScriptedSQS(garbage) as server, fast(server) as c:
        with pytest.raises(SQSError, match="unreadable response"):
            await c.receive(10, 0, 30)


# --- FIFO queues ----------------------------------------------------------------------------------

fifo_queue_pair = test_publisher_fifo.fifo_queue_pair
fifo_config = test_publisher_fifo.fifo_config


@pytest.mark.parametrize("kind", ["botocore", "fast"])
async def test_a_fifo_message_comes_with_its_group_and_sequence_number(
    kind: str, fifo_config: Config
) -> None:
    async with make(kind, fifo_config) as c:
        first = await c.send_message("one", group_id="g-1", dedup_id="d-1")
        result = await c.send_batch(
            c.queue_url,
            [
                SendEntry("a", "two", group_id="g-1", dedup_id="d-2"),
                SendEntry("b", "x", group_id="g-2", dedup_id="d-1"),
            ],
        )
        assert result.successful == ("a", "b")
        got = await c.receive(10, 0, 30, attempt_id="attempt-1")
    # "b" reused d-1: SQS answers success and drops it, whatever its group and body
    assert [(m.body, m.group_id) for m in got] == [(b"one", "g-1"), (b"two", "g-1")]
    assert got[0].message_id == first
    assert all(m.sequence_number.isdigit() for m in got)  # moto's are random: not an order


def test_a_received_message_without_fifo_attributes_has_empty_ones() -> None:
    body = b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Attributes": {"MessageGroupId": "t-1"}}]}'
    [m] = [received(w) for w in decode_receive(body).Messages]
    assert (m.group_id, m.sequence_number) == ("t-1", "")
    [bare] = [
        received(w)
        for w in decode_receive(
            b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r"}]}'
        ).Messages
    ]
    assert (bare.group_id, bare.sequence_number) == ("", "")


async def test_the_attempt_id_goes_to_a_fifo_queue_and_is_kept_when_a_receive_is_retried() -> None:
    fifo_url = QUEUE_URL + ".fifo"
    async with ScriptedSQS(CLOSE, OK_RECEIVE, OK_RECEIVE, OK_RECEIVE) as server:
        async with fast(server, queue_url=fifo_url) as c:
            assert await c.receive(10, 0, 30, attempt_id="attempt-7") == []  # lost, then again
            assert await c.receive(10, 0, 30) == []
            with pytest.raises(ValueError, match="ReceiveRequestAttemptId is 129 characters"):
                await c.receive(10, 0, 30, attempt_id="x" * 129)
        async with fast(server) as standard:
            assert await standard.receive(10, 0, 30, attempt_id="not for standard queues") == []
    sent = [msgspec.json.decode(body) for _, body in server.requests]
    assert [r.get("ReceiveRequestAttemptId") for r in sent] == [
        "attempt-7",
        "attempt-7",
        None,
        None,
    ]
    assert sent[0]["MessageSystemAttributeNames"] == list(RECEIVE_SYSTEM_ATTRIBUTES)
    assert {"MessageGroupId", "SequenceNumber"} <= set(RECEIVE_SYSTEM_ATTRIBUTES)


async def test_send_message_carries_the_ids_and_refuses_what_sqs_would() -> None:
    sent = answer(200, {"MessageId": "m-1"})
    async with ScriptedSQS(sent, sent) as server, fast(server, queue_url=QUEUE_URL + ".fifo") as c:
        assert await c.send_message("x", group_id="g", dedup_id="d") == "m-1"
        with pytest.raises(ValueError, match="DelaySeconds"):
            await c.send_message("x", group_id="g", dedup_id="d", delay_s=3)
        with pytest.raises(ValueError, match="requires a MessageGroupId"):
            await c.send_message("x")
    [(_, body)] = server.requests
    request = msgspec.json.decode(body)
    assert (request["MessageGroupId"], request["MessageDeduplicationId"]) == ("g", "d")
