"""goraxfast.core.sigv4 signs exactly as botocore's SigV4Auth does, and derives keys once a day."""

from __future__ import annotations

from datetime import datetime, timedelta
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from goraxfast.core.sigv4 import (
    UNSIGNED_HEADERS,
    SigV4Signer,
    amz_date,
    canonical_host,
    canonical_path,
    canonical_query,
    derive_signing_key,
)

EXAMPLE_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_signed(
    creds: Credentials,
    region: str,
    service: str,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    now: datetime,
) -> list[tuple[str, str]]:
    """What botocore sends: its request headers after ``add_auth`` at a frozen time."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # appends, so repeated names survive, as on the wire
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        SigV4Auth(creds, service, region).add_auth(request)
    return sorted(request.headers.items())


def ours_signed(
    creds: Credentials,
    region: str,
    service: str,
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    now: datetime,
) -> list[tuple[str, str]]:
    frozen = creds.get_frozen_credentials()
    signer = SigV4Signer(region, service)
    canonical = canonical_host(scheme, host, port)
    # Sign once at another time with another body first, so the second signature is made from
    # the cached template of this request shape: both paths are held to botocore's answer.
    signer.sign(
        frozen, method, canonical, path, query, headers, body + b"!", now - timedelta(days=3)
    )
    added = signer.sign(frozen, method, canonical, path, query, headers, body, now)
    replaced = {"authorization", "x-amz-date"} | (
        {"x-amz-security-token"} if frozen.token else set()
    )
    kept = [(n, v) for n, v in headers if n.lower() not in replaced]
    return sorted(kept + list(added.items()))


# --- the property: same headers as botocore for random requests ----------------------------------

_text = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_path_char = st.one_of(
    st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="?#/\\"
    ),
    st.sampled_from("%~.-_!$&'()*+,;=:@ "),
)
_segment = st.one_of(st.sampled_from(["", ".", ".."]), st.text(_path_char, min_size=1, max_size=8))
paths = st.lists(_segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
_query_char = st.sampled_from("abcXYZ019-_.~%2F+=")
_pair = st.tuples(st.text(_query_char, max_size=5), st.text(_query_char, max_size=5), st.booleans())
queries = st.lists(_pair, max_size=5).map(
    lambda pairs: "&".join(f"{k}={v}" if eq else k for k, v, eq in pairs)
)
_header_name = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True),
    st.sampled_from(
        [
            *sorted(UNSIGNED_HEADERS),
            *("User-Agent", "X-Amz-Target", "Content-Type", "Host", "Authorization"),
            *("X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"),
        ]
    ),
).filter(lambda n: n.lower() != "date")
# Values where whitespace trimming and collapsing matter (Trimall in the SigV4 spec).
_spacey = st.from_regex(r"[ \t]?[!-~]{0,5}([ \t]{1,3}[!-~]{1,5}){0,3}[ \t]?", fullmatch=True)
_header_value = st.one_of(st.text(_text, max_size=20), _spacey)
header_lists = st.lists(st.tuples(_header_name, _header_value), max_size=6)
regions = st.one_of(
    st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1", "cn-north-1"]),
    st.from_regex(r"[a-z]{2}-[a-z]{4,9}-[1-9]", fullmatch=True),
)
dates = st.datetimes(min_value=datetime(1990, 1, 10), max_value=datetime(2099, 12, 31))
hosts = st.from_regex(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?(\.[a-z]{2,6}){0,3}", fullmatch=True
)
credentials = st.builds(
    Credentials,
    st.from_regex(r"(AKIA|ASIA)[A-Z0-9]{12,16}", fullmatch=True),
    st.text(_text, min_size=1, max_size=40),
    st.one_of(st.none(), st.just(""), st.text(_text, min_size=1), _spacey.filter(bool)),
)


@settings(max_examples=400, deadline=None)
@given(
    creds=credentials,
    region=regions,
    service=st.sampled_from(["sqs", "sts", "execute-api"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "post"]),
    scheme=st.sampled_from(["http", "https"]),
    host=hosts,
    port=st.one_of(st.none(), st.sampled_from([80, 443]), st.integers(1, 65535)),
    path=paths,
    query=queries,
    headers=header_lists,
    body=st.one_of(st.just(b""), st.binary(max_size=300)),
    now=dates,
)
def test_signed_headers_equal_botocores(
    creds: Credentials,
    region: str,
    service: str,
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    now: datetime,
) -> None:
    netloc = host if port is None else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    expected = botocore_signed(creds, region, service, method, url, headers, body, now)
    got = ours_signed(
        creds, region, service, method, scheme, host, port, path, query, headers, body, now
    )
    assert got == expected


def test_sqs_request_as_the_fast_client_sends_it() -> None:
    """The hot path's exact header set, with a session token, against botocore."""
    creds = Credentials("ASIAEXAMPLE", EXAMPLE_KEY, "token/with+chars==")
    headers = [
        ("X-Amz-Target", "AmazonSQS.ReceiveMessage"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("User-Agent", "goraxfast"),
    ]
    body = b'{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/q"}'
    now = datetime(2026, 3, 1, 23, 59, 59)
    url = "https://sqs.eu-west-1.amazonaws.com/"
    expected = botocore_signed(creds, "eu-west-1", "sqs", "POST", url, headers, body, now)
    got = ours_signed(
        creds, "eu-west-1", "sqs", "POST", "https", "sqs.eu-west-1.amazonaws.com", None, "/", "",
        headers, body, now,
    )  # fmt: skip
    assert got == expected
    auth = dict(got)["Authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target," in auth


# --- known answers from AWS's documentation and test suite --------------------------------------


def test_signing_key_matches_the_documented_example() -> None:
    key = derive_signing_key(EXAMPLE_KEY, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_get_vanilla_from_the_sigv4_test_suite() -> None:
    creds = Credentials("AKIDEXAMPLE", EXAMPLE_KEY)
    signer = SigV4Signer("us-east-1", "service")
    added = signer.sign(
        creds.get_frozen_credentials(),
        "GET",
        "example.amazonaws.com",
        "/",
        "",
        [],
        b"",
        datetime(2015, 8, 30, 12, 36, 0),
    )
    assert added == {
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    }


# --- the pieces --------------------------------------------------------------------------------


def test_signing_key_is_derived_once_per_secret_and_day() -> None:
    signer = SigV4Signer("us-east-1", "sqs")
    first = signer.signing_key("secret", "20260301")
    assert signer.signing_key("secret", "20260301") is first
    assert signer.signing_key("secret", "20260302") != first
    assert signer.signing_key("rotated", "20260301") != first
    for day in range(1, 40):  # a long-lived process: the cache stays small
        signer.signing_key("secret", f"202601{day:02d}")
    assert len(signer._keys) <= 16


def test_request_shapes_are_cached_and_bounded() -> None:
    signer = SigV4Signer("us-east-1", "sqs")
    creds = Credentials("AKID", "secret").get_frozen_credentials()
    for n in range(100):
        target = [("X-Amz-Target", f"AmazonSQS.Op{n % 70}")]
        signer.sign(creds, "POST", "h", "/", "", target, b"{}", datetime(2026, 1, 1))
    assert 0 < len(signer._templates) <= 64


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a//b/./c/../d/", "/a/b/d/"),
        ("/../..", "/"),
        ("/with space/é", "/with%20space/%C3%A9"),
        ("/already%20encoded", "/already%2520encoded"),
        ("/~user/a-b_c.d", "/~user/a-b_c.d"),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


@pytest.mark.parametrize(
    ("query", "canonical"),
    [("", ""), ("b=2&a=1", "a=1&b=2"), ("a=2&a=1&flag", "a=1&a=2&flag="), ("x=%2F", "x=%2F")],
)
def test_canonical_query_sorts_pairs_as_sent(query: str, canonical: str) -> None:
    assert canonical_query(query) == canonical


@pytest.mark.parametrize(
    ("scheme", "host", "port", "canonical"),
    [
        ("https", "SQS.us-east-1.amazonaws.com", None, "sqs.us-east-1.amazonaws.com"),
        ("https", "h", 443, "h"),
        ("http", "h", 80, "h"),
        ("http", "127.0.0.1", 4566, "127.0.0.1:4566"),
        ("https", "h", 80, "h:80"),
        ("http", "::1", 8080, "[::1]:8080"),
    ],
)
def test_canonical_host_drops_only_default_ports(
    scheme: str, host: str, port: int | None, canonical: str
) -> None:
    assert canonical_host(scheme, host, port) == canonical


def test_amz_date_is_basic_iso8601() -> None:
    assert amz_date(datetime(2026, 1, 2, 3, 4, 5)) == "20260102T030405Z"


def test_a_date_header_is_refused() -> None:
    creds = Credentials("AKID", "secret").get_frozen_credentials()
    with pytest.raises(ValueError, match="Date"):
        SigV4Signer("us-east-1", "sqs").sign(
            creds, "GET", "h", "/", "", [("Date", "x")], b"", datetime(2026, 1, 1)
        )
