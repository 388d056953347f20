"""Parsing and formatting of query arguments: timestamps, keys and minimum positions.

Timestamps
----------
Accepted: ISO-8601 *with a zone* (``2026-11-21T15:00:00Z``, ``...+01:00``, fractions allowed)
or epoch milliseconds (``1795273200000``, may be negative). A time without a zone is
refused: guessing the zone would silently move the as-of bound. Sub-millisecond digits
are truncated (floor), which keeps the bound inclusive: nothing at ms resolution lies
between the floor and the given instant. Answers show both forms (:func:`time_fields`).
Supported range: years 1 to 9999 in UTC, i.e. epoch ms ``MIN_TIME_MS`` to ``MAX_TIME_MS``
inclusive (``0001-01-01T00:00:00.000Z`` to ``9999-12-31T23:59:59.999Z``); anything outside,
including an ISO time whose offset moves it past either end, is an :class:`InvalidTimestampError`.

Keys and index values
---------------------
At most ``MAX_KEY_BYTES`` (65,535) bytes of UTF-8: the store length-prefixes every key part
with two bytes (:func:`state.keys.lp`), so no longer key can exist, and refusing it up front
answers "bad request" instead of failing inside the store. Text that cannot be encoded as
UTF-8 (a lone surrogate, e.g. from undecodable command-line bytes) is refused as well
(:func:`check_key`).

Minimum positions (read-your-writes)
------------------------------------
``min_position`` names, per topic-partition, the ``next_offset`` the replica must have
reached (i.e. every record *below* it applied), as either

* ``topic:partition:next_offset[,topic:partition:next_offset...]``, e.g.
  ``view.order-status:3:1200,view.order-status:4:88``; or
* JSON ``{"topic": {"partition": next_offset}}`` (offsets JSON integers or digit strings;
  no floats, nesting exactly two levels).

Topics must be legal Kafka topic names (``[A-Za-z0-9._-]``, 1-249 characters), partitions
0 to 2**31 - 1 and offsets 0 to 2**63 - 1 (Kafka's int32 and int64): anything else could never
be reached, so it is an :class:`InvalidPositionError`, not a wait that ends in "behind". A
partition named twice must reach the larger offset.

A topic the store consumes (a ``view.<name>`` topic of the replica) is checked exactly
against :meth:`~state.contracts.ReadOnlyView.position`. Any other topic (normally the
orders topic: ``orders:3:1200`` after producing an event at offset 1199) is checked
against the queried view's :meth:`~state.contracts.ReadOnlyView.source_position`:
satisfied once that view applied a change derived from an orders record at or past
offset 1199 in partition 3. That is a lower bound, not a barrier: re-keyed views spread
one orders partition over several view partitions, and an event that changes nothing
in the view produces no record to wait for. Use view-topic positions for an exact bound.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

from state.errors import InvalidPositionError, InvalidTimestampError, QueryError

__all__ = [
    "MIN_TIME_MS",
    "MAX_TIME_MS",
    "MAX_KEY_BYTES",
    "MAX_OFFSET",
    "MAX_PARTITION",
    "parse_timestamp",
    "format_iso",
    "time_fields",
    "check_key",
    "shorten",
    "parse_min_position",
    "format_position",
    "missing",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: what Python's datetime (and ISO-8601
#: without an expanded year) can show. Both bounds are inclusive.
MIN_TIME_MS: Final = -62_135_596_800_000
MAX_TIME_MS: Final = 253_402_300_799_999
#: = the store's two-byte length prefix (state.keys.lp); a test holds the two equal.
MAX_KEY_BYTES: Final = 0xFFFF
#: Kafka's offsets are int64, its partitions int32.
MAX_OFFSET: Final = (1 << 63) - 1
MAX_PARTITION: Final = (1 << 31) - 1

# ASCII digits only: \d would also take other scripts' digits, which int() accepts.
_EPOCH_MS = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SHOWN_CHARS = 60
_RANGE = f"{MIN_TIME_MS} to {MAX_TIME_MS} ms, 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"


def shorten(text: str, *, limit: int = _SHOWN_CHARS) -> str:
    """``repr(text)``, cut to about ``limit`` characters: how an error message echoes what the caller sent."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def _in_range(ms: int, text: str | int) -> int:
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        shown = shorten(text) if isinstance(text, str) else str(text)
        raise InvalidTimestampError(f"timestamp {shown} is outside the supported range ({_RANGE})")
    return ms


def parse_timestamp(text: str | int) -> int:
    """Epoch milliseconds of ``text`` (ISO-8601 with zone, or epoch ms), within MIN_TIME_MS..MAX_TIME_MS.

    Raises :class:`InvalidTimestampError` for anything else (see the module docstring).
    """
    if isinstance(text, int):
        return _in_range(text, text)
    raw = text.strip()
    if _EPOCH_MS.fullmatch(raw):
        # More than 16 digits is out of range anyway; checking first keeps int() off huge strings.
        return _in_range(int(raw) if len(raw) <= 20 else MAX_TIME_MS + 1, text)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidTimestampError(
            f"bad timestamp {shorten(text)}: use ISO-8601 with a zone (2026-11-21T15:00:00Z) or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        raise InvalidTimestampError(f"timestamp {shorten(text)} has no zone: add Z or an offset such as +01:00")
    delta = moment - _EPOCH
    # Integer arithmetic: floats would round 15:00:00.001 to the wrong millisecond.
    return _in_range((delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000, text)


def format_iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. ``2026-11-21T15:00:00.000Z``.

    ``ms`` must be within MIN_TIME_MS..MAX_TIME_MS (ValueError otherwise): parsed timestamps
    always are; for stored times use :func:`time_fields`, which is total.
    """
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError(f"{ms} ms is outside years 1-9999")
    # Arithmetic on the epoch, not fromtimestamp(): that one depends on the platform's C library far from 1970.
    moment = _EPOCH + timedelta(milliseconds=ms)
    # By hand, not strftime: glibc's %Y writes year 1 as "1", not "0001".
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def time_fields(name: str, ms: int | None) -> dict[str, Any]:
    """``{name_ms: ms, name: iso}``: how answers show a time.

    Both are None when ``ms`` is None. The ISO form is None also for a stored time outside
    years 1-9999 (an event may carry any int64 time): ``name_ms`` is always exact.
    """
    iso = None if ms is None or not MIN_TIME_MS <= ms <= MAX_TIME_MS else format_iso(ms)
    return {f"{name}_ms": ms, name: iso}


def check_key(text: str, *, what: str = "key") -> str:
    """Return ``text`` if it can be a key or index value (see the module docstring); :class:`QueryError` otherwise."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise QueryError(f"{what} {shorten(text)} is not valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise QueryError(f"{what} {shorten(text)} is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}")
    return text


def parse_min_position(text: str | None) -> dict[str, dict[int, int]]:
    """Parse a min_position (see the module docstring); empty or None means no requirement.

    Raises :class:`InvalidPositionError` (one line, naming the bad part) for anything malformed.
    """
    if text is None or not text.strip():
        return {}
    raw = text.strip()
    out: dict[str, dict[int, int]] = {}
    try:
        for topic, partition, offset in _json_items(raw) if raw.startswith("{") else _compact_items(raw):
            parts = out.setdefault(_topic(topic), {})
            number = _partition(partition)
            parts[number] = max(parts.get(number, 0), _offset(offset))
    except (ValueError, TypeError) as exc:
        raise InvalidPositionError(
            f"bad min_position {shorten(text)} ({exc}): use topic:partition:next_offset[,...] or JSON {{\"topic\": {{\"0\": 42}}}}"
        ) from None
    return out


def _compact_items(raw: str) -> list[tuple[str, str, Any]]:
    items: list[tuple[str, str, Any]] = []
    for item in raw.split(","):
        parts = item.strip().rsplit(":", 2)
        if len(parts) != 3:
            raise ValueError(f"{shorten(item.strip())} is not topic:partition:next_offset")
        items.append((parts[0], parts[1], parts[2]))
    return items


def _refuse_number(text: str) -> NoReturn:
    # json would turn 1.5 into a float int() truncates, and 1e400 into inf.
    raise ValueError(f"{shorten(text)} is not an integer (offsets are whole numbers)")


def _json_items(raw: str) -> list[tuple[str, str, Any]]:
    try:
        parsed = json.loads(raw, parse_float=_refuse_number, parse_constant=_refuse_number)
    except RecursionError:
        # The C scanner recurses once per level: a deep enough document exhausts the stack.
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    items: list[tuple[str, str, Any]] = []
    for topic, parts in parsed.items():
        if not isinstance(parts, dict):
            raise ValueError(f"topic {shorten(topic)} maps to {type(parts).__name__}, not an object {{partition: next_offset}}")
        items.extend((topic, partition, offset) for partition, offset in parts.items())
    return items


def _topic(text: str) -> str:
    if not _TOPIC.fullmatch(text):
        raise ValueError(f"topic {shorten(text)} is not a Kafka topic name ([A-Za-z0-9._-], 1 to 249 characters)")
    return text


def _partition(text: str) -> int:
    partition = int(text) if _DIGITS.fullmatch(text) and len(text) <= 10 else -1
    if not 0 <= partition <= MAX_PARTITION:
        raise ValueError(f"partition {shorten(text)} is not an integer from 0 to {MAX_PARTITION}")
    return partition


def _offset(value: Any) -> int:
    # bool is an int to Python, not to a caller who wrote true.
    if isinstance(value, int) and not isinstance(value, bool):
        offset = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 19:
        offset = int(value)
    else:
        offset = -1
    if not 0 <= offset <= MAX_OFFSET:
        shown = shorten(value) if isinstance(value, str) else shorten(str(value)) if isinstance(value, int) else f"of type {type(value).__name__}"
        raise ValueError(f"offset {shown} is not an integer from 0 to {MAX_OFFSET}")
    return offset


def format_position(position: dict[str, dict[int, int]]) -> str:
    """The ``topic:partition:next_offset,...`` form of a position (sorted), accepted back by :func:`parse_min_position`."""
    return ",".join(f"{t}:{p}:{o}" for t in sorted(position) for p, o in sorted(position[t].items()))


def missing(required: dict[str, dict[int, int]], reached: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
    """Per topic-partition, how many offsets ``reached`` is short of ``required`` (only the short ones)."""
    out: dict[str, dict[int, int]] = {}
    for topic, parts in required.items():
        for partition, next_offset in parts.items():
            have = reached.get(topic, {}).get(partition, 0)
            if have < next_offset:
                out.setdefault(topic, {})[partition] = next_offset - have
    return out
