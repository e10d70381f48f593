"""AWS Signature Version 4 for header-signed requests, with no I/O and no clock.

botocore's ``SigV4Auth`` re-derives the signing key (four HMACs) and rebuilds every string through
general machinery on each call; that was a third of the lean client's CPU per request. Here the
key is derived once per (secret, date, region, service) and reused, and the request is signed from
plain strings. The output is the same, header for header: a Hypothesis property in
``tests/test_sigv4.py`` compares it with botocore for random requests, including botocore's
quirks (query pairs sorted as sent, not re-encoded; the path's dot segments and repeated slashes
removed, then percent-encoded again; duplicate header names joined with commas).

Time is an argument (``now``), credentials are a frozen snapshot the caller took, so the signer
never decides anything by itself: the I/O shell owns the clock and the credential refresh.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple, Protocol

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Headers botocore never signs (proxies and clients may add or change them in transit).
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_MAX_CACHED_KEYS = 16
_MAX_CACHED_TEMPLATES = 64
# Headers the signer sets itself: any the caller passed are dropped first, as botocore does (it
# replaces a caller's X-Amz-Security-Token only when the credentials carry a token).
_REPLACED = frozenset({"authorization", "x-amz-date"})
_REPLACED_WITH_TOKEN = _REPLACED | {"x-amz-security-token"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved characters plus "/", the set botocore keeps as is in a canonical path.
_PATH_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")
_ENCODED = tuple(chr(b) if b in _PATH_SAFE else f"%{b:02X}" for b in range(256))


class FrozenCredentials(Protocol):
    """One consistent snapshot of a key pair and token (botocore's ``ReadOnlyCredentials``)."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


def amz_date(now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of a UTC time (naive datetimes are taken as UTC, as botocore does)."""
    return f"{now.year:04d}{now.month:02d}{now.day:02d}T{now.hour:02d}{now.minute:02d}{now.second:02d}Z"


def derive_signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The four chained HMACs of SigV4: the expensive part that the cache below avoids."""
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def canonical_host(scheme: str, host: str, port: int | None) -> str:
    """The Host value botocore signs: lowercase, the port only when it is not the default."""
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 literal
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        return f"{host}:{port}"
    return host


def canonical_path(path: str) -> str:
    """Dot segments and empty segments removed, then percent-encoded (UTF-8, "/" and "~" kept)."""
    if not path:
        return "/"
    parts: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if parts:
                parts.pop()
        elif segment and segment != ".":
            parts.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and parts else ""
    normalized = first + "/".join(parts) + last
    raw = normalized.encode()
    if _PATH_SAFE.issuperset(raw):
        return normalized
    return "".join([_ENCODED[b] for b in raw])


def canonical_query(query: str) -> str:
    """Pairs of the raw query sorted by (key, value), taken as sent: botocore does not re-encode."""
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Signed headers by lowercase name, values trimmed; repeated names joined with commas."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname not in UNSIGNED_HEADERS:
            grouped.setdefault(lname, []).append(" ".join(value.split()))
    return {name: ",".join(values) for name, values in grouped.items()}


class _Template(NamedTuple):
    """A canonical request with holes for the date and the token, for one request shape."""

    before_date: str  # method, path, query and the headers sorting before x-amz-date
    after_date: str  # up to the token's value (when there is a token), else to the payload hash
    after_token: str  # up to the payload hash (token only)
    signed_names: str
    payload: str | None  # a caller's X-Amz-Content-SHA256, else None: hash the body


def _template(
    method: str, host: str, path: str, query: str, headers: tuple[tuple[str, str], ...], token: bool
) -> _Template:
    replaced = _REPLACED_WITH_TOKEN if token else _REPLACED
    kept = [(n, v) for n, v in headers if n.lower() not in replaced]
    names = {n.lower() for n, _ in kept}
    if "date" in names:
        raise ValueError("a Date header is not supported: X-Amz-Date carries the time")
    payload = next((v for n, v in kept if n.lower() == "x-amz-content-sha256"), None)
    signed = canonical_headers(kept)
    signed.setdefault("host", host)
    signed["x-amz-date"] = ""
    if token:
        signed["x-amz-security-token"] = ""
    order = sorted(signed)
    pieces, text = [], f"{method.upper()}\n{canonical_path(path)}\n{canonical_query(query)}\n"
    for name in order:
        text += f"{name}:{signed[name]}"
        if name == "x-amz-date" or (token and name == "x-amz-security-token"):
            pieces.append(text)
            text = ""
        text += "\n"
    signed_names = ";".join(order)
    text += f"\n{signed_names}\n"
    pieces += [text, ""] if len(pieces) == 1 else [text]
    return _Template(pieces[0], pieces[1], pieces[2], signed_names, payload)


class SigV4Signer:
    """Signs requests for one (region, service).

    Two caches make a signature cheap: the signing key per (secret, date), and the canonical
    request's fixed text per request shape (method, host, path, query, headers, token or not),
    so a call only hashes its body and fills in its time and token.
    """

    __slots__ = ("_keys", "_templates", "region", "service")

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}
        self._templates: dict[tuple[object, ...], _Template] = {}

    def signing_key(self, secret_key: str, date: str) -> bytes:
        """The key for ``date`` (``YYYYMMDD``), derived at most once per secret and day."""
        cache_key = (secret_key, date)
        key = self._keys.get(cache_key)
        if key is None:
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()  # old days and rotated secrets: never needed again
            key = derive_signing_key(secret_key, date, self.region, self.service)
            self._keys[cache_key] = key
        return key

    def sign(
        self,
        credentials: FrozenCredentials,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        now: datetime | str,
    ) -> dict[str, str]:
        """The headers to add to the request: ``X-Amz-Date``, the token if any, ``Authorization``.

        ``host`` is the canonical host (see :func:`canonical_host`); a ``Host`` entry in
        ``headers`` wins over it, as in botocore. The request must not carry a ``Date`` header
        (botocore would sign that instead of ``X-Amz-Date``); headers this adds are replaced.
        ``now`` may be given as its :func:`amz_date` text, for callers that format it once a
        second rather than once a request.
        """
        token = credentials.token
        shape = (method, host, path, query, tuple(headers), bool(token))
        template = self._templates.get(shape)
        if template is None:
            if len(self._templates) >= _MAX_CACHED_TEMPLATES:
                self._templates.clear()
            template = self._templates[shape] = _template(*shape)
        stamp = now if isinstance(now, str) else amz_date(now)
        date = stamp[:8]
        payload = template.payload
        if payload is None:
            payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        added = {"X-Amz-Date": stamp}
        if token:
            added["X-Amz-Security-Token"] = token
            request = (
                f"{template.before_date}{stamp}{template.after_date}"
                f"{' '.join(token.split())}{template.after_token}{payload}"
            )
        else:
            request = f"{template.before_date}{stamp}{template.after_date}{payload}"
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        key = self.signing_key(credentials.secret_key, date)
        signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
        added["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={template.signed_names}, Signature={signature}"
        )
        return added
