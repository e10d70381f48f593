"""Go's ``time.Time`` on the wire: RFC 3339 to the nanosecond, read as gorax's Go code reads it.

gorax writes ``enqueued_at`` with ``time.Time.MarshalJSON`` (RFC 3339, nanoseconds, trailing zeros
trimmed; ``time.Now()`` has nanoseconds on Linux, so most gorax timestamps carry 7–9 digits) and
reads it with ``UnmarshalJSON``. Python's ``datetime`` stops at microseconds: :class:`UTCTimestamp`
is a ``datetime`` that also carries the nanoseconds below the microsecond, so a body decoded and
encoded again keeps its instant to the nanosecond.

What Go reads (``src/time/format_rfc3339.go`` and ``format.go``, Go 1.20 and later):
``UnmarshalJSON`` tries the strict RFC 3339 parser, then ``time.Parse(time.RFC3339, s)``, whose
extra strictness checks are disabled (golang/go#54580: ``case true: return t, nil``). Their union,
which :func:`parse_go_time` accepts exactly, is ``YYYY-MM-DDTH[H]:MM:SS[(.|,)digits](Z|±hh:mm)``:

- year 0000–9999, month 01–12, the day checked against the month (29 February only in leap
  years, year 0 included), hour 0–23 in one or two digits, minutes and seconds 00–59;
- any number of fraction digits, truncated (not rounded) to nanoseconds;
- ``Z`` or an offset up to ±24:60 (Go's range test is ``>``, "as some people do write offsets
  of 24 hours or 60 minutes");
- refused: ``t`` or ``z`` in lower case, a space for ``T``, no offset at all, leap second 60,
  hour 24, anything before or after.

goraxfast keeps every instant in UTC and writes it with ``Z`` (the README's "Compatibility with
gorax's wire format"), with one exception: an instant that UTC puts before year 1 or after 9999,
which Go holds (and its ``MarshalJSON`` writes back in its own offset) but neither a UTC
``datetime`` nor a four-digit UTC year can, stays in the offset it came with
(``0001-01-01T00:30:00+01:00``: 30 minutes before Go's zero time), and is written back that way,
exactly as Go does. What Python cannot hold in any
offset is refused with the reason: a year 0 that stays year 0, or such an instant with an offset
of 24 hours or more (Go's ``+24:00`` to ``+24:60``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, cast

#: The latest instant Go writes as RFC 3339 and a Python datetime holds, in UTC.
LAST_INSTANT = "9999-12-31T23:59:59.999999999Z"
#: The earliest: Go's zero ``time.Time``, which gorax writes for "not set".
FIRST_INSTANT = "0001-01-01T00:00:00Z"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
#: 400 Gregorian years, in days: year 0 is read as year 400 (same calendar) and moved back.
_DAYS_IN_400_YEARS = 146_097
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: Scale of a fraction of n digits (n <= 9) to nanoseconds.
_SCALE = tuple(10 ** (9 - n) for n in range(10))


class UTCTimestamp(datetime):
    """An aware UTC ``datetime`` that keeps nanoseconds: Go's ``time.Time`` as goraxfast holds it.

    Why a ``datetime`` subclass rather than a type of our own: handler authors compare, subtract
    and format ``msg.enqueued_at`` as the ``datetime`` it always was; the nanoseconds below the
    microsecond ride along in one slot, read with :attr:`nanosecond` (0..999,999,999, Go's
    ``Nanosecond()``) or :attr:`unix_ns` (Go's ``UnixNano()``), and compared by ``==`` and ``<``.
    ``microsecond`` is the truncated value, so ``.999999999Z`` stays in its own second.
    Arithmetic (``+``, ``-``, ``replace``) works to the microsecond, as ``datetime`` does.
    Its zone is UTC, except for an instant UTC cannot hold (see the module docstring).
    """

    __slots__ = ("_sub_us",)
    _sub_us: int

    @classmethod
    def of(cls, value: datetime) -> UTCTimestamp:
        """``value`` in UTC (a naive one is taken as UTC), to the nanosecond.

        An instant UTC cannot hold (before year 1 or after 9999, reachable only through an
        offset) stays in its own offset, as Go's ``time.Time`` keeps it; ValueError if that
        offset has seconds, which RFC 3339 cannot write.
        """
        if type(value) is cls and value.tzinfo is UTC:
            return value
        sub = _sub_of(value)
        zone: tzinfo = UTC
        try:
            if value.tzinfo is not None and value.utcoffset():
                value = value.astimezone(UTC)
        except OverflowError:
            offset = value.utcoffset()
            assert offset is not None
            if offset % timedelta(minutes=1):
                raise ValueError(
                    f"{value.isoformat()} is outside years 1-9999 in UTC, and its offset has "
                    "seconds, which RFC 3339 cannot write"
                ) from None
            zone = timezone(offset)
        stamp = cls(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            zone,
        )
        if sub:
            stamp._sub_us = sub
        return stamp

    @classmethod
    def from_unix_ns(cls, ns: int) -> UTCTimestamp:
        """The instant ``ns`` nanoseconds after 1970-01-01T00:00:00Z (``time.time_ns()``'s scale)."""
        us, sub = divmod(ns, 1000)
        try:
            value = _EPOCH + timedelta(microseconds=us)
        except OverflowError:
            raise ValueError(f"{ns} ns from the Unix epoch is outside years 1-9999") from None
        stamp = cls(*_fields(value), value.microsecond, UTC)
        if sub:
            stamp._sub_us = sub
        return stamp

    @property
    def nanosecond(self) -> int:
        """Nanoseconds within the second, 0..999,999,999 (Go's ``Time.Nanosecond``)."""
        return self.microsecond * 1000 + _sub_of(self)

    @property
    def unix_ns(self) -> int:
        """Nanoseconds since 1970-01-01T00:00:00Z, exact (Go's ``Time.UnixNano``)."""
        return (self - _EPOCH_STAMP) // _ONE_US * 1000 + _sub_of(self)

    def rfc3339(self) -> str:
        """Go's ``time.RFC3339Nano`` in UTC: ``Z``, the fraction's trailing zeros trimmed."""
        t = self if self.tzinfo is UTC else UTCTimestamp.of(self)
        zone = "Z" if t.tzinfo is UTC else _zone(t)
        key = (t.year, t.month, t.day, t.hour, t.minute, t.second)
        head = _HEADS.get(key)
        if head is None:  # formatting costs ~4 times the lookup: once per second is enough
            if len(_HEADS) >= _SECONDS_MAX:
                _HEADS.clear()
            head = _HEADS[key] = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*key)
        ns = t.microsecond * 1000 + getattr(t, "_sub_us", 0)
        if ns:
            return f"{head}.{ns:09d}".rstrip("0") + zone
        return head + zone

    def __repr__(self) -> str:
        if self.tzinfo is UTC:
            return f"UTCTimestamp({self.rfc3339()!r})"
        return f"UTCTimestamp({datetime.isoformat(self)!r}, nanosecond={self.nanosecond})"

    # Comparisons: datetime's, then the nanoseconds below the microsecond.

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return datetime.__eq__(self, other) is True and _sub_of(self) == _sub_of(other)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return not self.__eq__(other)

    def __lt__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return datetime.__lt__(self, other) or (
            datetime.__eq__(self, other) is True and _sub_of(self) < _sub_of(other)
        )

    def __le__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return self.__lt__(other) or self.__eq__(other)

    def __gt__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return not self.__le__(other)

    def __ge__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return not self.__lt__(other)

    # Equal values have equal microseconds, hence datetime's equal hashes.
    __hash__ = datetime.__hash__

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickle and ``copy`` keep the nanoseconds (datetime's own reduce would drop the slot)."""
        return (_restore, (*_fields(self), self.microsecond, self.tzinfo, _sub_of(self)))


def _zone(t: datetime) -> str:
    """An offset as RFC 3339 writes it: ``+hh:mm``."""
    offset = t.utcoffset()
    assert offset is not None
    minutes = offset // timedelta(minutes=1)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _restore(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    microsecond: int,
    tz: tzinfo | None,
    sub: int,
) -> UTCTimestamp:
    stamp = UTCTimestamp(year, month, day, hour, minute, second, microsecond, tz)
    if sub:
        stamp._sub_us = sub
    return stamp


def _sub_of(value: datetime) -> int:
    """Nanoseconds below the microsecond: only a UTCTimestamp has any."""
    return getattr(value, "_sub_us", 0) if isinstance(value, UTCTimestamp) else 0


def _fields(t: datetime) -> tuple[int, int, int, int, int, int]:
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def zero_time() -> UTCTimestamp:
    """Go's zero ``time.Time``, 0001-01-01T00:00:00Z: what gorax reads for a missing or null time."""
    return _ZERO


_ZERO = UTCTimestamp(1, 1, 1, tzinfo=UTC)
#: ``UTCTimestamp(state, tz)``: datetime's pickle-state constructor (10 bytes: year high and low,
#: month, day, hour, minute, second, microsecond in 3), which skips argument parsing.
_from_state = cast(Callable[[bytes, tzinfo], UTCTimestamp], UTCTimestamp)
_EPOCH_STAMP = UTCTimestamp(1970, 1, 1, tzinfo=UTC)

#: Canonical ``YYYY-MM-DDTHH:MM:SS`` heads already checked, each to its whole-second UTC stamp and
#: that stamp's pickle state as an int (OR the microsecond in, and it is the state of a stamp within
#: the second): messages of one producer share their second, so most decodes skip the full
#: parse. Bounded.
_SECONDS: dict[str, tuple[UTCTimestamp, int]] = {}
_SECONDS_MAX = 4096

#: The RFC 3339 text of each second written lately, by (year, month, day, hour, minute, second).
_HEADS: dict[tuple[int, int, int, int, int, int], str] = {}

#: The union of Go's strict RFC 3339 parser and ``time.Parse(time.RFC3339, ...)`` (see the module
#: docstring); ranges are checked after the match, with Go's words.
_GO_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:([.,])(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_go_time(text: str) -> UTCTimestamp:
    """The instant Go's ``time.Time.UnmarshalJSON`` reads from ``text``, in UTC, to the nanosecond.

    Raises ValueError with Go's reason for what Go refuses, and for instants UTC puts outside
    years 1–9999 (which Go holds but cannot write back as RFC 3339 in UTC).
    """
    second = _SECONDS.get(text[:19])
    if second is not None:  # the hot path: a checked head, then "Z" or ".digits" + "Z"
        size = len(text)
        if size == 30:  # Go's usual nine digits
            digits = text[20:29]
            if text[29] == "Z" and text[19] == "." and digits.isdigit() and digits.isascii():
                ns = int(digits)
                # datetime's own pickle-state constructor: ten bytes, no argument parsing
                # (a third faster); the head and the microsecond are both checked already.
                stamp = _from_state((second[1] | ns // 1000).to_bytes(10, "big"), UTC)
                sub = ns % 1000
                if sub:
                    stamp._sub_us = sub
                return stamp
        elif size == 20:
            if text[19] == "Z":
                return second[0]
        elif text[-1] == "Z" and text[19] == ".":
            digits = text[20:-1]
            if digits.isdigit() and digits.isascii():
                ns = int(digits) * _SCALE[size - 21] if size < 30 else int(digits[:9])
                stamp = _from_state((second[1] | ns // 1000).to_bytes(10, "big"), UTC)
                sub = ns % 1000
                if sub:
                    stamp._sub_us = sub
                return stamp
    return _parse_slow(text)


def is_known_go_time(text: str) -> bool:
    """True when :func:`parse_go_time` would take its hot path for ``text`` (a second it has
    already checked, then ``Z`` or ``.digits`` + ``Z``): the text is then valid, and a caller
    that only needs the verdict (the parent, deciding poison or not) can skip building it."""
    if text[:19] not in _SECONDS:
        return False
    size = len(text)
    if size == 20:
        return text[19] == "Z"
    if size < 22 or text[-1] != "Z" or text[19] != ".":
        return False
    digits = text[20:-1]
    return digits.isdigit() and digits.isascii()


def _parse_slow(text: str) -> UTCTimestamp:
    m = _GO_RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(
            f"{_shown(text)} is not RFC 3339 as Go reads it (YYYY-MM-DDTHH:MM:SS[.digits], "
            "then Z or +hh:mm)"
        )
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    separator, fraction, sign, offset_h, offset_m = m.group(7, 8, 9, 10, 11)
    offset = (int(offset_h), int(offset_m)) if sign is not None else (0, 0)
    problem = _range_problem(year, month, day, hour, minute, second, *offset)
    if problem is not None:
        raise ValueError(f"{_shown(text)}: {problem}")
    ns = int(fraction[:9]) * _SCALE[min(len(fraction), 9)] if fraction else 0
    offset_s = (offset[0] * 60 + offset[1]) * 60 * (-1 if sign == "-" else 1)
    wall = datetime(year or 400, month, day, hour, minute, second, ns // 1000, UTC)
    try:
        utc = wall - timedelta(seconds=offset_s)
        if year == 0:
            utc -= timedelta(days=_DAYS_IN_400_YEARS)
    except OverflowError:
        if year == 0 or not -86_400 < offset_s < 86_400:
            side = "before " + FIRST_INSTANT if year <= 1 else "after " + LAST_INSTANT
            raise ValueError(
                f"{_shown(text)} is {side} in UTC, and a Python datetime cannot hold it "
                + ("in year 0 either" if year == 0 else "with an offset of 24 hours or more")
            ) from None
        # Go holds it; UTC in years 1-9999 cannot: it stays in its own offset, as in Go, and is
        # written back so (0001-01-01T00:30:00+01:00, 30 minutes before Go's zero time).
        utc = wall.replace(year=year, tzinfo=timezone(timedelta(seconds=offset_s)))
    stamp = UTCTimestamp(*_fields(utc), utc.microsecond, utc.tzinfo)
    if ns % 1000:
        stamp._sub_us = ns % 1000
    if sign is None and len(m.group(4)) == 2 and separator != "," and year:
        # A canonical UTC head: remember its second for the hot path.
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        y, mo, d, h, mi, sec = _fields(utc)
        state = bytes((y >> 8, y & 255, mo, d, h, mi, sec, 0, 0, 0))  # datetime's pickle state
        _SECONDS[text[:19]] = (UTCTimestamp(*_fields(utc), 0, UTC), int.from_bytes(state, "big"))
    return stamp


def _range_problem(
    year: int, month: int, day: int, hour: int, minute: int, second: int, oh: int, om: int
) -> str | None:
    """Go's range checks in Go's order and words (``time.Parse``'s ``rangeErrString``): each
    element as it is read, the day of the month last."""
    if not 1 <= month <= 12:
        return "month out of range"
    if hour > 23:
        return "hour out of range"
    if minute > 59:
        return "minute out of range"
    if second > 59:
        return "second out of range"
    if oh > 24:
        return "time zone offset hour out of range"
    if om > 60:
        return "time zone offset minute out of range"
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and leap):
        return "day out of range"
    return None


def _shown(text: str) -> str:
    """A value as an error message shows it: quoted, and cut if long (a body may be hostile)."""
    return repr(text if len(text) <= 64 else text[:61] + "...")
