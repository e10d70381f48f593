"""The parsers of single environment values: each takes the variable's stripped text and returns
the value, or raises ``ValueError`` whose message says what is allowed (the range, the shape, the
choices), so that :meth:`goraxfast.config.Config.from_env` can report every bad variable at once.
Numbers are ASCII decimals, finite and bounded; URLs and addresses are checked for what a client
or ``bind()`` could use, without the network.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "f", "false", "no", "off", "n"})
_REGION_TEXT = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
#: SQS queue names: 1-80 of letters, digits, hyphens and underscores, FIFO ones ending ".fifo".
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
QUEUE_NAME_RULE = "1-80 letters, digits, hyphens or underscores (a FIFO queue's ending in .fifo)"


def boolean(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("a boolean: 1 t true yes on / 0 f false no off")


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A parser of decimal integers in ``[lo, hi]`` (ASCII digits only, as Go's strconv.Atoi:
    Python's int() would also take "1_0" or "١٠")."""
    allowed = _range_text("an integer", lo, hi)

    def parse(raw: str) -> int:
        if not _INT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        try:
            value = int(raw, 10)
        except ValueError:  # more digits than Python converts (4300)
            raise ValueError(allowed) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(allowed)
        return value

    return parse


def number(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A parser of finite decimal numbers in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).
    Both bounds are required: an unbounded duration (``1e300``) is as wrong as ``inf``."""
    allowed = _range_text("a number", lo, hi, lo_open=lo_open)

    def parse(raw: str) -> float:
        if not _FLOAT_TEXT.fullmatch(raw):
            raise ValueError(allowed)
        value = float(raw)  # "1e309" parses to inf: refused below like any out-of-range value
        if not math.isfinite(value) or value > hi or (value <= lo if lo_open else value < lo):
            raise ValueError(allowed)
        return value

    return parse


def _num(value: float) -> str:
    """Exact bounds in errors: 2097152, not 2.09715e+06."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _range_text(kind: str, lo: float | None, hi: float | None, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        if lo_open:
            return f"{kind} > {_num(lo)} and <= {_num(hi)}"
        return f"{kind} from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{kind} <= {_num(hi)}"
    return kind


def region(raw: str) -> str:
    if not _REGION_TEXT.fullmatch(raw):
        raise ValueError("a region name like us-east-1: lowercase letters, digits and hyphens")
    return raw


def credential(raw: str) -> str:
    if not _PRINTABLE.fullmatch(raw):
        raise ValueError("printable ASCII without spaces (check for a stray quote or newline)")
    return raw


def _parse_http_url(raw: str, shape: str) -> SplitResult:
    """``raw`` as an http(s) URL with a host and nothing a client could not use; ``shape`` says
    what was expected, in every refusal."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"{shape} ({why})")

    if not raw.lower().startswith(("http://", "https://")):
        raise refuse("it must start with http:// or https://")
    if not _PRINTABLE.fullmatch(raw):
        raise refuse("spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise refuse(str(exc).lower()) from None
    if not parts.hostname:
        raise refuse("no host")
    if port == 0:
        raise refuse("port 0")
    if parts.username is not None:
        raise refuse("user:password@ is not where AWS credentials go")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise refuse("a query or fragment")
    return parts


def endpoint_url(raw: str) -> str:
    _parse_http_url(
        raw, "an http:// or https:// URL of the SQS endpoint, like http://localhost:4566"
    )
    return raw


def queue_url(raw: str) -> str:
    shape = (
        "an http:// or https:// queue URL ending in the queue name, "
        "like https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    )
    parts = _parse_http_url(raw, shape)
    name = parts.path.rpartition("/")[2]
    if not name:
        raise ValueError(f"{shape} (no queue name after the host)")
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(f"{shape} (the queue name {name!r} is not {QUEUE_NAME_RULE})")
    return raw


_BIND_HOST_RULE = (
    "an IP address to listen on (127.0.0.1, 0.0.0.0, ::1, ::) or localhost; "
    "host names are not looked up"
)


def bind_host(raw: str) -> str:
    """An address ``bind()`` takes without a name lookup: a slow or failing DNS answer must not
    hold the engine's start-up (a typo once cost 6.5 s, then a traceback)."""
    if raw.lower() == "localhost":
        return "localhost"
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError(_BIND_HOST_RULE) from None
    return raw


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError("one of: " + ", ".join(options))
        return raw.lower()

    return parse


_cap = integer(1)


def auto_or(parse: Callable[[str], int]) -> Callable[[str], int | None]:
    """``auto`` (any case) for the automatic value, else what ``parse`` takes."""

    def parse_auto(raw: str) -> int | None:
        if raw.lower() == "auto":
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"auto, or {exc}") from None

    return parse_auto


def tenant_limits(raw: str) -> dict[str, int]:
    """``tenant-a=2,tenant-b=5``: per-tenant caps that override WORKER_MAX_CONCURRENCY_PER_TENANT."""
    allowed = "comma-separated tenant=cap pairs, each tenant once, each cap an integer >= 1"
    out: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        tenant, sep, cap = (text.strip() for text in part.partition("="))
        try:
            value = _cap(cap)
        except ValueError:
            value = 0
        if not sep or not tenant or value < 1:
            raise ValueError(f"{allowed}; not {part.strip()!r}")
        if tenant in out:
            raise ValueError(f"{allowed}; {tenant!r} is named twice")
        out[tenant] = value
    return out
