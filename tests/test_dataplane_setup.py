"""Which data plane the engine opens, and whom the fast client trusts over TLS.

The fast client connects directly and is only the default where botocore would do the same; it
trusts what botocore trusts (``AWS_CA_BUNDLE``), checked against a real TLS server on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_fasthttp import self_signed

from goraxfast.config import Config
from goraxfast.errors import ConfigError, SQSError
from goraxfast.sqs import choice as dataplane
from goraxfast.sqs.botocore import SQSClient
from goraxfast.sqs.choice import open_data_plane
from goraxfast.sqs.fast import FastSQSClient

DELETED = b'{"Successful": [{"Id": "0"}], "Failed": []}'
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxies_or_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setattr(dataplane, "_WARNED_PROXIES", set())


def config(endpoint: str) -> Config:
    return Config(
        queue_url=f"{endpoint}/000000000000/q",
        aws_endpoint=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        sqs_client="fast",
    )


async def test_the_fast_client_is_opened_when_no_proxy_applies() -> None:
    dp = await open_data_plane(config("http://127.0.0.1:1"))
    try:
        assert isinstance(dp, FastSQSClient)
    finally:
        await dp.close()


async def test_a_proxy_in_the_environment_puts_the_data_plane_on_botocore(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://ops:hunter2@127.0.0.1:3128")
    with caplog.at_level(logging.WARNING, logger="goraxfast.sqs.choice"):
        dp = await open_data_plane(config("http://127.0.0.1:1"))
    try:
        assert isinstance(dp, SQSClient)
    finally:
        await dp.close()
    assert "the botocore client is used" in caplog.text and "127.0.0.1:3128" in caplog.text
    assert "hunter2" not in caplog.text  # a proxy password never reaches the log


def test_the_proxy_warning_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An app may open a publisher per request: one warning, not one per publisher."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    with caplog.at_level(logging.WARNING, logger="goraxfast.sqs.choice"):
        for _ in range(3):
            assert not dataplane.fast_client_applies(config("http://127.0.0.1:1"))
    assert caplog.text.count("does not speak through proxies") == 1


async def test_no_proxy_exempting_the_endpoint_keeps_the_fast_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    dp = await open_data_plane(config("http://127.0.0.1:1"))
    try:
        assert isinstance(dp, FastSQSClient)
    finally:
        await dp.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS server on loopback answering every request with a DeleteMessageBatch success."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(DELETED), DELETED)
                )
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield f"https://127.0.0.1:{port}", cert
    server.close()


async def test_the_fast_client_trusts_the_aws_ca_bundle(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, cert = tls_server
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    async with FastSQSClient(config(endpoint), max_attempts=1) as client:
        result = await client.delete_batch([("0", "receipt")])
    assert result.successful == ("0",)


async def test_without_the_bundle_a_self_signed_server_is_refused(
    tls_server: tuple[str, Path],
) -> None:
    endpoint, _ = tls_server
    async with FastSQSClient(config(endpoint), max_attempts=1) as client:
        with pytest.raises(SQSError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.delete_batch([("0", "receipt")])


async def test_an_unreadable_ca_bundle_is_a_config_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="AWS_CA_BUNDLE"):
        await FastSQSClient(config("https://127.0.0.1:1")).start()
